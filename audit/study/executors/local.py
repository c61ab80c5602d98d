"""`--executor local`: cells on this machine, one after another or `--jobs N` at a time.

With `--jobs` > 1 each cell runs in a fresh spawned process with `--cpus-per-cell` torch threads
(default: an equal share of the usable cores) and no progress bars; cells that need the same stage
wait on its lock (audit.pipeline.stages), so a stage is computed once. An interrupt terminates the
running cell processes, whose own SIGTERM handler closes their sandboxes; their finished stages
stay cached.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit.cores import usable_cores
from audit.report.exit_codes import TERMINATED, Terminated, raise_on_sigterm
from audit.study.cells import Cell, attempt_cell, raise_cell_error, record_cell, run_cell
from audit.study.executors.base import Executor, executor


def _cell_process(cell: Cell, out: Path, threads: int) -> None:
    """Body of a `--jobs` child: run one cell quietly, record it and exit with its code
    (143 after SIGTERM)."""
    import torch

    from audit.training.trl_setup import disable_progress_bars

    raise_on_sigterm()
    torch.set_num_threads(threads)
    disable_progress_bars()
    try:
        outcome = attempt_cell(cell)
    except Terminated:
        sys.exit(TERMINATED)
    record_cell(cell, out, outcome)
    sys.exit(outcome.code)


@executor("local")
class LocalExecutor(Executor):
    """This machine: in this process (`jobs` 1, the default) or `jobs` spawned processes."""

    accepts = frozenset({"jobs", "cpus_per_cell"})

    def run(self, cells: list[Cell], out: Path, quiet: bool, advance: Callable[[], None]) -> None:
        jobs = self.options.jobs or 1
        if jobs == 1:
            if self.options.cpus_per_cell:
                import torch

                torch.set_num_threads(self.options.cpus_per_cell)
            for cell in cells:
                run_cell(cell, out, quiet)
                advance()
            return
        width = min(jobs, len(cells)) or 1
        threads = self.options.cpus_per_cell or max(1, usable_cores() // width)
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
            raise_cell_error(failure, out)
