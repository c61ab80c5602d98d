"""What bwrap sandboxes of a killed process leave behind, and its removal.

A process killed with SIGKILL cannot close its sandboxes: bwrap dies with it
(`--die-with-parent`), but the host workspace directory and the sandbox's cgroup stay. Both are
named after the owning process (`owned_name`); the first sandbox a process starts removes
those whose owner no longer exists (`sweep_once`). A reused pid only delays the removal.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

_swept = False


def owned_name(prefix: str) -> str:
    """`prefix` followed by this process's id and a dash: the start of an owned name."""
    return f"{prefix}{os.getpid()}-"


def owner_of(name: str, prefix: str) -> int | None:
    """The owner pid encoded in `name` by `owned_name(prefix)`, or None if it has none."""
    match = re.fullmatch(re.escape(prefix) + r"(\d+)-[A-Za-z0-9_]+", name)
    return int(match.group(1)) if match else None


def is_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphans(parent: Path, prefix: str) -> list[Path]:
    """Entries of `parent` named by `owned_name(prefix)` whose owner is gone."""
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        owner = owner_of(path.name, prefix)
        if owner is not None and owner != os.getpid() and not is_alive(owner):
            found.append(path)
    return found


def remove_orphans(workspaces: tuple[Path, str], cgroup_parents: Iterable[Path]) -> None:
    """Delete orphaned workspaces (`(parent, prefix)`) and empty orphaned cgroups."""
    for path in orphans(*workspaces):
        shutil.rmtree(path, ignore_errors=True)
    for parent in cgroup_parents:
        for group in orphans(parent, "sbx-"):
            with contextlib.suppress(OSError):
                group.rmdir()


def sweep_once(workspaces: tuple[Path, str], cgroup_parents: Iterable[Path]) -> None:
    """`remove_orphans` the first time this process calls it; later calls do nothing."""
    global _swept
    if _swept:
        return
    _swept = True
    remove_orphans(workspaces, cgroup_parents)
