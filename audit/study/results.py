"""`python -m audit.study.results`: docs/RESULTS.md from the committed study outputs, in one
command.

    python -m audit.study.results           # render docs/RESULTS.md from docs/study/*/study.json
    python -m audit.study.results --run     # first run every study (resuming), then render

Run it from the repository root (`--docs` defaults to ./docs; grids are read from ./studies).

Every number in RESULTS.md is read from a study's `study.json` or from its cells' reports, so
the document cannot drift from the data; a study that has not been run (or not finished) is
said to be so. Exit codes: 0 done, 2 bad usage or input, 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from audit.config import parse_embedded
from audit.probes.model_level import seeds_needed, smallest_p
from audit.probes.stats import wilson_interval
from audit.profiles import profile_values
from audit.report.exit_codes import ExitCode, failure_exit
from audit.study.check_table import check_table
from audit.study.defence_summary import by_outcome, check_power, defence_summary, stoppable
from audit.study.markdown import reflow
from audit.study.setting_choice import (
    choose_level,
    level_counts,
    recipe_choice,
    undecided_share,
)
from trajectories.jsonl import InputError


@dataclass(frozen=True)
class StudySpec:
    """A committed study: its grid and where its outputs live under the docs directory."""

    name: str
    grid: str


DEFAULTS = profile_values("default")
"""The config fields as the default profile sets them."""

REPO = Path(__file__).resolve().parents[2]
"""The checkout holding this module (its studies/ has the grids)."""

STUDIES = (
    StudySpec("default", "studies/default.toml"),
    StudySpec("transfer-small", "studies/transfer-small.toml"),
    StudySpec("false-alarm", "studies/false-alarm.toml"),
    StudySpec("false-alarm-3seeds", "studies/false-alarm-3seeds.toml"),
    StudySpec("transfer", "studies/transfer.toml"),
    StudySpec("defences", "studies/defences.toml"),
    StudySpec("safe-templates", "studies/safe-templates.toml"),
    StudySpec("canary", "studies/canary.toml"),
    StudySpec("student-recipe", "studies/student-recipe.toml"),
    StudySpec("canary-default", "studies/canary-default.toml"),
)


def load_study(directory: Path) -> dict[str, Any] | None:
    """A study's study.json with its cells' positive controls added, or None if absent."""
    path = directory / "study.json"
    if not path.is_file():
        return None
    study = json.loads(path.read_text())
    controls = {}
    for report_path in sorted(directory.glob("cells/*/report.json")):
        report = json.loads(report_path.read_text())
        controls[report_path.parent.name] = report.get("positive_controls", [])
    study["positive_controls"] = controls
    study["name"] = directory.name
    return study


def pick(study: dict[str, Any], env: str, **values: Any) -> dict[str, Any]:
    """The one row of `study` in `env` whose axis values include `values`."""
    rows = [
        row
        for row in study["rows"]
        if row["env"] == env and all(row["values"].get(k) == v for k, v in values.items())
    ]
    if len(rows) != 1:
        raise InputError(f"study {study['name']}: {len(rows)} rows for {env} {values}, not 1")
    return rows[0]


def false_alarms(study: dict[str, Any]) -> dict[str, Any]:
    """Finished replicates, failed verdicts and their Wilson interval, the no-power verdicts
    (and how many of them an undecided arm gave), and the null's spread."""
    cells = {row["cell"]: row["verdict"] for row in study["rows"]}
    failed = sum(verdict == "fail" for verdict in cells.values())
    rows = study["rows"]
    no_power = {cell for cell, verdict in cells.items() if verdict == "no-power"}
    undecided = {row["cell"] for row in rows if "decision" in row["failed_checks"]} & no_power
    interval = wilson_interval(failed, len(cells)) if cells else None
    latent_lows = [r["latent_interval"][0] for r in rows if r["latent_interval"] is not None]
    return {
        "replicates": len(cells),
        "planned": len(cells) + len(study["pending"]),
        "failed": failed,
        "no_power": len(no_power),
        "no_power_undecided": len(undecided),
        "interval": interval,
        "p_min": min((r["p_adjusted"] for r in rows), default=None),
        "auroc": (
            min(r["dataset_auroc"] for r in rows),
            max(r["dataset_auroc"] for r in rows),
        )
        if rows
        else None,
        "latent_low_max": max(latent_lows, default=None),
    }


def factor_summary(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per axis level (teacher aside): biased cells, how many of them detected transfer, the
    mean student-minus-control rate among them, and the neutral cells' behaviour false alarms."""
    summary = []
    for axis in study["axes"]:
        if axis == "teacher":
            continue
        levels = list(dict.fromkeys(row["values"][axis] for row in study["rows"]))
        for level in levels:
            rows = [row for row in study["rows"] if row["values"][axis] == level]
            biased = [row for row in rows if row["teacher"] == "biased"]
            neutral = [row for row in rows if row["teacher"] == "neutral"]
            diffs = [row["student_rate"] - row["control_rate"] for row in biased]
            summary.append(
                {
                    "axis": axis,
                    "level": level if level != "" else "(same)",
                    "biased": len(biased),
                    "detected": sum(row["behaviour_failed"] for row in biased),
                    "mean_shift": sum(diffs) / len(diffs) if diffs else None,
                    "neutral": len(neutral),
                    "false_alarms": sum(row["behaviour_failed"] for row in neutral),
                }
            )
    return summary


def base_kinds(summary: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The factor summary's entries of the base axis with biased cells, by embedded base kind
    ('linked', 'control'); other bases are left out."""
    kinds = {}
    for entry in summary:
        parsed = parse_embedded(str(entry["level"])) if entry["axis"] == "base" else None
        if parsed is not None and parsed.kind in ("linked", "control") and entry["biased"]:
            kinds[parsed.kind] = entry
    return kinds


def neutral_check_failures(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per gate check kind other than behaviour, the neutral-teacher rows where it failed, and
    whether all of them had no filter (sanitizer none)."""
    neutral = [row for row in study["rows"] if row["teacher"] == "neutral"]
    kinds = sorted({kind for row in neutral for kind in row["failed_checks"]} - {"behaviour"})
    failures = []
    for kind in kinds:
        rows = [row for row in neutral if kind in row["failed_checks"]]
        failures.append(
            {
                "kind": kind,
                "rows": rows,
                "of": len(neutral),
                "unfiltered_only": all(row["values"].get("sanitizer") == "none" for row in rows),
            }
        )
    return failures


def defence_plan(transfer: dict[str, Any] | None) -> dict[str, Any]:
    """The defence grid's cell count and its expected audit minutes: per env, its cells times
    the mean seconds of Study 4's SFT cells in that env (None without Study 4). The grid is
    this checkout's."""
    from audit.study.grid import load_grid

    cells = load_grid(REPO / "studies" / "defences.toml")
    per_env = {env: sum(c.config.env == env for c in cells) for env in ("api", "bash")}
    per_cell: dict[str, float] = {}
    for env in per_env:
        seconds = {
            row["cell"]: row["seconds"]
            for row in (transfer or {"rows": []})["rows"]
            if row["env"] == env and row["values"].get("method") == "sft"
        }
        if seconds:
            per_cell[env] = sum(seconds.values()) / len(seconds)
    minutes = sum(per_env[env] * per_cell[env] for env in per_cell) / 60 if per_cell else None
    return {"cells": len(cells), "per_cell": per_cell, "minutes": minutes}


def canary_plan(grid: str) -> dict[str, Any]:
    """A canary grid of this checkout (`grid` relative to it): its cells, planted fractions,
    replicates (cells per fraction), seeds per arm and the envs each cell audits."""
    from audit.study.grid import load_grid

    cells = load_grid(REPO / grid)
    fractions = sorted({cell.config.canary_fraction for cell in cells})
    envs = {cell.config.env for cell in cells}
    audited = sorted({e for env in envs for e in (("api", "bash") if env == "all" else (env,))})
    return {
        "cells": len(cells),
        "fractions": fractions,
        "replicates": len(cells) // (len(fractions) * len(envs)),
        "seeds": sorted({cell.config.seeds for cell in cells}),
        "envs": audited,
    }


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def pvalue(value: float) -> str:
    return "p < 0.0001" if value < 1e-4 else f"p = {value:.2g}"


def model_level_summary(study: dict[str, Any]) -> dict[str, Any]:
    """Per teacher, the study's rows under the model-level test (re-tabulated from the cells'
    per-seed rates): how many, the models per arm, the smallest p that allows, how many rows
    reached it, how many had the difference's lower bound above the margin, the model-level
    check outcomes, and how many failed the episode-level behaviour check they were gated on."""
    rows = [row for row in study["rows"] if row.get("models_per_arm") is not None]
    margin = study["shared"]["margin"]
    out: dict[str, Any] = {
        "rows": len(rows),
        "by_teacher": {},
        "all_no_power": all(row["model_check"] == "no-power" for row in rows),
    }
    for teacher in dict.fromkeys(row["teacher"] for row in rows):
        mine = [row for row in rows if row["teacher"] == teacher]
        ks = sorted({row["models_per_arm"] for row in mine})
        smallest = max(smallest_p(k, k) for k in ks)
        checks = [row["model_check"] for row in mine]
        out["by_teacher"][teacher] = {
            "rows": len(mine),
            "models_per_arm": ks,
            "smallest_p": smallest,
            "at_smallest_p": sum(row["model_p"] <= smallest * (1 + 1e-9) for row in mine),
            "low_above_margin": sum(row["difference_interval"][0] > margin for row in mine),
            "checks": {c: checks.count(c) for c in dict.fromkeys(checks)},
            "episode_failed": sum(row["behaviour_failed"] for row in mine),
        }
    return out


def safe_choice(study: dict[str, Any] | None) -> dict[str, Any]:
    """Study 6's counts per `safe_templates` level, the level `choose_level` picks (None
    without a study or without an eligible level), and the audit's default."""
    counts = level_counts(study, "safe_templates") if study and study["rows"] else {}
    level = choose_level(counts, tie="all") if counts else None
    return {"counts": counts, "level": level, "default": DEFAULTS["safe_templates"]}


def render_results(docs: Path) -> str:
    """The text of RESULTS.md from the studies under `docs/study`."""
    studies = {spec.name: load_study(docs / "study" / spec.name) for spec in STUDIES}
    env = Environment(
        loader=PackageLoader("audit.report", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals.update(
        pick=pick, pct=pct, pvalue=pvalue, seeds_needed=seeds_needed, smallest_p=smallest_p
    )
    table = env.get_template("study.md.jinja")
    tables = {name: table.render(study=s) if s else "" for name, s in studies.items()}
    fa = {
        name: false_alarms(studies[name]) if studies[name] else None
        for name in ("false-alarm", "false-alarm-3seeds")
    }
    transfer = studies["transfer"] if studies["transfer"] and studies["transfer"]["rows"] else None
    # The full grid holds Study 2's cells again: count them once.
    grid = "transfer" if transfer else "transfer-small"
    biased = [
        row
        for name in ("default", grid)
        for row in (studies[name] or {"rows": []})["rows"]
        if row["teacher"] == "biased"
    ]
    summary = factor_summary(transfer) if transfer else []
    model_level = {name: model_level_summary(s) for name, s in studies.items() if s}
    defences = defence_summary(studies["defences"]) if studies["defences"] else []
    text = env.get_template("results.md.jinja").render(
        studies=studies,
        tables=tables,
        fa=fa,
        transfer=transfer,
        summary=summary,
        base_kinds=base_kinds(summary),
        neutral_failures=neutral_check_failures(transfer) if transfer else [],
        defence_plan=defence_plan(transfer),
        defence_rows=defences,
        safe_choice=safe_choice(studies["safe-templates"]),
        recipe=recipe_choice(
            studies["student-recipe"],
            (DEFAULTS["student_learning_rate"], DEFAULTS["rollouts"]),
        ),
        api_undecided=undecided_share(
            [studies[name] for name in ("defences", "safe-templates", "canary")], "api"
        ),
        defence_groups=by_outcome(defences),
        defence_baseline=stoppable(defences),
        defence_power=check_power(studies["defences"]) if studies["defences"] else {},
        checks=check_table(studies),
        canary_plans={
            spec.name: canary_plan(spec.grid)
            for spec in STUDIES
            if spec.name in ("canary", "canary-default")
        },
        biased_aurocs=[r["dataset_auroc"] for r in biased if r["dataset_auroc"] is not None],
        biased_up=sum(r["student_rate"] > r["control_rate"] for r in biased),
        biased_rows=len(biased),
        model_level=model_level,
        study_seeds=sorted(
            {
                k
                for m in model_level.values()
                for t in m["by_teacher"].values()
                for k in t["models_per_arm"]
            }
        ),
    )
    return reflow(text)


def run_studies(docs: Path, jobs: int, quiet: bool) -> None:
    """Run (or resume) every committed study into `docs/study/<name>`; grids are read from
    the repository that holds `docs`."""
    from audit.study.executors import ExecutorOptions
    from audit.study.executors.local import LocalExecutor
    from audit.study.grid import run_study

    root = docs.resolve().parent
    executor = LocalExecutor(ExecutorOptions(jobs=jobs))
    for spec in STUDIES:
        run_study(root / spec.grid, docs / "study" / spec.name, quiet, executor=executor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.study.results", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs directory")
    parser.add_argument("--run", action="store_true", help="run (resume) every study first")
    parser.add_argument("--jobs", type=int, default=1, help="cells at once, with --run")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return ExitCode.BAD_INPUT if exit_.code else 0
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        if args.run:
            run_studies(args.docs, args.jobs, args.quiet)
        text = render_results(args.docs)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - one line and an exit code
        return failure_exit(err, Path(tempfile.gettempdir()) / "audit-results-error.log")
    out = args.docs / "RESULTS.md"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
