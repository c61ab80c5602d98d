"""The audit modes by name: a pipeline test (`orchestrator.Audit`, the default) or a model
audit (`model_audit.ModelAudit`, for `--teacher PATH --student PATH`)."""

from __future__ import annotations

from audit.config import AuditConfig
from audit.pipeline.model_audit import ModelAudit
from audit.pipeline.orchestrator import Audit, Log
from audit.pipeline.stages import StageRunner


def make_audit(config: AuditConfig, runner: StageRunner, log: Log, progress: bool) -> Audit:
    """The audit of `config.mode`; `run()` returns its finished `Report`."""
    kind = ModelAudit if config.mode == "model-audit" else Audit
    return kind(config, runner, log, progress)
