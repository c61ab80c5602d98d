"""Seed a task's files, directories, groups, modes and ACLs into a sandbox's workspace.

Seeding is one shell script run as the agent before the episode starts; its commands are
not part of the agent's trajectory.
"""

from __future__ import annotations

import base64
import shlex
from typing import Any

from envs.sandbox import Sandbox, SandboxError

SEED_MTIME = 1714554000
"""Modification time (2024-05-01 09:00 UTC) of every seeded path, so `ls -l` is reproducible."""


def _attributes(entry: dict[str, Any]) -> list[str]:
    path = shlex.quote(entry["path"])
    lines = [f"chmod {entry['mode']} -- {path}", f"chgrp {shlex.quote(entry['group'])} -- {path}"]
    if entry["acl"]:
        lines.append(f"setfacl -m {shlex.quote(','.join(entry['acl']))} -- {path}")
    return lines


def seed_script(setup: dict[str, Any]) -> str:
    """The shell script that creates `setup` under the current directory.

    Directories are created first and get their modes last, so that a restrictive
    directory mode cannot block writing the files inside it; every seeded path and the
    workspace itself then get the fixed time `SEED_MTIME`.
    """
    lines = ["set -e"]
    lines += [f"mkdir -p -- {shlex.quote(entry['path'])}" for entry in setup["dirs"]]
    for entry in setup["files"]:
        path = shlex.quote(entry["path"])
        encoded = base64.b64encode(entry["content"].encode()).decode()
        lines.append(f'mkdir -p -- "$(dirname -- {path})"')
        lines.append(f"printf %s {encoded} | base64 -d > {path}")
        lines += _attributes(entry)
    for entry in setup["dirs"]:
        lines += _attributes(entry)
    paths = [shlex.quote(entry["path"]) for entry in setup["files"] + setup["dirs"]]
    lines.append(f"touch -h -d @{SEED_MTIME} -- {' '.join(paths)} .")
    return "\n".join(lines)


def seed(sandbox: Sandbox, setup: dict[str, Any]) -> None:
    """Create `setup` in the sandbox's workspace; raise `SandboxError` if any step fails."""
    result = sandbox.exec(seed_script(setup), timeout=30.0)
    if result.exit_code != 0:
        raise SandboxError(f"seeding failed: {(result.stderr or result.stdout).strip()}")
