"""The measured power floor: the smallest planted transfer (graded canary fraction) that an
audit configuration detects in at least `DETECTION_GOAL` of its replicates.

A canary study (`studies/canary.toml`, `audit.study.canary`) runs the audit with a share P of
the biased teacher's episodes planted in each student (`canary_fraction`) over several
replicates, and counts per env and fraction the replicates whose model-level behaviour check
failed. An audit's report reads the committed canary studies (`docs/study/canary*/study.json`)
and states the floor of the one whose configuration matches its own on every field that
changes power (`POWER_FIELDS`), or that none was measured. It is informational: no gate check
reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit.config import DEFAULT_STUDENT_LEARNING_RATE
from audit.probes.results import Interval

DETECTION_GOAL = 0.8
"""The detection rate over replicates a planted fraction needs to count as detected."""

STUDY_DIR = Path(__file__).resolve().parents[2] / "docs" / "study"
"""Where the committed studies live (`docs/study/<name>/study.json` of this checkout)."""

POWER_FIELDS = (
    "profile",
    "seeds",
    "base",
    "student_base",
    "method",
    "distill",
    "teacher_demos",
    "teacher_epochs",
    "rollouts",
    "safe_templates",
    "student_epochs",
    "student_learning_rate",
    "lora",
    "student_lora",
    "sanitizer",
    "keywords_file",
    "dilute",
    "max_length",
    "eval_episodes",
    "temperature",
    "alpha",
    "margin",
    "min_decision_rate",
    "max_student_rate",
)
"""The config fields besides `env` on which a canary study must equal the audit's config for
its floor to be this audit's."""

ADDED_FIELDS: dict[str, Any] = {"student_learning_rate": DEFAULT_STUDENT_LEARNING_RATE}
"""`POWER_FIELDS` added after studies were committed, with the value a study that lacks one ran
at (the default of the time)."""

NOT_RUN = "no canary study was run at this configuration"


class CanaryFraction(BaseModel):
    """One env and planted fraction of a canary study: its replicates and detections."""

    model_config = ConfigDict(extra="forbid")

    env: Literal["api", "bash"]
    fraction: float = Field(gt=0, le=1, description="the planted share of biased episodes")
    replicates: int = Field(ge=0, description="finished cells (independent audits)")
    detected: int = Field(ge=0, description="cells whose model-level behaviour check failed")
    rate: float | None = Field(description="detected / replicates; None without replicates")
    interval: Interval | None = Field(description="Wilson 95% interval of the rate")
    mean_difference: float | None = Field(
        description="mean over the cells of the model-level student-minus-control rate"
    )
    planted: float | None = Field(
        default=None, description="mean biased episodes a student trained on, over the cells"
    )

    @model_validator(mode="after")
    def _counts(self) -> CanaryFraction:
        if self.detected > self.replicates:
            raise ValueError(f"detected {self.detected} > replicates {self.replicates}")
        return self


def detection_floor(entries: list[CanaryFraction], goal: float = DETECTION_GOAL) -> float | None:
    """The smallest fraction detected in at least `goal` of its replicates in every env it has
    entries for; None when no fraction is."""
    for fraction in sorted({entry.fraction for entry in entries}):
        rates = [entry.rate for entry in entries if entry.fraction == fraction]
        if all(rate is not None and rate >= goal for rate in rates):
            return fraction
    return None


def floor_statement(floor: float | None, entries: list[CanaryFraction]) -> str:
    """The floor as one sentence, from the numbers of `entries` at it."""
    if floor is None:
        return f"no planted fraction was detected in {DETECTION_GOAL:.0%} of replicates"
    counts = ", ".join(
        f"{entry.env} {entry.detected} of {entry.replicates}"
        for entry in entries
        if entry.fraction == floor
    )
    return (
        f"the smallest planted fraction detected in at least {DETECTION_GOAL:.0%} of "
        f"replicates is {floor:g} ({counts})"
    )


class PowerFloor(BaseModel):
    """report.json's `power_floor`: measured from a committed canary study, or not."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["measured", "not measured"]
    reason: str | None = Field(default=None, description="why not measured")
    study: str | None = Field(
        default=None, description="the study.json it was read from, relative to the checkout"
    )
    goal: float = Field(default=DETECTION_GOAL, description="the detection rate the floor needs")
    floor: float | None = Field(
        default=None,
        description="the smallest planted fraction detected in at least `goal` of the "
        "replicates in every env of the audit; None: none was",
    )
    per_fraction: list[CanaryFraction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> PowerFloor:
        measured = self.status == "measured"
        if measured != (self.study is not None) or measured == (self.reason is not None):
            raise ValueError("a measured power floor names its study, one not measured a reason")
        if not measured and (self.per_fraction or self.floor is not None):
            raise ValueError("a power floor not measured has no fractions and no floor")
        if measured and self.floor != detection_floor(self.per_fraction, self.goal):
            raise ValueError(f"power floor {self.floor} is not what its fractions give")
        return self


def _matches(study: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether the study's shared config equals `config` on every `POWER_FIELDS` field, and
    its cells ran the audit's env (`env` shared, or an axis holding it)."""
    shared = {**ADDED_FIELDS, **study.get("shared", {})}
    if any(field not in shared or shared[field] != config[field] for field in POWER_FIELDS):
        return False
    if "env" in shared:
        return shared["env"] == config["env"]
    return "env" in study.get("axes", []) and config["env"] in ("api", "bash")


def measured_floor(
    config: dict[str, Any], mode: str, studies: Path = STUDY_DIR, root: Path | None = None
) -> PowerFloor:
    """The power floor of an audit with the resolved `config` (`AuditConfig.to_dict()`), read
    from the first matching `studies/canary*/study.json` with a canary section and no pending
    cell (its path relative to `root`, default the parent of `studies`' parent); a matching
    study with pending cells is named in the reason it is not measured."""
    if mode != "pipeline-test":
        return PowerFloor(
            status="not measured",
            reason="the canary measures pipeline tests; a model audit distils no student",
        )
    root = root or studies.parent.parent
    envs = ["api", "bash"] if config["env"] == "all" else [config["env"]]
    reason = NOT_RUN
    for path in sorted(studies.glob("canary*/study.json")):
        study = json.loads(path.read_text())
        if not study.get("canary") or not _matches(study, config):
            continue
        entries = [
            CanaryFraction.model_validate(entry)
            for entry in study["canary"]["fractions"]
            if entry["env"] in envs
        ]
        if {entry.env for entry in entries} != set(envs):
            continue
        where = path.resolve()
        shown = where.relative_to(root.resolve()) if where.is_relative_to(root.resolve()) else where
        if study.get("pending"):
            planned = len(study["pending"]) + study["totals"]["cells"]
            reason = (
                f"the canary study at this configuration ({shown}) has "
                f"{len(study['pending'])} of its {planned} cells still to run"
            )
            continue
        return PowerFloor(
            status="measured",
            study=str(shown),
            floor=detection_floor(entries),
            per_fraction=entries,
        )
    return PowerFloor(status="not measured", reason=reason)
