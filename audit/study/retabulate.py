"""`python -m audit.study.retabulate DIR...`: rewrite committed studies' tables from their cells.

    python -m audit.study.retabulate docs/study/default docs/study/false-alarm-3seeds \
        docs/study/transfer docs/study/transfer-small

For each study directory, the rows of study.json (and study.html, study.md) are recomputed
from the reports under DIR/cells/ by this version's `audit.study.table.summarize`, which
adds the model-level behaviour test (computed from each cell's per-seed rates where the
report predates it), and nothing is run. A cell keeps its directory name and axis values
from the existing study.json: the grid's cell ids hash the whole config, so a study recorded
before a config field was added no longer matches its grid (`--finished-only` would list
every such cell as pending). Exit codes: 0 done, 2 bad input, 3 internal error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audit.report.exit_codes import failure_exit
from audit.report.schema import load_report
from audit.study.grid import render_study
from audit.study.table import CellRow, summarize, totals
from trajectories.jsonl import InputError


def retabulate(directory: Path) -> dict[str, Any]:
    """The study.json of `directory` with its rows and totals recomputed from its cells'
    report.json and seconds.json (the cells of its existing rows, in their order); written
    back with study.html and study.md."""
    path = directory / "study.json"
    if not path.is_file():
        raise InputError(f"{path}: no such study")
    study = json.loads(path.read_text())
    values = {row["cell"]: row["values"] for row in study["rows"]}
    rows: list[CellRow] = []
    for cell, axis_values in values.items():
        cell_dir = directory / "cells" / cell
        if not (cell_dir / "report.json").is_file():
            raise InputError(f"{cell_dir}: no report.json for a row of {path}")
        seconds = json.loads((cell_dir / "seconds.json").read_text())["seconds"]
        rows += summarize(cell, axis_values, load_report(cell_dir / "report.json"), seconds)
    study.update(
        retabulated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        totals=totals(rows),
        rows=[asdict(row) for row in rows],
    )
    tmp = directory / "study.json.tmp"
    tmp.write_text(json.dumps(study, indent=2))
    tmp.replace(path)
    render_study(study, directory)
    return study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.study.retabulate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("studies", nargs="+", type=Path, help="study output directories")
    args = parser.parse_args(argv)
    for directory in args.studies:
        try:
            study = retabulate(directory)
        except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - one line and an exit code
            return failure_exit(err, directory / "error.log")
        print(f"{directory}: {len(study['rows'])} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
