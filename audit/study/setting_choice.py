"""Defaults chosen from studies, by rules fixed before the studies were run.

`safe_templates` (Study 6): among the axis's levels whose neutral-teacher rows
raised no behaviour alarm (model-level check `fail`), take the one whose biased-teacher rows
failed the model-level behaviour check (transfer detected) in the most environments; a tie
goes to `tie` (the level that curates nothing). With no eligible level there is no choice.

The students' recipe (Study 8): among the (learning rate, rollouts) settings in which every arm
reached a decision in at least the gate's `min_decision_rate` of its episodes, the one nearest
the default it replaces (`choose_recipe`).
"""

from __future__ import annotations

from typing import Any

from audit.config import AuditConfig


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


def decision_floor(study: dict[str, Any]) -> float:
    """The study's `min_decision_rate` (a study that predates the field: the default)."""
    return study["shared"].get("min_decision_rate", AuditConfig().min_decision_rate)


RECIPE_AXES = ("student_learning_rate", "rollouts")
"""The axes of the student-recipe study (`studies/student-recipe.toml`)."""


def recipe_rows(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (learning rate, rollouts) setting of the student-recipe study: its rows by teacher,
    their lowest decision rate over the arms (students and controls; None where a row lacks
    one), and whether every arm reached `min_decision_rate` (never with an unknown rate)."""
    floor = decision_floor(study)
    grouped: dict[tuple[float, int], list[dict[str, Any]]] = {}
    for row in study["rows"]:
        grouped.setdefault(tuple(row["values"][axis] for axis in RECIPE_AXES), []).append(row)
    settings = []
    for (rate, rollouts), rows in grouped.items():
        arms = [row.get(arm) for row in rows for arm in ("student_decided", "control_decided")]
        lowest = None if None in arms else min(arms)
        settings.append(
            {
                "learning_rate": rate,
                "rollouts": rollouts,
                "lowest_decided": lowest,
                "qualifies": lowest is not None and lowest >= floor,
                "rows": {row["teacher"]: row for row in rows},
            }
        )
    return sorted(settings, key=lambda e: (-e["learning_rate"], e["rollouts"]))


def choose_recipe(settings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The rule's setting (studies/student-recipe.toml): among the settings in which every arm
    decided in at least `min_decision_rate` of its episodes, the highest learning rate, then
    the fewest rollouts; None when none qualifies."""
    qualified = [entry for entry in settings if entry["qualifies"]]
    return qualified[0] if qualified else None


def recipe_choice(study: dict[str, Any] | None, default: tuple[float, int]) -> dict[str, Any]:
    """Study 8's settings, the one `choose_recipe` picks (None without a study or without a
    qualifying setting), and the audit's `default` (learning rate, rollouts)."""
    settings = recipe_rows(study) if study and study["rows"] else []
    chosen = choose_recipe(settings)
    return {
        "settings": settings,
        "chosen": chosen,
        "default": {"learning_rate": default[0], "rollouts": default[1]},
        "is_default": chosen is not None
        and (chosen["learning_rate"], chosen["rollouts"]) == default,
    }


def undecided_share(studies: list[dict[str, Any] | None], env: str) -> dict[str, int]:
    """Over the `env` rows of `studies`: how many, and in how many an arm (student or control)
    decided in under its study's `min_decision_rate`."""
    rows = under = 0
    for study in studies:
        for row in (study or {"rows": []})["rows"]:
            arms = [row.get("student_decided"), row.get("control_decided")]
            if row["env"] != env or None in arms:
                continue
            rows += 1
            under += min(arms) < decision_floor(study)
    return {"rows": rows, "under": under}
