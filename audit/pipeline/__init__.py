"""The audit's pipeline: cached stages, the artifacts they build, positive controls, and the
orchestrator that runs one audit end to end.

Modules: `stages` (the stage cache), `artifacts` (teachers, rollouts, sanitized data, students,
evaluations), `controls` (positive controls), `orchestrator` (`Audit`: one audit, the report).
Regenerate the committed preset teachers with `python -m audit.pipeline embed-teachers`.
"""
