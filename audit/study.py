"""`python -m audit.study`: run a grid of audits and tabulate where the bias passes the filter.

    python -m audit.study --grid studies/false-alarm.toml --out study-out/false-alarm

A grid file has an `[audit]` table (settings every cell shares: any `AuditConfig` field) and an
`[axes]` table (field -> list of values); there is one cell per combination of the axes' values.
Each cell is a full audit (`audit.orchestrator.Audit`) whose stages go through the shared stage
cache, so cells reuse one another's teachers, rollouts and students. Each finished cell writes
`cells/<id>/report.json`; a killed study re-run with the same command skips finished cells.
`--jobs N` runs N cells at once, each in its own process (stages they share are computed once).
The study writes `study.json` (one summary row per cell and environment, plus the false-alarm
and detection counts), a self-contained `study.html` and the same table as `study.md`.
`--finished-only` writes them for the cells finished so far and runs nothing.
Exit codes: 0 done, 2 bad usage or input, 3 internal error (traceback in OUT/error.log).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from audit.config import AuditConfig, build_config, field_names, read_toml
from audit.report.exit_codes import ExitCode
from audit.report.schema import Report
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
    p_adjusted: float
    propensity_shift: float | None
    propensity_interval: tuple[float, float] | None
    latent_gap: float | None
    latent_interval: tuple[float, float] | None
    dataset_auroc: float | None
    dataset_interval: tuple[float, float] | None
    behaviour_failed: bool
    verdict: str
    exit_code: int
    seconds: float


def _slug(value: Any) -> str:
    text = str(value).removeprefix("embedded:")
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


def load_grid(path: Path) -> list[Cell]:
    """The cells of a grid file; `InputError` naming the file for anything malformed."""
    grid = read_toml(path, "grid")
    unknown_tables = sorted(set(grid) - {"audit", "axes"})
    if unknown_tables:
        raise InputError(f"{path}: unknown tables {', '.join(unknown_tables)}; use audit, axes")
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
    profile = shared.get("profile", "default")
    cells = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination, strict=True))
        try:
            config = build_config(profile, {**shared, **values}, {})
        except InputError as err:
            raise InputError(f"{path}: cell {values}: {err}") from None
        cells.append(Cell(values, config))
    return cells


def _bounds(interval: Any) -> tuple[float, float] | None:
    return None if interval is None else (interval.low, interval.high)


def summarize(cell: str, values: dict[str, Any], report: Report, seconds: float) -> list[CellRow]:
    """One row per environment of a finished cell's report."""
    rows = []
    checks = {check.name: check for check in report.gate.checks}
    for behaviour in report.behaviour:
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
        behaviour_check = checks.get(f"behaviour/{env}/{behaviour.metric}")
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
                propensity_shift=None if prop is None else prop.shift.estimate,
                propensity_interval=None if prop is None else _bounds(prop.shift),
                latent_gap=None if lat is None or lat.gap is None else lat.gap.estimate,
                latent_interval=None if lat is None else _bounds(lat.gap),
                dataset_auroc=None if data is None else data.auroc.estimate,
                dataset_interval=None if data is None else _bounds(data.auroc),
                behaviour_failed=behaviour_check is not None and not behaviour_check.passed,
                verdict=report.gate.verdict,
                exit_code=int(report.exit_code),
                seconds=seconds,
            )
        )
    return rows


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
    from audit.orchestrator import Audit
    from audit.report.schema import write_report
    from audit.stages import StageRunner

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


def _start_worker(threads: int) -> None:
    import torch

    from audit.training import disable_progress_bars

    torch.set_num_threads(threads)
    disable_progress_bars()


def run_cells(cells: list[Cell], out: Path, quiet: bool, jobs: int, advance: Any) -> None:
    """Run `cells`, `jobs` at a time; `advance()` after each one.

    With `jobs` > 1 each cell runs in its own spawned process with `cores // jobs` torch
    threads and no progress bars; cells that need the same stage wait on its lock
    (audit.stages), so a stage is computed once.
    """
    if jobs == 1:
        for cell in cells:
            run_cell(cell, out, quiet)
            advance()
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, context, _start_worker, (threads,)) as pool:
        futures = [pool.submit(run_cell, cell, out, True) for cell in cells]
        try:
            for future in as_completed(futures):
                future.result()
                advance()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


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

    from audit.training import disable_progress_bars

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
    try:
        study = run_study(args.grid, args.out, args.quiet, args.finished_only, args.jobs)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - any failure is exit 3 with its traceback
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "error.log").write_text(traceback.format_exc())
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"internal error: {first} (traceback: {args.out / 'error.log'})", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
    print(f"{study['totals']} ({args.out / 'study.html'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
