"""Stages computed in parallel: a pool of spawned processes, each with its share of the torch
threads, that run independent parts of one audit through the shared stage cache.

A part computes cached stages and returns the keys of those it computed (not found cached);
the audit then reads every stage from the cache in its usual order, so its results do not
depend on the number of processes. Parts that need the same stage wait on its file lock
(`audit.pipeline.stages`). Ctrl-C or SIGTERM of the audit terminates the workers: a part
that is running raises `Terminated`, which closes its sandboxes, and an idle worker exits.
Finished stages stay cached, so a re-run resumes. A part's failure stops the other parts and
is raised again here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from audit.config import AuditConfig
from audit.report.exit_codes import TERMINATED, Terminated
from trajectories.device import resolve_device

_running = False
"""Whether this worker is running a part (SIGTERM then raises `Terminated`)."""


def parallel_jobs(config: AuditConfig, threads: int) -> int:
    """The processes an audit computes its stages with: `config.jobs` if set, else one per
    torch thread (`threads`) on the CPU and one on a GPU."""
    if config.jobs:
        return config.jobs
    return 1 if resolve_device(config.device).type == "cuda" else max(1, threads)


def _on_sigterm(signum: int, frame: object) -> None:
    if _running:
        raise Terminated
    os._exit(TERMINATED)


def _start_worker(threads: int) -> None:
    """A worker's start: its torch threads, no progress bars, Ctrl-C left to the audit and
    SIGTERM handled by `_on_sigterm`."""
    import torch

    from audit.training.trl_setup import disable_progress_bars

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    torch.set_num_threads(threads)
    disable_progress_bars()


def _run_part(task: tuple[Callable[[Any], list[str]], Any]) -> list[str]:
    """One part in a worker; after `Terminated` (its sandboxes closed) the worker exits 143."""
    global _running
    part, item = task
    _running = True
    try:
        return part(item)
    except Terminated:
        sys.exit(TERMINATED)
    finally:
        _running = False


def run_in_workers(
    part: Callable[[Any], list[str]],
    items: Sequence[Any],
    jobs: int,
    threads: int,
    done: Callable[[], None],
) -> set[str]:
    """`part(item)` for every item in `jobs` spawned processes of `threads` torch threads each,
    calling `done()` as each finishes; the union of the stage keys they computed."""
    context = multiprocessing.get_context("spawn")
    computed: set[str] = set()
    pool = context.Pool(min(jobs, len(items)), initializer=_start_worker, initargs=(threads,))
    try:
        for keys in pool.imap_unordered(_run_part, [(part, item) for item in items]):
            computed.update(keys)
            done()
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return computed
