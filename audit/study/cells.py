"""A study's cells: one audit each, its identity, how it runs and where its result is kept.

A finished cell has `cells/<id>/report.json` and `seconds.json` under the study's output
directory; a failed one has `cells/<id>/error.log` (the message for bad input, else the
traceback). The executors (`audit.study.executors`) decide where cells run; this module runs one.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.config import AuditConfig
from audit.report.exit_codes import ExitCode, ReportedError
from trajectories.jsonl import InputError

if TYPE_CHECKING:
    from audit.report.schema import Report


@dataclass(frozen=True)
class Cell:
    """One audit of the grid: its axis values and its full config."""

    values: dict[str, Any]
    config: AuditConfig

    @property
    def id(self) -> str:
        """A readable, filesystem-safe name plus a short hash of the config's non-default
        fields, so that a field added later with a default keeps the finished cells' ids."""
        label = "_".join(f"{k}-{_slug(v)}" for k, v in self.values.items()) or "cell"
        defaults = AuditConfig().to_dict()
        changed = {k: v for k, v in self.config.to_dict().items() if v != defaults[k]}
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode())
        return f"{label[:120]}_{digest.hexdigest()[:8]}"


def _slug(value: Any) -> str:
    text = str(value).removeprefix("embedded:")
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


@dataclass(frozen=True)
class CellOutcome:
    """What running a cell gave: exit code 0 with the report and seconds, or 2 (bad input) /
    3 (internal error) with the text for error.log."""

    code: int
    report: Report | None = None
    seconds: float | None = None
    error: str = ""


def finished_cell(cell: Cell, out: Path) -> tuple[Report, float] | None:
    """The report and seconds of a finished cell, or None."""
    from audit.report.schema import load_report

    directory = out / "cells" / cell.id
    done, timing = directory / "report.json", directory / "seconds.json"
    if done.is_file() and timing.is_file():
        return load_report(done), json.loads(timing.read_text())["seconds"]
    return None


def audit_cell(cell: Cell, quiet: bool) -> tuple[Report, float]:
    """Run the cell's audit in this process through the stage cache; its report and seconds."""
    from audit.pipeline.modes import make_audit
    from audit.pipeline.stages import StageRunner

    started = time.monotonic()
    report = make_audit(cell.config, StageRunner(), lambda _: None, progress=not quiet).run()
    return report, round(time.monotonic() - started, 1)


def attempt_cell(cell: Cell) -> CellOutcome:
    """Run the cell quietly; a failure is returned as an outcome, an interrupt propagates."""
    from audit.models.loader import ModelInputError

    try:
        report, seconds = audit_cell(cell, quiet=True)
    except (InputError, ModelInputError) as err:
        return CellOutcome(ExitCode.BAD_INPUT, error=str(err))
    except Exception:  # noqa: BLE001 - reported through error.log
        return CellOutcome(ExitCode.INTERNAL_ERROR, error=traceback.format_exc())
    return CellOutcome(ExitCode.PASSED, report, seconds)


def record_cell(cell: Cell, out: Path, outcome: CellOutcome) -> None:
    """Write the outcome under `out/cells/<id>/`: report.json and seconds.json, or error.log."""
    from audit.report.schema import write_report

    directory = out / "cells" / cell.id
    directory.mkdir(parents=True, exist_ok=True)
    if outcome.code != ExitCode.PASSED or outcome.report is None:
        (directory / "error.log").write_text(outcome.error)
        return
    write_report(outcome.report, directory / "report.json")
    (directory / "seconds.json").write_text(json.dumps({"seconds": outcome.seconds}))


def run_cell(cell: Cell, out: Path, quiet: bool) -> None:
    """Run the cell in this process and record it (a finished cell is skipped); its errors
    are raised."""
    if finished_cell(cell, out) is None:
        record_cell(cell, out, CellOutcome(ExitCode.PASSED, *audit_cell(cell, quiet)))


class CellError(ReportedError):
    """A cell's audit failed in another process; the message names its traceback file."""


def raise_cell_error(cell: Cell, out: Path) -> None:
    """Raise the recorded failure of `cell`: `InputError` for bad input, else `CellError`."""
    error = out / "cells" / cell.id / "error.log"
    text = error.read_text().strip() if error.is_file() else ""
    if text and "Traceback" not in text:
        raise InputError(f"cell {cell.id}: {text}")
    last = text.splitlines()[-1] if text else "no error was written (killed?)"
    raise CellError(f"cell {cell.id} failed: {last} (traceback: {error})")
