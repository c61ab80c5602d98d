"""A process killed with SIGKILL leaves its bwrap workspaces and cgroups, or its docker
container; the next process's first sandbox removes them, and never those of a live process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envs.sandbox import get_sandbox
from envs.sandbox.leftovers import is_orphan_owner, owned_name, owner_of, process_owner
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


def test_owner_is_read_back_only_from_owned_names_of_this_pid_namespace():
    name = owned_name("sbx-") + "ab12"
    assert owner_of(name, "sbx-") == os.getpid()
    namespace = name.removeprefix("sbx-").split("-")[0]
    assert owner_of(f"sbx-{int(namespace) + 1}-{os.getpid()}-ab12", "sbx-") is None
    assert owner_of(f"sbx-{namespace}-99999999999999999999-ab12", "sbx-") is None
    assert owner_of("sbx-ab12", "sbx-") is None
    assert owner_of(f"sbx-{namespace}-12-ab-cd", "sbx-") is None


def test_killed_process_leftovers_are_removed_by_the_next_process():
    require_backend("bwrap")
    with get_sandbox("bwrap") as live:
        killed = subprocess.run([sys.executable, "-c", KILLED], capture_output=True, text=True)
        assert killed.returncode == -9, killed.stderr[-2000:]
        left = json.loads(killed.stdout)
        workspace = Path(left["workspace"])
        cgroups = [Path(path) for path in left["cgroups"]]
        assert (workspace / "note.txt").read_text() == "left\n"
        assert all(group.is_dir() for group in cgroups)
        sweeper = subprocess.run([sys.executable, "-c", SWEEPER], capture_output=True, text=True)
        assert sweeper.returncode == 0, sweeper.stderr[-2000:]
        assert not workspace.exists()
        assert not any(group.exists() for group in cgroups)
        assert live._workspace is not None and live._workspace.is_dir()
        assert live.exec("echo still here").stdout == "still here\n"


KILLED_DOCKER = textwrap.dedent(
    """
    import os, signal
    from envs.sandbox import get_sandbox
    box = get_sandbox("docker")
    box.start()
    print(box._container.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_owner_label_names_only_dead_processes_of_this_host_as_orphans():
    me = process_owner()
    host, namespace, _ = me.split("|")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    assert not is_orphan_owner(me)
    assert is_orphan_owner(f"{host}|{namespace}|{dead}")
    assert not is_orphan_owner(f"another-host|{namespace}|{dead}")
    assert not is_orphan_owner(f"{host}|pid:[1]|{dead}")
    assert not is_orphan_owner("")


def test_killed_process_container_is_removed_by_the_next_process():
    require_backend("docker")
    import docker
    from docker.errors import NotFound

    client = docker.from_env()
    with get_sandbox("docker") as live:
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_DOCKER], capture_output=True, text=True
        )
        assert killed.returncode == -9, killed.stderr[-2000:]
        container = client.containers.get(killed.stdout.strip())
        assert container.status == "running"
        sweeper = SWEEPER.replace('"bwrap"', '"docker"')
        result = subprocess.run([sys.executable, "-c", sweeper], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        with pytest.raises(NotFound):
            client.containers.get(container.id)
        assert live.exec("echo still here").stdout == "still here\n"
