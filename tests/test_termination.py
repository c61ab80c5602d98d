"""SIGTERM ends `audit.run` and `audit.study` like Ctrl-C: sandboxes closed, running cells
terminated, exit 143 and one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from envs.sandbox.docker_backend import OWNER_LABEL
from envs.sandbox.leftovers import is_alive
from tests.conftest import require_backend

TERMINATED_LINE = "terminated: re-run the same command to resume"


def start(module: str, *args: str, root: Path) -> subprocess.Popen:
    """`python -m module --quiet args` with its own stage cache and TMPDIR under `root`."""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISTILL_AUDIT_CACHE": str(root / "cache"), "TMPDIR": str(root / "tmp")}
    return subprocess.Popen(
        [sys.executable, "-m", module, "--quiet", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, found: Callable[[], list], timeout: float = 600) -> list:
    """Poll `found()` until it is non-empty while `proc` runs; its first non-empty value."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def terminate(proc: subprocess.Popen) -> str:
    """SIGTERM `proc`; its stderr once it exits with 143 (asserted)."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    return stderr


def workspaces(root: Path, pid: int) -> list[Path]:
    return list((root / "tmp").glob(f"distill-audit-ws-*-{pid}-*"))


def containers(pid: int) -> list:
    import docker

    client = docker.from_env()
    listed = client.containers.list(all=True, filters={"label": OWNER_LABEL})
    return [c for c in listed if c.labels[OWNER_LABEL].endswith(f"|{pid}")]


@pytest.mark.parametrize("backend", ["bwrap", "docker"])
def test_sigterm_closes_the_running_audits_sandboxes(tmp_path, backend):
    require_backend(backend)
    args = ["--teacher", "biased", "--profile", "quick", "--env", "bash", "--backend", backend]
    proc = start("audit.run", *args, "--out", str(tmp_path / "out"), root=tmp_path)
    owned = {
        "bwrap": lambda: workspaces(tmp_path, proc.pid),
        "docker": lambda: containers(proc.pid),
    }[backend]
    wait_for(proc, owned)
    stderr = terminate(proc)
    assert stderr.strip().splitlines()[-1] == TERMINATED_LINE
    assert owned() == []
    assert not (tmp_path / "out" / "report.json").exists()


def spawned_children(parent: int) -> list[int]:
    """The multiprocessing spawn children of `parent`: a study's `--jobs` cells, an audit's
    worker processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def both_cells(parent: int) -> list[int]:
    found = spawned_children(parent)
    return found if len(found) == 2 else []


def test_sigterm_stops_a_parallel_study_and_its_cells(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[audit]\nprofile = "quick"\nenv = "api"\n[axes]\nseeds = [1, 2]\n')
    out = tmp_path / "study"
    proc = start(
        "audit.study", "--grid", str(grid), "--out", str(out), "--jobs", "2", root=tmp_path
    )
    cells = wait_for(proc, lambda: both_cells(proc.pid))
    time.sleep(2)
    stderr = terminate(proc)
    assert stderr.strip() == TERMINATED_LINE
    assert [pid for pid in cells if is_alive(pid)] == []
    assert not (out / "study.json").exists()
