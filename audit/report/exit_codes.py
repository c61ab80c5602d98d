"""The exit codes of `python -m audit.run`, in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """0 gate passed, 1 gate failed (or no power), 2 bad usage or input, 3 internal error."""

    PASSED = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    INTERNAL_ERROR = 3
