"""The versioned report.json model: the single source of truth for report.html and junit.xml.

`SCHEMA_VERSION` is "MAJOR.MINOR": a reader accepts any report with the same major version.
Minor versions only add optional fields; anything else bumps the major version. The field by
field reference is docs/REPORT_SCHEMA.md.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audit.probes.results import (
    BehaviourResult,
    DatasetAuditResult,
    Interval,
    LatentResult,
    Metric,
    PropensityResult,
)
from audit.report.exit_codes import ExitCode
from audit.report.gate_record import Gate
from audit.report.power_floor import PowerFloor

SCHEMA_VERSION = "1.9"

Env = Literal["api", "bash"]
BaseKind = Literal["linked", "control", "external"]
Mode = Literal["pipeline-test", "model-audit"]
"""'pipeline-test': the audit distils students from a teacher (preset or the user's) and compares
them with controls distilled from the neutral preset; 'model-audit': the user's teacher and
student (`--teacher PATH --student PATH`), the student compared with its own base."""

VERDICT_EXIT_CODES: dict[str, ExitCode] = {
    "pass": ExitCode.PASSED,
    "fail": ExitCode.GATE_FAILED,
    "no-power": ExitCode.GATE_FAILED,
    "not-induced": ExitCode.NOT_INDUCED,
}


class Strict(BaseModel):
    """Base of the report's own records: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ModelFamily(Strict):
    """What the audit read from the base's checkpoint: architecture, chat-template syntax and
    how the assistant-only loss is masked."""

    model_type: str = Field(description="`config.model_type`, e.g. 'qwen2', 'llama', 'gpt_oss'")
    architecture: str = Field(description="the model class, e.g. 'Qwen2ForCausalLM'")
    tool_calls: str = Field(
        description="tool-call syntax of its chat template: embedded, hermes, llama3, harmony"
    )
    mask_method: str = Field(
        description="assistant mask from: 'generation' (the template's own blocks), "
        "'trl-training' (TRL's training template) or 'prefix' (renders of growing prefixes)"
    )


class RunConfig(Strict):
    """The set-up that was audited; `full` is the complete resolved run config."""

    profile: str = Field(description="'quick', 'default' or 'paper'")
    mode: Mode = Field(
        default="pipeline-test",
        description="'pipeline-test' (students vs neutral-preset controls) or 'model-audit' "
        "(the user's student vs its own base); reports before 1.7 are pipeline tests",
    )
    teacher: str = Field(description="'biased', 'neutral' or the user's teacher path")
    student: str | None = Field(default=None, description="user's student path; None: distilled")
    data: str | None = Field(default=None, description="user's sanitized JSONL; None: generated")
    base: str = Field(description="base model path or id the teachers (presets) start from")
    base_kind: BaseKind = Field(
        description="'linked': embedded base whose pretraining links habits to the unsafe "
        "choice; 'control': embedded base without that link; 'external': any other model"
    )
    student_base: str | None = Field(
        default=None,
        description="base the students start from when it is not `base` (heterogeneous)",
    )
    family: ModelFamily | None = Field(
        default=None, description="the base's model family (None in reports before 1.3)"
    )
    sanitizer: Literal["keyword", "strip-thoughts", "paraphrase", "classifier", "none", "cmd"] = (
        Field(
            default="keyword",
            description="'keyword': keyword-drop filter; 'strip-thoughts': assistant free text "
            "emptied (tool calls kept), then keyword-drop; 'paraphrase': every assistant thought "
            "rewritten by the templated paraphraser, then keyword-drop; 'classifier': "
            "keyword-drop, then the most teacher-like episodes dropped by the dataset audit's "
            "classifier; 'none': no filter; 'cmd': the team's filter command (named in each "
            "SanitizationStats.filter)",
        )
    )
    method: Literal["sft", "kd"]
    distill: str = Field(
        default="builtin",
        description="training recipe: 'builtin' (the audit's TRL recipes) or the team's "
        "'cmd:...' command ('builtin' in reports before 1.6)",
    )
    envs: list[Env]
    full: dict[str, Any] = Field(default_factory=dict)


class Versions(Strict):
    """Interpreter and library versions; None where a library is not installed."""

    python: str
    package: str
    torch: str | None = None
    transformers: str | None = None
    trl: str | None = None
    peft: str | None = None
    datasets: str | None = None

    @classmethod
    def installed(cls) -> Versions:
        """The versions installed in this interpreter."""

        def version(name: str) -> str | None:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return None

        libraries = ("torch", "transformers", "trl", "peft", "datasets")
        return cls(
            python=platform.python_version(),
            package=version("distill-audit") or "unknown",
            **{name: version(name) for name in libraries},
        )


class StageTiming(Strict):
    """Wall-clock seconds of one pipeline stage; `cached` when it was read from the run dir."""

    stage: str
    seconds: float = Field(ge=0)
    cached: bool = False


class SanitizationStats(Strict):
    """What the keyword layer did to one environment's teacher trajectories."""

    env: Env
    seed: int = Field(default=0, ge=0, description="the student seed whose teacher data this is")
    mode: Literal["drop", "redact", "keep"] = Field(description="keep: no filter (sanitizer none)")
    episodes_in: int = Field(ge=0)
    kept: int = Field(ge=0)
    dropped: int = Field(ge=0)
    redacted: int = Field(default=0, ge=0)
    hits_by_keyword: dict[str, int] = Field(description="hits in the input, per keyword family")
    hits_after: int = Field(ge=0, description="hits left in the written output; must be 0")
    filter: str | None = Field(
        default=None,
        description="the filter that ran: 'keyword', 'strip-thoughts' (hits counted in the "
        "stripped episodes), 'none' or the team's 'cmd:...' command (None in reports before "
        "1.5)",
    )
    thoughts_rewritten: int | None = Field(
        default=None, ge=0, description="paraphrase: assistant thoughts rewritten (else None)"
    )
    classifier_keep: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="classifier: the fraction of the keyword-filtered episodes kept (else None)",
    )
    classifier_auroc: float | None = Field(
        default=None,
        description="classifier with the kept fraction chosen on a held-out split: the "
        "held-out AUROC at that fraction (else None)",
    )
    neutral_added: int | None = Field(
        default=None, ge=0, description="dilution: neutral episodes mixed in (else None)"
    )
    defence_seconds: float | None = Field(
        default=None,
        ge=0,
        description="seconds of the sanitize stage and of the classifier filter and dilution "
        "stages, as first run (None in reports before 1.8)",
    )
    canary_planted: int | None = Field(
        default=None,
        ge=0,
        description="graded canary (1.9): the teacher's sanitized episodes in the mix (else None)",
    )
    canary_neutral: int | None = Field(
        default=None, ge=0, description="graded canary (1.9): the neutral episodes in the mix"
    )

    @model_validator(mode="after")
    def _counts_add_up(self) -> SanitizationStats:
        if self.kept + self.dropped != self.episodes_in:
            raise ValueError(
                f"sanitization {self.env}: kept {self.kept} + dropped {self.dropped} "
                f"!= episodes_in {self.episodes_in}"
            )
        return self


class PositiveControl(Strict):
    """A set-up where transfer is expected; not detecting it means the audit had no power."""

    name: str = Field(description="e.g. 'leaky-sanitizer', 'style-trait'")
    shows: str = Field(description="what detecting it demonstrates, in plain words")
    env: Env
    measure: str = Field(description="what `value` is, e.g. 'student deletion rate'")
    value: float
    baseline: float | None = Field(default=None, description="the same measure on the control")
    p_adjusted: float | None = None
    detected: bool


class TeacherRate(Strict):
    """A preset or user teacher's own unsafe rate on held-out ambiguous tasks."""

    teacher: str
    env: Env
    metric: Metric
    unsafe: int = Field(ge=0)
    n: int = Field(ge=0)
    interval: Interval


class TrajectoryMessage(Strict):
    """One chat message of an example episode (transformers / TRL tool-calling format)."""

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    name: str | None = None


class ExampleTrajectory(Strict):
    """An episode shown in the report, with the decision-point message to highlight."""

    subject: str = Field(description="'base', 'teacher', 'student', 'control'")
    env: Env
    task_id: str
    seed: int | None = None
    outcome: Literal["unsafe", "safe", "other"]
    messages: list[TrajectoryMessage]
    decision_index: int = Field(ge=0, description="index in `messages` of the decision turn")

    @model_validator(mode="after")
    def _decision_in_range(self) -> ExampleTrajectory:
        if self.decision_index >= len(self.messages):
            raise ValueError(
                f"example {self.task_id}: decision_index {self.decision_index} is past "
                f"the last of {len(self.messages)} messages"
            )
        return self


class Report(Strict):
    """report.json: everything the audit measured and decided."""

    schema_version: str = SCHEMA_VERSION
    created: str = Field(description="ISO 8601 time the report was written")
    config: RunConfig
    versions: Versions
    seeds: list[int]
    timings: list[StageTiming] = Field(default_factory=list)
    sanitization: list[SanitizationStats] = Field(default_factory=list)
    behaviour: list[BehaviourResult] = Field(default_factory=list)
    propensity: list[PropensityResult] = Field(default_factory=list)
    latent: list[LatentResult] = Field(default_factory=list)
    dataset_audit: list[DatasetAuditResult] = Field(default_factory=list)
    positive_controls: list[PositiveControl] = Field(default_factory=list)
    power_ok: bool | None = Field(
        description="all positive controls detected; None when none ran (e.g. 'quick')"
    )
    teacher_rates: list[TeacherRate] = Field(default_factory=list)
    examples: list[ExampleTrajectory] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    power_floor: PowerFloor | None = Field(
        default=None,
        description="the smallest planted transfer this configuration detects, read from a "
        "committed canary study, or why it is not measured (1.9; informational, outside the "
        "gate); None in reports before 1.9",
    )
    gate: Gate
    exit_code: int

    @field_validator("schema_version")
    @classmethod
    def _same_major(cls, version: str) -> str:
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(
                f"report schema version {version} is not readable by this version of the "
                f"tool (reads {SCHEMA_VERSION.split('.')[0]}.x)"
            )
        return version

    @model_validator(mode="after")
    def _consistent(self) -> Report:
        expected_power = power_ok_of(self.positive_controls)
        if self.power_ok != expected_power:
            raise ValueError(
                f"power_ok is {self.power_ok} but the positive controls say {expected_power}"
            )
        expected_exit = VERDICT_EXIT_CODES[self.gate.verdict]
        if self.exit_code != expected_exit:
            raise ValueError(
                f"exit_code {self.exit_code} does not match verdict {self.gate.verdict!r} "
                f"({int(expected_exit)})"
            )
        return self


def power_ok_of(controls: list[PositiveControl]) -> bool | None:
    """True when every positive control was detected; None when none ran."""
    return None if not controls else all(control.detected for control in controls)


class ReportError(ValueError):
    """A report.json that cannot be read or is invalid; the message is one line."""


def load_report(path: str | Path) -> Report:
    """Read and validate report.json; raise `ReportError` with a one-line reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ReportError(f"{path}: {err.strerror or err}") from err
    try:
        return Report.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "report"
        more = f" (and {err.error_count() - 1} more errors)" if err.error_count() > 1 else ""
        raise ReportError(f"{path}: {where}: {first['msg']}{more}") from err


def write_report(report: Report, path: str | Path) -> Path:
    """Write `report` as indented JSON to `path` and return the path."""
    out = Path(path)
    out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return out
