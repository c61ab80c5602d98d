"""Sandboxes for agent commands: a `Sandbox` interface and backends picked by name."""

from __future__ import annotations

import os
from collections.abc import Callable

from envs.sandbox.base import (
    ExecResult,
    Sandbox,
    SandboxClosedError,
    SandboxCrashedError,
    SandboxError,
    SandboxLimits,
    SandboxUnavailableError,
)

__all__ = [
    "BACKENDS",
    "ExecResult",
    "Sandbox",
    "SandboxClosedError",
    "SandboxCrashedError",
    "SandboxError",
    "SandboxLimits",
    "SandboxUnavailableError",
    "get_sandbox",
    "register_backend",
    "resolve_backend",
]


def _bwrap() -> type[Sandbox]:
    from envs.sandbox.bwrap_backend import BwrapSandbox

    return BwrapSandbox


def _docker() -> type[Sandbox]:
    from envs.sandbox.docker_backend import DockerSandbox

    return DockerSandbox


BACKENDS: dict[str, Callable[[], type[Sandbox]]] = {"bwrap": _bwrap, "docker": _docker}


def register_backend(name: str, loader: Callable[[], type[Sandbox]]) -> None:
    """Make a backend available to `get_sandbox` under `name`."""
    BACKENDS[name] = loader


def get_sandbox(name: str, limits: SandboxLimits | None = None) -> Sandbox:
    """An unstarted sandbox of backend `name`; ValueError lists the known names."""
    if name not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]()(limits)


ROOTLESS_BWRAP = (
    "bwrap as a normal user runs rootless (one uid, no cgroup), where the Bash tasks' group "
    "permissions and limits do not hold; use --backend docker, or run as root"
)
"""Why `resolve_backend` refuses bwrap for a normal user's Bash episodes."""


def resolve_backend(name: str, check: bool = True) -> str:
    """The backend `name` stands for: 'auto' is bwrap for root and docker for a normal user
    (see `ROOTLESS_BWRAP`). With `check`, a normal user's bwrap is refused and docker must
    answer.

    Raises `ValueError` for an unknown name and `SandboxUnavailableError` (one line, saying how
    to fix it) for a backend that cannot run the Bash tasks here.
    """
    if name not in (*BACKENDS, "auto"):
        raise ValueError(
            f"unknown sandbox backend {name!r}; known: auto, {', '.join(sorted(BACKENDS))}"
        )
    root = os.geteuid() == 0
    if name == "auto":
        name = "bwrap" if root else "docker"
    if check and name == "bwrap" and not root:
        raise SandboxUnavailableError(ROOTLESS_BWRAP)
    if check and name == "docker":
        from envs.sandbox.docker_backend import check_daemon

        check_daemon()
    return name
