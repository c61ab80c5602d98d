"""A process killed with SIGKILL leaves its bwrap workspaces and cgroups; the next process's
first sandbox removes them, and never those of a live process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from envs.sandbox import get_sandbox
from envs.sandbox.leftovers import owned_name, owner_of
from tests.conftest import require_backend

KILLED = textwrap.dedent(
    """
    import json, os, signal
    from envs.sandbox import get_sandbox
    box = get_sandbox("bwrap")
    box.start()
    box.exec("echo left > note.txt")
    cgroups = [str(d) for d in box._cgroup.dirs] if box._cgroup else []
    print(json.dumps({"workspace": str(box._workspace), "cgroups": cgroups}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

SWEEPER = textwrap.dedent(
    """
    from envs.sandbox import get_sandbox
    with get_sandbox("bwrap") as box:
        assert box.exec("true").exit_code == 0
    """
)


def test_owner_is_read_back_only_from_owned_names():
    name = owned_name("sbx-") + "ab12"
    assert owner_of(name, "sbx-") is not None
    assert owner_of("sbx-ab12", "sbx-") is None
    assert owner_of("sbx-12-ab-cd", "sbx-") is None


def test_killed_process_leftovers_are_removed_by_the_next_process():
    require_backend("bwrap")
    killed = subprocess.run([sys.executable, "-c", KILLED], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = json.loads(killed.stdout)
    workspace = Path(left["workspace"])
    cgroups = [Path(path) for path in left["cgroups"]]
    assert (workspace / "note.txt").read_text() == "left\n"
    assert all(group.is_dir() for group in cgroups)
    with get_sandbox("bwrap") as live:
        sweeper = subprocess.run([sys.executable, "-c", SWEEPER], capture_output=True, text=True)
        assert sweeper.returncode == 0, sweeper.stderr[-2000:]
        assert not workspace.exists()
        assert not any(group.exists() for group in cgroups)
        assert live._workspace is not None and live._workspace.is_dir()
        assert live.exec("echo still here").stdout == "still here\n"
