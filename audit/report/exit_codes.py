"""The exit codes of the commands (`audit.run`, `audit.study`, `audit.study.results`), in one
place, and the one-line report of a failure."""

from __future__ import annotations

import signal
import sys
import traceback
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """0 gate passed, 1 gate failed (or no power), 2 bad usage or input, 3 internal error,
    4 not induced: the biased preset teacher is not measurably biased on this base, so the
    audit stopped before distilling (a result about the base, with a report)."""

    PASSED = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    INTERNAL_ERROR = 3
    NOT_INDUCED = 4


INTERRUPTED = 130
"""Exit code after Ctrl-C (the shell's 128 + SIGINT)."""

TERMINATED = 143
"""Exit code after SIGTERM (the shell's 128 + SIGTERM)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that sandboxes and running cells close."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises `Terminated` in the main thread instead of ending the process
    on the spot (which would skip every `finally`)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


class ReportedError(RuntimeError):
    """An internal failure whose message already names where its traceback is."""


def failure_exit(err: BaseException, log: Path) -> int:
    """Print the one-line report of `err` and return its exit code; call it in an `except`.

    Bad input (`InputError`, `ModelInputError` among them) is exit 2, Ctrl-C 130, SIGTERM 143 (after
    `raise_on_sigterm`), a `ReportedError` 3, and any other failure 3 with the current
    traceback written to `log`.
    """
    from trajectories.jsonl import InputError

    if isinstance(err, InputError):
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if isinstance(err, Terminated):
        print("terminated: re-run the same command to resume", file=sys.stderr)
        return TERMINATED
    if isinstance(err, KeyboardInterrupt):
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return INTERRUPTED
    if isinstance(err, ReportedError):
        print(f"internal error: {err}", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(traceback.format_exc())
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"internal error: {first} (traceback: {log})", file=sys.stderr)
    return ExitCode.INTERNAL_ERROR
