"""`--executor ray`: each cell is a Ray task on a cluster (`--address`, else a local one).

A cell task declares `--cpus-per-cell` CPUs (default 1; its torch threads) and `--gpus-per-cell`
GPUs (default 1 where the cluster has GPUs, else 0). Every task reads and writes the stage cache
at one path, `--cache` (default: the driver's `DISTILL_AUDIT_CACHE` or ~/.cache/distill-audit),
which must be storage every node sees; stages that several cells need are computed once under
the cache's file locks. A task returns its report to the driver, which records it under `--out`,
so the output directory need exist only where the study runs. At most `--jobs` tasks (default:
as many as the cluster's resources hold at the start) are in flight, so the first failed cell
stops the study as locally: no further task is submitted and the running ones finish. An
interrupt (Ctrl-C, or SIGTERM: ray.init replaces the SIGTERM handler, which is set again here)
cancels the running tasks (a KeyboardInterrupt in each, which closes its sandboxes),
waits for them, and kills those still running after a grace period. Tasks are not retried.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit.report.exit_codes import ExitCode, Terminated
from audit.study.cells import Cell, CellOutcome, attempt_cell, raise_cell_error, record_cell
from audit.study.executors.base import Executor, ExecutorOptions, executor
from trajectories.jsonl import InputError

INSTALL_HINT = "--executor ray needs Ray: pip install 'distill-audit[ray]'"

CANCEL_GRACE_SECONDS = 60.0
"""How long an interrupted study waits for its cancelled tasks before killing their workers."""


def cell_task(cell: Cell, cache: str, threads: int) -> CellOutcome:
    """Body of a cell's Ray task: run it quietly against the shared cache and return its
    outcome (an interrupt from `ray.cancel` propagates)."""
    import torch

    from audit.training.trl_setup import disable_progress_bars

    os.environ["DISTILL_AUDIT_CACHE"] = cache
    torch.set_num_threads(threads)
    disable_progress_bars()
    return attempt_cell(cell)


@executor("ray")
class RayExecutor(Executor):
    """Ray tasks, one per cell, on the cluster at `address` (default: start a local one)."""

    accepts = frozenset({"jobs", "cpus_per_cell", "gpus_per_cell", "address"})

    @classmethod
    def check(cls, options: ExecutorOptions) -> None:
        super().check(options)
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError(INSTALL_HINT) from None

    def run(self, cells: list[Cell], out: Path, quiet: bool, advance: Callable[[], None]) -> None:
        import ray

        from audit.pipeline.stages import stage_cache_root

        if not cells:
            return
        if self.options.address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(
                address=self.options.address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except SystemExit as exit_:  # ray.init's own SIGTERM handler, while it starts
            if exit_.code == signal.SIGTERM:
                raise Terminated from None
            raise
        terms: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _: _terminated(terms, signum))
        try:
            cache = str(self.options.cache or stage_cache_root().parent)
            self._run(ray, cells, out, advance, cache)
        except BaseException as err:
            if terms and not isinstance(err, Terminated):
                raise Terminated from None
            raise
        finally:
            ray.shutdown()

    def _resources(self, ray: Any) -> tuple[int, float, int]:
        """CPUs and GPUs per task, and how many tasks are in flight at most."""
        total = ray.cluster_resources()
        cpus = self.options.cpus_per_cell or 1
        gpus = self.options.gpus_per_cell
        if gpus is None:
            gpus = 1.0 if total.get("GPU", 0) >= 1 else 0.0
        fits = int(total.get("CPU", 0) // cpus)
        if gpus:
            fits = min(fits, int(total.get("GPU", 0) // gpus))
        if fits < 1:
            raise InputError(
                f"the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} "
                f"GPUs; a cell needs {cpus} and {gpus:g}"
            )
        return cpus, gpus, self.options.jobs or fits

    def _run(
        self, ray: Any, cells: list[Cell], out: Path, advance: Callable[[], None], cache: str
    ) -> None:
        cpus, gpus, width = self._resources(ray)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(cell_task)
        queue = list(reversed(cells))
        running: dict[Any, Cell] = {}
        failure: Cell | None = None
        try:
            while queue or running:
                while queue and failure is None and len(running) < width:
                    cell = queue.pop()
                    ref = task.options(name=f"cell {cell.id}").remote(cell, cache, cpus)
                    running[ref] = cell
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    cell = running.pop(ref)
                    outcome = _outcome(ray, ref)
                    record_cell(cell, out, outcome)
                    if outcome.code == ExitCode.PASSED:
                        advance()
                    elif failure is None:
                        failure = cell
        except BaseException:
            _cancel(ray, list(running))
            raise
        if failure is not None:
            raise_cell_error(failure, out)


def _terminated(terms: list[int], signum: int) -> None:
    """SIGTERM: noted in `terms` and raised as `Terminated`. Ray's waits turn any exception a
    signal handler raises into a plain KeyboardInterrupt, so the note tells the two apart."""
    terms.append(signum)
    raise Terminated


def _outcome(ray: Any, ref: Any) -> CellOutcome:
    """The task's outcome; a task that died (worker killed, node lost) is an internal error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError:
        return CellOutcome(ExitCode.INTERNAL_ERROR, error=traceback.format_exc())


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Interrupt the running tasks, wait for them, and kill the workers of those that linger."""
    if not refs:
        return
    for ref in refs:
        ray.cancel(ref)
    _, lingering = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)
    for ref in lingering:
        ray.cancel(ref, force=True)
    ray.wait(lingering, num_returns=len(lingering), timeout=CANCEL_GRACE_SECONDS)
