"""Per-sandbox cgroups (v2 or v1) for the bwrap backend: CPU, memory and process-count caps.

Used when the host lets us create cgroups (root with a writable cgroup tree). A process joins
by writing its own pid to `cgroup.procs` before it execs bwrap, so every sandbox process is
inside from its first instruction. The join is a small `sh` in front of bwrap rather than a
Python `preexec_fn`, which would make Python fork the whole (often large) parent process
instead of spawning: about 100 ms against 4 ms per sandbox next to a loaded model.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from envs.sandbox.base import SandboxLimits
from envs.sandbox.leftovers import owned_name

_ROOT = Path("/sys/fs/cgroup")
_GROUP = "distill-audit"
_PERIOD_US = 100_000


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


class SandboxCgroup:
    """A cgroup (one per controller on v1) holding one sandbox."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    @staticmethod
    def parents() -> list[Path]:
        """The directories that hold the sandboxes' cgroups (v2: one; v1: one per controller)."""
        return [_ROOT / _GROUP] + [_ROOT / c / _GROUP for c in ("pids", "memory", "cpu")]

    @classmethod
    def create(cls, limits: SandboxLimits) -> SandboxCgroup | None:
        """Create and configure the cgroup; None if this host does not allow it."""
        if os.geteuid() != 0:
            return None
        name = owned_name("sbx-") + secrets.token_hex(6)
        cpu_quota = str(int(limits.cpus * _PERIOD_US))
        memory = str(limits.memory_mb * 1024 * 1024)
        pids = str(limits.pids)
        if (_ROOT / "cgroup.controllers").is_file() and _writable(_ROOT):
            parent = _ROOT / _GROUP
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (_ROOT / "cgroup.subtree_control").write_text("+cpu +memory +pids")
                (parent / "cgroup.subtree_control").write_text("+cpu +memory +pids")
            group = parent / name
            group.mkdir()
            settings = {
                "pids.max": pids,
                "memory.max": memory,
                "memory.swap.max": "0",
                "cpu.max": f"{cpu_quota} {_PERIOD_US}",
            }
            cls._apply(group, settings)
            return cls([group])
        v1 = {
            "pids": {"pids.max": pids},
            "memory": {"memory.limit_in_bytes": memory},
            "cpu": {"cpu.cfs_period_us": str(_PERIOD_US), "cpu.cfs_quota_us": cpu_quota},
        }
        if not all(_writable(_ROOT / controller) for controller in v1):
            return None
        dirs = []
        for controller, settings in v1.items():
            group = _ROOT / controller / _GROUP / name
            group.mkdir(parents=True)
            cls._apply(group, settings)
            dirs.append(group)
        return cls(dirs)

    @staticmethod
    def _apply(group: Path, settings: dict[str, str]) -> None:
        for key, value in settings.items():
            if (group / key).exists():
                (group / key).write_text(value)

    def wrap(self, command: list[str]) -> list[str]:
        """`command` preceded by a shell that moves itself into the cgroup, then execs it."""
        join = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'
        procs = [str(group / "cgroup.procs") for group in self.dirs]
        return ["/bin/sh", "-c", join, "sh", *procs, "--", *command]

    def remove(self) -> None:
        """Delete the cgroup, waiting up to 2 s for its killed processes to be reaped."""
        for group in self.dirs:
            for _ in range(200):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
