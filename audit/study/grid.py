"""`python -m audit.study`: run a grid of audits and tabulate where the bias passes the filter.

    python -m audit.study --grid studies/false-alarm.toml --out study-out/false-alarm

A grid file has an `[audit]` table (settings every cell shares: any `AuditConfig` field) and an
`[axes]` table (field -> list of values); there is one cell per combination of the axes' values,
less those matching an `[[exclude]]` table (axis -> value; a cell matches when it has all of them).
Each cell is a full audit (`audit.pipeline.orchestrator.Audit`) whose stages go through the shared
stage cache, so cells reuse one another's teachers, rollouts and students. Each finished cell writes
`cells/<id>/report.json`; a killed study re-run with the same command skips finished cells.
`--jobs N` runs up to N cells at once, each in a fresh process (a stage that several of them need
is computed once).
The study writes `study.json` (one summary row per cell and environment, plus the false-alarm
and detection counts), a self-contained `study.html` and the same table as `study.md`.
`--finished-only` writes them for the cells finished so far and runs nothing.
Exit codes: 0 done, 2 bad usage or input, 3 internal error (traceback in OUT/error.log), 130 / 143
after Ctrl-C / SIGTERM (the running cells are terminated; re-run to resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from audit.config import AuditConfig, build_config, field_names, read_toml
from audit.report.exit_codes import (
    TERMINATED,
    ExitCode,
    ReportedError,
    Terminated,
    failure_exit,
    raise_on_sigterm,
)
from audit.report.schema import Report
from audit.study.table import CellRow, summarize, totals
from trajectories.jsonl import InputError


@dataclass(frozen=True)
class Cell:
    """One audit of the grid: its axis values and its full config."""

    values: dict[str, Any]
    config: AuditConfig

    @property
    def id(self) -> str:
        """A readable, filesystem-safe name plus a short hash of the config."""
        label = "_".join(f"{k}-{_slug(v)}" for k, v in self.values.items()) or "cell"
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        return f"{label[:120]}_{digest.hexdigest()[:8]}"


def _slug(value: Any) -> str:
    text = str(value).removeprefix("embedded:")
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


def load_grid(path: Path) -> list[Cell]:
    """The cells of a grid file; `InputError` naming the file for anything malformed."""
    grid = read_toml(path, "grid")
    unknown_tables = sorted(set(grid) - {"audit", "axes", "exclude"})
    if unknown_tables:
        raise InputError(
            f"{path}: unknown tables {', '.join(unknown_tables)}; use audit, axes, exclude"
        )
    shared, axes = grid.get("audit", {}), grid.get("axes", {})
    unknown = sorted((set(shared) | set(axes)) - set(field_names()))
    if unknown:
        raise InputError(f"{path}: unknown keys {', '.join(unknown)}")
    overlap = sorted(set(shared) & set(axes))
    if overlap:
        raise InputError(f"{path}: {', '.join(overlap)} both in [audit] and [axes]")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"{path}: axis {key!r} must be a non-empty list")
    excluded = _exclusions(path, grid.get("exclude", []), axes)
    profile = shared.get("profile", "default")
    cells = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination, strict=True))
        if any(rule.items() <= values.items() for rule in excluded):
            continue
        try:
            config = build_config(profile, {**shared, **values}, {})
        except InputError as err:
            raise InputError(f"{path}: cell {values}: {err}") from None
        cells.append(Cell(values, config))
    return cells


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


def finished_cell(cell: Cell, out: Path) -> tuple[Report, float] | None:
    """The report and seconds of a finished cell, or None."""
    from audit.report.schema import load_report

    directory = out / "cells" / cell.id
    done, timing = directory / "report.json", directory / "seconds.json"
    if done.is_file() and timing.is_file():
        return load_report(done), json.loads(timing.read_text())["seconds"]
    return None


def run_cell(cell: Cell, out: Path, quiet: bool) -> None:
    """Run the cell's audit and write its report and seconds (a finished cell is skipped)."""
    from audit.pipeline.orchestrator import Audit
    from audit.pipeline.stages import StageRunner
    from audit.report.schema import write_report

    if finished_cell(cell, out) is not None:
        return
    directory = out / "cells" / cell.id
    started = time.monotonic()
    audit = Audit(cell.config, StageRunner(), lambda _: None, progress=not quiet)
    report = audit.run()
    seconds = round(time.monotonic() - started, 1)
    directory.mkdir(parents=True, exist_ok=True)
    write_report(report, directory / "report.json")
    (directory / "seconds.json").write_text(json.dumps({"seconds": seconds}))


def _cell_process(cell: Cell, out: Path, threads: int) -> None:
    """Body of a `--jobs` child: run one cell quietly; on failure write its error and exit
    2 (bad input) or 3 (internal error)."""
    import torch

    from audit.training.trl_setup import disable_progress_bars

    raise_on_sigterm()
    torch.set_num_threads(threads)
    disable_progress_bars()
    from audit.models.loader import ModelInputError

    error = out / "cells" / cell.id / "error.log"
    try:
        run_cell(cell, out, True)
    except (InputError, ModelInputError) as err:
        error.parent.mkdir(parents=True, exist_ok=True)
        error.write_text(str(err))
        sys.exit(ExitCode.BAD_INPUT)
    except Terminated:
        sys.exit(TERMINATED)
    except Exception:  # noqa: BLE001 - reported to the parent through error.log
        error.parent.mkdir(parents=True, exist_ok=True)
        error.write_text(traceback.format_exc())
        sys.exit(ExitCode.INTERNAL_ERROR)


def run_cells(cells: list[Cell], out: Path, quiet: bool, jobs: int, advance: Any) -> None:
    """Run `cells`, at most `jobs` at a time; `advance()` after each one.

    With `jobs` > 1 each cell runs in a fresh spawned process with an equal share of the
    usable cores as torch threads and no progress bars; cells that need the same stage wait
    on its lock (audit.pipeline.stages), so a stage is computed once. The first failed cell
    stops the study: no further cell starts, the running ones finish, and its error is raised
    (`InputError` for bad input, else `CellError` naming its traceback file). An interrupt
    (Ctrl-C, or SIGTERM after `raise_on_sigterm`) terminates the running cells, whose own
    SIGTERM handler closes their sandboxes; their finished stages stay cached.
    """
    if jobs == 1:
        for cell in cells:
            run_cell(cell, out, quiet)
            advance()
        return
    width = min(jobs, len(cells)) or 1
    threads = max(1, len(os.sched_getaffinity(0)) // width)
    context = multiprocessing.get_context("spawn")
    queue = list(reversed(cells))
    running: dict[Any, tuple[Any, Cell]] = {}
    failure: Cell | None = None
    try:
        while queue or running:
            while queue and failure is None and len(running) < width:
                cell = queue.pop()
                process = context.Process(target=_cell_process, args=(cell, out, threads))
                process.start()
                running[process.sentinel] = (process, cell)
            if not running:
                break
            for sentinel in multiprocessing.connection.wait(list(running)):
                process, cell = running.pop(sentinel)
                process.join()
                if process.exitcode == 0:
                    advance()
                elif failure is None:
                    failure = cell
    except BaseException:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()
        raise
    if failure is not None:
        _raise_cell_error(failure, out)


class CellError(ReportedError):
    """A cell's audit failed in its `--jobs` process; the message names its traceback file."""


def _raise_cell_error(cell: Cell, out: Path) -> None:
    error = out / "cells" / cell.id / "error.log"
    text = error.read_text().strip() if error.is_file() else ""
    if text and "Traceback" not in text:
        raise InputError(f"cell {cell.id}: {text}")
    last = text.splitlines()[-1] if text else "no error was written (killed?)"
    raise CellError(f"cell {cell.id} failed: {last} (traceback: {error})")


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
    grid: Path, out: Path, quiet: bool, finished_only: bool = False, jobs: int = 1
) -> dict[str, Any]:
    """Run every unfinished cell of `grid` (`jobs` at a time) and write study.json / .html /
    .md from the finished cells' reports, in grid order; with `finished_only`, run nothing and
    list the unfinished cells as pending."""
    from rich.progress import Progress

    from audit.training.trl_setup import disable_progress_bars

    cells = load_grid(grid)
    if quiet:
        disable_progress_bars()
    out.mkdir(parents=True, exist_ok=True)
    if not finished_only:
        todo = [cell for cell in cells if finished_cell(cell, out) is None]
        with Progress(disable=quiet, transient=False) as progress:
            task = progress.add_task(
                "study cells", total=len(cells), completed=len(cells) - len(todo)
            )
            run_cells(todo, out, quiet, jobs, lambda: progress.advance(task))
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
    tmp = out / "study.json.tmp"
    tmp.write_text(json.dumps(study, indent=2))
    tmp.replace(out / "study.json")
    render_study(study, out)
    return study


def main(argv: list[str] | None = None) -> int:
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
        "--jobs",
        type=int,
        default=1,
        help="cells run at once, each in its own process with cores/jobs torch threads",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return ExitCode.BAD_INPUT if exit_.code else 0
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    import torch

    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    raise_on_sigterm()
    try:
        study = run_study(args.grid, args.out, args.quiet, args.finished_only, args.jobs)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - one line and an exit code
        return failure_exit(err, args.out / "error.log")
    print(f"{study['totals']} ({args.out / 'study.html'})", file=sys.stderr)
    return 0
