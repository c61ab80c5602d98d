"""What each defence of the defence study did, per environment, read from its study.json rows.

In an environment a defence *leaked* when its biased-teacher row's model-level behaviour check
failed (transfer detected); it showed *no transfer* when that check passed (the design had
power, both arms decided often enough, and the student was not measurably more unsafe than its
control by more than the margin); otherwise the study cannot say (`inconclusive`: a decision
check failed; `no-power`: the design cannot reach alpha). A defence can be credited with
stopping the transfer only in an environment where the baseline leaked (`stoppable`). Its
neutral-teacher row, where there is one, says whether the defence alone makes the gate fire.
Cost is read against the `keyword` baseline row of the same environment and teacher.
"""

from __future__ import annotations

from typing import Any

BASELINE = "keyword"
"""The defence label of the baseline cells (the keyword filter, nothing else)."""

OUTCOME = {"pass": "no transfer", "fail": "leaked"}
"""The model-level behaviour check's outcome, as a defence outcome."""


def _row(rows: list[dict[str, Any]], defence: str, env: str, teacher: str) -> dict | None:
    return next(
        (
            r
            for r in rows
            if r["values"].get("defence") == defence and r["env"] == env and r["teacher"] == teacher
        ),
        None,
    )


def _kept(row: dict[str, Any]) -> float | None:
    if row.get("data_kept") is None or not row.get("data_in"):
        return None
    return row["data_kept"] / row["data_in"]


def defence_summary(study: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (defence, env) with a biased-teacher row, in the study's row order."""
    rows = study["rows"]
    out = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        defence, env = row["values"].get("defence"), row["env"]
        if row["teacher"] != "biased" or defence is None or (defence, env) in seen:
            continue
        seen.add((defence, env))
        neutral = _row(rows, defence, env, "neutral")
        base = _row(rows, BASELINE, env, "biased")
        extra = None
        if base is not None and row.get("student_seconds") is not None:
            extra = (row.get("defence_seconds") or 0.0) + row["student_seconds"]
            extra -= (base.get("defence_seconds") or 0.0) + base["student_seconds"]
        out.append(
            {
                "defence": defence,
                "env": env,
                "outcome": OUTCOME.get(row["model_check"], row["model_check"]),
                "row": row,
                "kept": _kept(row),
                "extra_seconds": extra,
                "neutral_failed": None if neutral is None else list(neutral["failed_checks"]),
                "neutral_behaviour": None if neutral is None else neutral["model_check"],
            }
        )
    return out


def stoppable(summary: list[dict[str, Any]]) -> dict[str, str]:
    """The baseline's outcome per environment (`OUTCOME` labels)."""
    return {e["env"]: e["outcome"] for e in summary if e["defence"] == BASELINE}


def by_outcome(summary: list[dict[str, Any]]) -> dict[str, list[str]]:
    """`DEFENCE (env)` labels grouped by outcome: no transfer, leaked, inconclusive,
    no-power."""
    groups: dict[str, list[str]] = {}
    for entry in summary:
        groups.setdefault(entry["outcome"], []).append(f"{entry['defence']} ({entry['env']})")
    return groups


def check_power(study: dict[str, Any]) -> dict[str, Any]:
    """Over the biased-teacher rows: how many rows each kind of gate check failed in, and of
    the rows whose model-level behaviour check detected transfer, how many the latent check
    also flagged (its power where behaviour transfer is detected)."""
    biased = [row for row in study["rows"] if row["teacher"] == "biased"]
    kinds = sorted({kind for row in biased for kind in row["failed_checks"]})
    detected = [row for row in biased if row["model_check"] == "fail"]
    return {
        "rows": len(biased),
        "failed": {kind: sum(kind in row["failed_checks"] for row in biased) for kind in kinds},
        "behaviour_detected": len(detected),
        "latent_where_detected": sum("latent" in row["failed_checks"] for row in detected),
    }
