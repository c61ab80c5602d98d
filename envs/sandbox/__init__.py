"""Sandboxes for agent commands: a `Sandbox` interface and backends picked by name."""

from __future__ import annotations

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
