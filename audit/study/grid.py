"""`python -m audit.study`: run a grid of audits and tabulate where the bias passes the filter.

    python -m audit.study --grid studies/false-alarm.toml --out study-out/false-alarm

A grid file has an `[audit]` table (settings every cell shares: any `AuditConfig` field) and an
`[axes]` table (field -> list of values); there is one cell per combination of the axes' values,
less those matching an `[[exclude]]` table (axis -> value; a cell matches when it has all of them).
A `[variants.NAME]` table is an axis NAME (not a field) whose values are labels, each a table of
field values the cell takes (`NAME = "label"` in the cell's values): one axis that sets several
fields at once, such as one defence per cell in studies/defences.toml.
Each cell is a full audit (`audit.pipeline.orchestrator.Audit`) whose stages go through the shared
stage cache, so cells reuse one another's teachers, rollouts and students. Each finished cell writes
`cells/<id>/report.json`; a killed study re-run with the same command skips finished cells.
`--executor local` (the default) runs the cells on this machine, `--jobs N` of them at once, each
in a fresh process; `--executor ray` runs each as a task on a Ray cluster (`--address`), with the
stage cache at `--cache` on storage every node sees (a stage that several cells need is computed
once either way; see `audit.study.executors`).
The study writes `study.json` (one summary row per cell and environment, plus the false-alarm
and detection counts, and for a grid with a `canary_fraction` axis the detection rate per
planted fraction and the detection floor: `audit.study.canary`), a self-contained `study.html`
and the same tables as `study.md`.
`--finished-only` writes them for the cells finished so far and runs nothing.
Exit codes: 0 done, 2 bad usage or input, 3 internal error (traceback in OUT/error.log), 130 / 143
after Ctrl-C / SIGTERM (the running cells are terminated; re-run to resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from audit.config import field_names
from audit.profiles import build_config, read_toml
from audit.report.exit_codes import ExitCode, failure_exit, raise_on_sigterm
from audit.study.canary import AXIS as CANARY_AXIS
from audit.study.canary import canary_section
from audit.study.cells import Cell, finished_cell
from audit.study.executors import Executor, ExecutorOptions, executor_names, get_executor
from audit.study.executors.local import LocalExecutor
from audit.study.table import CellRow, summarize, totals
from trajectories.jsonl import InputError


def load_grid(path: Path) -> list[Cell]:
    """The cells of a grid file; `InputError` naming the file for anything malformed."""
    grid = read_toml(path, "grid")
    unknown_tables = sorted(set(grid) - {"audit", "axes", "exclude", "variants"})
    if unknown_tables:
        raise InputError(
            f"{path}: unknown tables {', '.join(unknown_tables)}; use audit, axes, exclude, "
            "variants"
        )
    shared, axes = grid.get("audit", {}), grid.get("axes", {})
    variants = _variants(path, grid.get("variants", {}), {*shared, *axes})
    unknown = sorted((set(shared) | set(axes)) - set(field_names()))
    if unknown:
        raise InputError(f"{path}: unknown keys {', '.join(unknown)}")
    overlap = sorted(set(shared) & set(axes))
    if overlap:
        raise InputError(f"{path}: {', '.join(overlap)} both in [audit] and [axes]")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"{path}: axis {key!r} must be a non-empty list")
    labels = {name: list(table) for name, table in variants.items()}
    excluded = _exclusions(path, grid.get("exclude", []), {**labels, **axes})
    profile = shared.get("profile", "default")
    cells = []
    for combination in itertools.product(*labels.values(), *axes.values()):
        values = dict(zip([*labels, *axes], combination, strict=True))
        if any(rule.items() <= values.items() for rule in excluded):
            continue
        fixed = {k: v for name in variants for k, v in variants[name][values[name]].items()}
        fields = {k: v for k, v in values.items() if k not in variants}
        try:
            config = build_config(profile, {**shared, **fixed, **fields}, {})
        except InputError as err:
            raise InputError(f"{path}: cell {values}: {err}") from None
        cells.append(Cell(values, config))
    return cells


def _variants(path: Path, tables: Any, taken: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The `[variants.NAME]` tables, checked: NAME is no field, each label a non-empty set of
    tables of fields that neither `[audit]` nor `[axes]` sets."""
    fields = set(field_names())
    if not isinstance(tables, dict):
        raise InputError(f"{path}: variants must be tables ([variants.NAME])")
    for name, table in tables.items():
        if name in fields or name in taken:
            raise InputError(f"{path}: variants.{name}: the name of a field or an axis")
        if not isinstance(table, dict) or not table:
            raise InputError(f"{path}: variants.{name} must be a non-empty table of labels")
        for label, values in table.items():
            if not isinstance(values, dict):
                raise InputError(f"{path}: variants.{name}.{label} must be a table of fields")
            unknown = sorted(set(values) - fields)
            if unknown:
                raise InputError(f"{path}: variants.{name}.{label}: unknown keys {unknown}")
            clash = sorted(set(values) & taken)
            if clash:
                raise InputError(f"{path}: variants.{name}.{label}: {clash} set elsewhere too")
    return tables


def _exclusions(path: Path, rules: Any, axes: dict[str, list]) -> list[dict[str, Any]]:
    """The `[[exclude]]` tables, each checked to name axes and values of the grid."""
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise InputError(f"{path}: exclude must be an array of tables ([[exclude]])")
    for rule in rules:
        if not rule:
            raise InputError(f"{path}: an [[exclude]] table is empty")
        for key, value in rule.items():
            if key not in axes or value not in axes[key]:
                raise InputError(f"{path}: exclude {key} = {value!r} is not a value of an axis")
    return rules


def render_study(study: dict[str, Any], out: Path) -> None:
    """The self-contained study.html (no scripts, inline styles) and the study.md table."""
    env = Environment(
        loader=PackageLoader("audit.report", "templates"),
        autoescape=select_autoescape(["html.jinja"]),
    )
    for name in ("study.html", "study.md"):
        text = env.get_template(f"{name}.jinja").render(study=study)
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


def run_study(
    grid: Path,
    out: Path,
    quiet: bool,
    finished_only: bool = False,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run every unfinished cell of `grid` on `executor` (default: local, one at a time) and
    write study.json / .html / .md from the finished cells' reports, in grid order; with
    `finished_only`, run nothing and list the unfinished cells as pending. The grid is read
    (and a bad one refused) before TRL loads."""
    cells = load_grid(grid)
    from rich.progress import Progress

    from audit.training.trl_setup import disable_progress_bars

    if quiet:
        disable_progress_bars()
    out.mkdir(parents=True, exist_ok=True)
    if not finished_only:
        todo = [cell for cell in cells if finished_cell(cell, out) is None]
        runner = executor or LocalExecutor(ExecutorOptions())
        with Progress(disable=quiet, transient=False) as progress:
            task = progress.add_task(
                "study cells", total=len(cells), completed=len(cells) - len(todo)
            )
            runner.run(todo, out, quiet, lambda: progress.advance(task))
    rows: list[CellRow] = []
    pending: list[str] = []
    for cell in cells:
        result = finished_cell(cell, out)
        if result is None:
            pending.append(cell.id)
        else:
            rows += summarize(cell.id, cell.values, *result)
    study = {
        "grid": str(grid),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "shared": {k: v for k, v in cells[0].config.to_dict().items() if k not in cells[0].values},
        "axes": list(cells[0].values),
        "totals": totals(rows),
        "pending": pending,
        "rows": [asdict(row) for row in rows],
    }
    if CANARY_AXIS in study["axes"]:
        study["canary"] = canary_section(rows)
    tmp = out / "study.json.tmp"
    tmp.write_text(json.dumps(study, indent=2))
    tmp.replace(out / "study.json")
    render_study(study, out)
    return study


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audit.study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--grid", required=True, type=Path, help="grid TOML file")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="tabulate the finished cells, run none (the others are listed as pending)",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=executor_names(),
        help="where cells run: 'local' (this machine) or 'ray' (tasks on a Ray cluster)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="cells run at once (local: own processes, default 1; ray: tasks in flight, "
        "default what the cluster holds)",
    )
    parser.add_argument(
        "--cpus-per-cell",
        type=int,
        help="torch threads per cell (local --jobs: default cores/jobs; ray: CPUs a cell "
        "task declares, default 1)",
    )
    parser.add_argument(
        "--gpus-per-cell",
        type=float,
        help="ray: GPUs a cell task declares (default 1 where the cluster has GPUs, else 0)",
    )
    parser.add_argument(
        "--address",
        help="ray: the cluster to connect to ('auto', HOST:PORT, ray://...; default "
        "RAY_ADDRESS, else start a local cluster)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="cache directory of every cell (what DISTILL_AUDIT_CACHE sets); with ray, "
        "storage that every node sees",
    )
    return parser


def _options(args: argparse.Namespace) -> ExecutorOptions:
    """The executor options, range-checked; `InputError` for a bad value."""
    for flag, value in (("--jobs", args.jobs), ("--cpus-per-cell", args.cpus_per_cell)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be at least 1, not {value}")
    if args.gpus_per_cell is not None and args.gpus_per_cell < 0:
        raise InputError(f"--gpus-per-cell must be at least 0, not {args.gpus_per_cell:g}")
    cache = args.cache.resolve() if args.cache else None
    return ExecutorOptions(args.jobs, args.cpus_per_cell, args.gpus_per_cell, args.address, cache)


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return ExitCode.BAD_INPUT if exit_.code else 0
    try:
        executor = get_executor(args.executor, _options(args))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.cache:
        os.environ["DISTILL_AUDIT_CACHE"] = str(args.cache.resolve())
    import torch

    from audit.run import torch_threads

    raise_on_sigterm()
    try:
        torch.set_num_threads(torch_threads(0))
        study = run_study(args.grid, args.out, args.quiet, args.finished_only, executor)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - one line and an exit code
        return failure_exit(err, args.out / "error.log")
    print(f"{study['totals']} ({args.out / 'study.html'})", file=sys.stderr)
    return 0
