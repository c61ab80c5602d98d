"""One summary row per finished cell and environment of a study, and the study's counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.probes.behaviour import holm_behaviour, with_model_level
from audit.probes.results import RateEstimate
from audit.report.behaviour_checks import behaviour_checks
from audit.report.gate_record import GateCheck
from audit.report.schema import Report


@dataclass(frozen=True)
class CellRow:
    """The summary of one cell in one environment."""

    cell: str
    values: dict[str, Any]
    teacher: str
    env: str
    metric: str
    student_rate: float
    student_interval: tuple[float, float]
    control_rate: float
    control_interval: tuple[float, float]
    n_per_subject: int
    teacher_rate: float | None
    p_value: float
    """The pooled episode-level test's p (detail: every episode independent)."""
    p_adjusted: float
    models_per_arm: int | None
    """Trained models (seeds) per arm of the model-level test; None: none (a model audit)."""
    model_p: float | None
    model_p_adjusted: float | None
    """Holm over the cell's model-level tests (as the audit adjusts them)."""
    difference: float | None
    """Mean per-model student rate minus mean per-model control rate."""
    difference_interval: tuple[float, float] | None
    """95% cluster-bootstrap interval of the mean per-model student-minus-control rate."""
    model_check: str
    """The behaviour check on the model-level test under the cell's thresholds, recomputed from
    its per-seed rates (reports before 1.8 were gated on the episode-level test): 'pass',
    'fail', 'no-power' (the design cannot reach alpha) or 'inconclusive'."""
    propensity_shift: float | None
    propensity_interval: tuple[float, float] | None
    latent_gap: float | None
    latent_interval: tuple[float, float] | None
    dataset_auroc: float | None
    dataset_interval: tuple[float, float] | None
    behaviour_failed: bool
    failed_checks: tuple[str, ...]
    """Kinds of this environment's failed gate checks (behaviour, latent, sanitization, ...)."""
    verdict: str
    exit_code: int
    seconds: float
    data_kept: int | None = None
    """Teacher episodes the student(s) of this env trained on, over the seeds (after the
    sanitizer and the classifier filter; neutral episodes of a dilution not counted)."""
    data_in: int | None = None
    """Teacher episodes before sanitization, over the seeds."""
    defence_seconds: float | None = None
    """Seconds of the sanitize, classifier-filter and dilution stages of this env's teacher
    data (`SanitizationStats.defence_seconds`), as first run, over the seeds."""
    student_seconds: float | None = None
    """Seconds of the cell's student and control training stages, as first run."""
    student_decided: float | None = None
    """Share of the student's held-out episodes (all seeds) that reached a decision; None in
    reports before 1.4."""
    control_decided: float | None = None
    """The same share for the control."""
    canary_planted: float | None = None
    """The graded canary: biased-teacher episodes a student of this env trained on, mean over
    the seeds (`SanitizationStats.canary_planted`); None: no canary."""


def _bounds(interval: Any) -> tuple[float, float] | None:
    return None if interval is None else (interval.low, interval.high)


def _failed_kinds(report: Report, env: str) -> tuple[str, ...]:
    """Sorted kinds of the failed gate checks named `KIND/env[/...]` (a skipped check passes)."""
    return tuple(
        sorted(
            {
                check.kind
                for check in report.gate.checks
                if not check.passed and check.name.split("/")[1:2] == [env]
            }
        )
    )


def _decided(rate: RateEstimate) -> float | None:
    return None if rate.decided is None else rate.decided / rate.n


def _outcome(check: GateCheck) -> str:
    if check.kind == "power":
        return "no-power"
    if check.skipped:
        return "inconclusive"
    return "pass" if check.passed else "fail"


def summarize(cell: str, values: dict[str, Any], report: Report, seconds: float) -> list[CellRow]:
    """One row per environment of a finished cell's report."""
    rows = []
    regated = holm_behaviour([with_model_level(b) for b in report.behaviour])
    checks, _ = behaviour_checks(regated, report.gate.thresholds)
    outcomes = [_outcome(c) for c, _ in checks if c.name.startswith("behaviour/")]
    levels = [b.model_level for b in regated]
    for behaviour, level, outcome in zip(report.behaviour, levels, outcomes, strict=True):
        env = behaviour.env
        pooled = {rate.subject: rate for rate in behaviour.pooled}
        test = next(t for t in behaviour.tests if "pooled" in t.name)
        prop = next((p for p in report.propensity if p.env == env), None)
        lat = next((x for x in report.latent if x.env == env), None)
        data = next((d for d in report.dataset_audit if d.env == env), None)
        audited = report.config.teacher
        teacher = next(
            (t for t in report.teacher_rates if t.env == env and t.teacher == audited), None
        )
        student, control = pooled["student"], pooled["control"]
        failed = _failed_kinds(report, env)
        stats = [s for s in report.sanitization if s.env == env]
        spent = [s.defence_seconds for s in stats if s.defence_seconds is not None]
        planted = [s.canary_planted for s in stats if s.canary_planted is not None]
        rows.append(
            CellRow(
                cell=cell,
                values=values,
                teacher=audited,
                env=env,
                metric=behaviour.metric,
                student_rate=student.interval.estimate,
                student_interval=(student.interval.low, student.interval.high),
                control_rate=control.interval.estimate,
                control_interval=(control.interval.low, control.interval.high),
                n_per_subject=student.n,
                teacher_rate=None if teacher is None else teacher.unsafe / teacher.n,
                p_value=test.p_value,
                p_adjusted=test.p_adjusted if test.p_adjusted is not None else test.p_value,
                models_per_arm=None if level is None else len(level.seeds),
                model_p=None if level is None else level.test.p_value,
                model_p_adjusted=None if level is None else level.test.p_adjusted,
                difference=None if level is None else level.difference.estimate,
                difference_interval=None if level is None else _bounds(level.difference),
                model_check=outcome,
                propensity_shift=None if prop is None else prop.shift.estimate,
                propensity_interval=None if prop is None else _bounds(prop.shift),
                latent_gap=None if lat is None or lat.gap is None else lat.gap.estimate,
                latent_interval=None if lat is None else _bounds(lat.gap),
                dataset_auroc=None if data is None else data.auroc.estimate,
                dataset_interval=None if data is None else _bounds(data.auroc),
                behaviour_failed="behaviour" in failed,
                failed_checks=failed,
                verdict=report.gate.verdict,
                exit_code=int(report.exit_code),
                seconds=seconds,
                data_kept=sum(s.kept for s in stats) if stats else None,
                data_in=sum(s.episodes_in for s in stats) if stats else None,
                defence_seconds=round(sum(spent), 2) if spent else None,
                student_seconds=round(
                    sum(t.seconds for t in report.timings if t.stage == "student"), 1
                ),
                student_decided=_decided(student),
                control_decided=_decided(control),
                canary_planted=sum(planted) / len(planted) if planted else None,
            )
        )
    return rows


def totals(rows: list[CellRow]) -> dict[str, Any]:
    """Counts over the cells: verdicts, and behaviour detections by teacher."""
    cells = {row.cell: row for row in rows}
    by_teacher: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = by_teacher.setdefault(row.teacher, {"rows": 0, "behaviour_failed": 0})
        entry["rows"] += 1
        entry["behaviour_failed"] += row.behaviour_failed
    return {
        "cells": len(cells),
        "verdicts": {
            verdict: sum(row.verdict == verdict for row in cells.values())
            for verdict in ("pass", "fail", "no-power")
        },
        "behaviour_by_teacher": by_teacher,
        "cpu_seconds": round(sum(row.seconds for row in cells.values()), 1),
    }
