"""What the sandboxes of a killed process leave behind, and its removal.

A process killed with SIGKILL cannot close its sandboxes. bwrap dies with it
(`--die-with-parent`), but the host workspace directory and the sandbox's cgroup stay; both
are named after the owning process (`owned_name`). A docker container keeps running; it is
labelled with its owner (`process_owner`). The first sandbox a process starts with a backend
removes what belongs to owners that no longer exist (`once`). Owners are identified by pid
and pid namespace (and host, for containers), so nothing of a live process in another
namespace or on another host is touched; a reused pid only delays the removal. The removal
is best effort: a failure is reported on stderr and does not stop the sandbox from starting.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

_done: set[str] = set()
_PID = r"([0-9]{1,9})"


def _pid_namespace() -> int:
    """The inode of this process's pid namespace (0 where /proc does not tell)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owned_name(prefix: str) -> str:
    """`prefix`, this process's pid namespace and pid, and a dash: the start of an owned name."""
    return f"{prefix}{_pid_namespace()}-{os.getpid()}-"


def owner_of(name: str, prefix: str) -> int | None:
    """The owner pid encoded in `name` by `owned_name(prefix)` in this pid namespace, or None
    (another namespace, or no owner)."""
    match = re.fullmatch(re.escape(prefix) + r"([0-9]{1,20})-" + _PID + r"-[A-Za-z0-9_]+", name)
    if match is None or int(match.group(1)) != _pid_namespace():
        return None
    return int(match.group(2))


def is_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
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
    """Call `sweep` the first time this process asks for `key`; later calls do nothing. A
    failing sweep is reported on stderr, not raised."""
    if key in _done:
        return
    _done.add(key)
    try:
        sweep()
    except Exception as err:  # noqa: BLE001 - cleanup of others' leftovers is best effort
        print(f"warning: {key} sandbox leftovers not removed: {err}", file=sys.stderr)


def process_owner() -> str:
    """This process as `host|pid namespace|pid`: a label for what outlives a SIGKILL."""
    return f"{socket.gethostname()}|{_pid_namespace()}|{os.getpid()}"


def is_orphan_owner(owner: str) -> bool:
    """Whether `owner` (a `process_owner()` value) names a process of this host and pid
    namespace that no longer exists."""
    match = re.fullmatch(r"(.*)\|([0-9]{1,20})\|" + _PID, owner)
    if match is None or match.group(1) != socket.gethostname():
        return False
    if int(match.group(2)) != _pid_namespace():
        return False
    pid = int(match.group(3))
    return pid != os.getpid() and not is_alive(pid)
