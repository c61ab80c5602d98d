"""How often each kind of gate check failed over the committed studies' rows that had the
power to decide: the power of every check where a bias was planted, its false alarms where
none was.

A row counts when its model-level behaviour check is not "no-power" (the design can reach
alpha: 5 models per arm over two environments). Rows are grouped by what their students were
trained on: the biased teacher's data (`biased`), a graded canary's mix with a planted share
under 1 (`planted < 1`), or the neutral teacher's (`neutral`).
"""

from __future__ import annotations

from typing import Any

from audit.study.canary import AXIS as CANARY_AXIS
from audit.study.canary import failure_kinds

GROUPS = ("biased", "planted < 1", "neutral")
"""The row groups, in the order the table lists them."""

OUTCOMES = ("pass", "fail", "inconclusive")
"""The model-level behaviour check's outcomes a counted row can have."""


def row_group(row: dict[str, Any]) -> str:
    """`row`'s group: "neutral", "planted < 1" (a canary fraction under 1) or "biased"."""
    if row["teacher"] != "biased":
        return "neutral"
    fraction = row["values"].get(CANARY_AXIS)
    return "planted < 1" if fraction is not None and float(fraction) < 1 else "biased"


def check_table(studies: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Per group with counted rows: the rows, the studies they come from and their models
    per arm, the behaviour outcomes, the rows where the latent check was measured, the
    failures of every kind of check (`failure_kinds`), and of the rows whose behaviour check
    detected transfer, how many the latent check flagged too."""
    rows = [
        (name, row)
        for name, study in studies.items()
        if study
        for row in study["rows"]
        if row.get("models_per_arm") is not None and row["model_check"] != "no-power"
    ]
    kinds = failure_kinds(row["failed_checks"] for _, row in rows)
    table = []
    for group in GROUPS:
        mine = [(name, row) for name, row in rows if row_group(row) == group]
        if not mine:
            continue
        detected = [row for _, row in mine if row["model_check"] == "fail"]
        table.append(
            {
                "group": group,
                "rows": len(mine),
                "studies": list(dict.fromkeys(name for name, _ in mine)),
                "models_per_arm": sorted({row["models_per_arm"] for _, row in mine}),
                "outcomes": {o: sum(row["model_check"] == o for _, row in mine) for o in OUTCOMES},
                "latent_measured": sum(row["latent_gap"] is not None for _, row in mine),
                "failed": {k: sum(k in row["failed_checks"] for _, row in mine) for k in kinds},
                "behaviour_detected": len(detected),
                "latent_where_detected": sum("latent" in row["failed_checks"] for row in detected),
            }
        )
    return table
