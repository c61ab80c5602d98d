"""The CPU cores this process may run on: what every default thread and worker count divides."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores of this process's CPU affinity mask (a container's or `taskset`'s share, not
    the machine's count where the platform reports one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
