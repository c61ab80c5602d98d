"""The audit's pipeline: cached stages, the artifacts they build, positive controls, and the
orchestrator that runs one audit end to end.

Modules: `stages` (the stage cache), `artifacts` (teachers, rollouts, sanitized data, students,
evaluations), `plugins` (the team's `cmd:` filter and recipe), `controls` (positive controls),
`records` and `family` (report records), `orchestrator` (`Audit`: one pipeline test, the
report), `model_audit` (`ModelAudit`: the user's student against its base) and `modes`
(`make_audit`: the audit of a config's mode).
Regenerate the committed preset teachers with `python -m audit.pipeline embed-teachers`.
"""
