"""Shared fixtures: sandbox backends (docker skipped only where no daemon runs and CI
does not require it), and each test process's share of the CPU cores.

The suite runs in `pytest-xdist` workers (`-n auto`, whole files per worker): every worker,
and every audit it starts as a subprocess, uses `WORKER_THREADS` torch threads, its share of
the cores, so that the workers' threads do not contend for the same core."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from audit.cores import usable_cores
from envs.sandbox import Sandbox, get_sandbox

WORKER_THREADS = max(1, usable_cores() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
"""Torch threads of this test process and of the audits it starts."""
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(WORKER_THREADS)


def _docker_reason() -> str | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception as err:  # noqa: BLE001 - any failure means no usable daemon
        return f"no Docker daemon: {type(err).__name__}"
    return None


def _bwrap_reason() -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed"
    if os.geteuid() != 0:
        return (
            "bwrap as a normal user maps one uid (no agent groups) and has no cgroup limits: "
            "run the sandbox tests as root, or use the docker backend"
        )
    return None


UNAVAILABLE = {"docker": _docker_reason(), "bwrap": _bwrap_reason()}


def require_backend(name: str) -> None:
    """Skip when the backend cannot run here, or fail if CI requires every backend."""
    reason = UNAVAILABLE[name]
    if reason is None:
        return
    if os.environ.get("DISTILL_AUDIT_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{name} backend required but unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["bwrap", "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    require_backend(request.param)
    return request.param


@pytest.fixture
def sandbox(backend: str):
    with get_sandbox(backend) as box:
        yield box


@pytest.fixture
def new_sandbox(backend: str):
    """A factory of extra started sandboxes of the same backend, all closed at teardown."""
    opened: list[Sandbox] = []

    def make(**kwargs) -> Sandbox:
        box = get_sandbox(backend, **kwargs)
        box.start()
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


@pytest.fixture(scope="session", autouse=True)
def worker_threads() -> None:
    """This process's torch threads: `WORKER_THREADS`."""
    import torch

    torch.set_num_threads(WORKER_THREADS)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models gain nothing from more, and a shared CPU
    makes threads spin."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
