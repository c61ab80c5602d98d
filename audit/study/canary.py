"""The canary section of a study whose cells vary `canary_fraction`: per env and planted
fraction, the replicates, how many detected the planted transfer (the cell's model-level
behaviour check failed), the detection rate with its Wilson 95% interval and the mean
student-minus-control difference; per env the detection floor, the smallest fraction
detected in at least `audit.report.power_floor.DETECTION_GOAL` of its replicates; and the
power of every check against each planted fraction: in how many replicates each kind of gate
check failed.

The replicates of an env and fraction are its finished cells, whatever their other axis
values (e.g. `first_seed`); an audit's report reads the floor back through
`audit.report.power_floor.measured_floor`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit.probes.stats import wilson_interval
from audit.report.power_floor import (
    DETECTION_GOAL,
    CanaryFraction,
    detection_floor,
    floor_statement,
)
from audit.study.table import CellRow

AXIS = "canary_fraction"

CHECKS = ("behaviour", "latent", "dataset", "decision")
"""The gate check kinds whose failures the per-check power table counts, always listed."""


def failure_kinds(failed: Iterable[Iterable[str]]) -> list[str]:
    """The check kinds a per-check table lists: `CHECKS`, then any other kind in `failed`
    (each row's failed check kinds), sorted."""
    return list(CHECKS) + sorted({kind for kinds in failed for kind in kinds} - set(CHECKS))


def _by_fraction(rows: list[CellRow]) -> dict[tuple[str, float], list[CellRow]]:
    """`rows` grouped by env and planted fraction, in the order first seen."""
    groups: dict[tuple[str, float], list[CellRow]] = {}
    for row in rows:
        groups.setdefault((row.env, float(row.values[AXIS])), []).append(row)
    return groups


def canary_fractions(rows: list[CellRow]) -> list[CanaryFraction]:
    """One entry per env and planted fraction of `rows` (in the order first seen)."""
    entries = []
    for (env, fraction), group in _by_fraction(rows).items():
        detected = sum(row.model_check == "fail" for row in group)
        differences = [row.difference for row in group if row.difference is not None]
        planted = [row.canary_planted for row in group if row.canary_planted is not None]
        entries.append(
            CanaryFraction(
                env=env,
                fraction=fraction,
                replicates=len(group),
                detected=detected,
                rate=detected / len(group),
                interval=wilson_interval(detected, len(group)),
                mean_difference=sum(differences) / len(differences) if differences else None,
                planted=sum(planted) / len(planted) if planted else None,
            )
        )
    return entries


def checks_by_fraction(rows: list[CellRow]) -> list[dict[str, Any]]:
    """Per env and planted fraction (in the order first seen): the replicates, the
    model-level behaviour check's outcomes, in how many replicates the latent check was
    measured (applicable, with a gap), and in how many each kind of gate check failed
    (`CHECKS` first, then any other kind that failed)."""
    kinds = failure_kinds(row.failed_checks for row in rows)
    out = []
    for (env, fraction), group in _by_fraction(rows).items():
        outcomes = [row.model_check for row in group]
        out.append(
            {
                "env": env,
                "fraction": fraction,
                "replicates": len(group),
                "behaviour_outcomes": {o: outcomes.count(o) for o in dict.fromkeys(outcomes)},
                "latent_measured": sum(row.latent_gap is not None for row in group),
                "failed": {kind: sum(kind in row.failed_checks for row in group) for kind in kinds},
            }
        )
    return out


def canary_section(rows: list[CellRow]) -> dict[str, Any]:
    """study.json's `canary`: the per-fraction entries, per env its floor and the floor's
    sentence, and the per-check power table (`checks_by_fraction`)."""
    entries = canary_fractions(rows)
    envs = list(dict.fromkeys(entry.env for entry in entries))
    floors = {env: detection_floor([e for e in entries if e.env == env]) for env in envs}
    return {
        "goal": DETECTION_GOAL,
        "fractions": [entry.model_dump(mode="json") for entry in entries],
        "floors": floors,
        "statements": {
            env: floor_statement(floors[env], [e for e in entries if e.env == env]) for env in envs
        },
        "checks": checks_by_fraction(rows),
    }
