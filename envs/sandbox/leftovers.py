"""What the sandboxes of a killed process leave behind, and its removal.

A process killed with SIGKILL cannot close its sandboxes. bwrap dies with it
(`--die-with-parent`), but the host workspace directory and the sandbox's cgroup stay; both
are named after the owning process (`owned_name`). A docker container keeps running; it is
labelled with its owner (`process_owner`). The first sandbox a process starts with a backend
removes what belongs to owners that no longer exist (`once`). A reused pid only delays the
removal; a container whose owner is another host or pid namespace is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

_done: set[str] = set()


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


def once(key: str, sweep: Callable[[], None]) -> None:
    """Call `sweep` the first time this process asks for `key`; later calls do nothing."""
    if key in _done:
        return
    _done.add(key)
    sweep()


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def process_owner() -> str:
    """This process as `host|pid namespace|pid`: a label for what outlives a SIGKILL."""
    return f"{socket.gethostname()}|{_pid_namespace()}|{os.getpid()}"


def is_orphan_owner(owner: str) -> bool:
    """Whether `owner` (a `process_owner()` value) names a process of this host and pid
    namespace that no longer exists."""
    host, _, rest = owner.partition("|")
    namespace, _, pid = rest.rpartition("|")
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and not is_alive(int(pid))
