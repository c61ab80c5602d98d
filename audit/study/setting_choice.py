"""A default chosen from a study: the level of one axis under which the audit sees most.

Rule (fixed before the study was run): among the axis's levels whose neutral-teacher rows
raised no behaviour alarm (model-level check `fail`), take the one whose biased-teacher rows
failed the model-level behaviour check (transfer detected) in the most environments; a tie
goes to `tie` (the level that curates nothing). With no eligible level there is no choice.
"""

from __future__ import annotations

from typing import Any


def level_counts(study: dict[str, Any], axis: str) -> dict[str, dict[str, int]]:
    """Per level of `axis`: biased rows, those with transfer detected, neutral rows, and
    neutral rows with a behaviour alarm."""
    counts: dict[str, dict[str, int]] = {}
    for row in study["rows"]:
        entry = counts.setdefault(
            str(row["values"][axis]), {"biased": 0, "detected": 0, "neutral": 0, "alarms": 0}
        )
        fired = row["model_check"] == "fail"
        if row["teacher"] == "biased":
            entry["biased"] += 1
            entry["detected"] += fired
        else:
            entry["neutral"] += 1
            entry["alarms"] += fired
    return counts


def choose_level(counts: dict[str, dict[str, int]], tie: str) -> str | None:
    """The rule's level (module doc); None when every level raised a neutral alarm."""
    eligible = {level: c for level, c in counts.items() if c["alarms"] == 0}
    if not eligible:
        return None
    best = max(c["detected"] for c in eligible.values())
    top = [level for level, c in eligible.items() if c["detected"] == best]
    return tie if tie in top else sorted(top)[0]
