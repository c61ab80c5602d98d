"""Which sandbox backend an audit's Bash episodes get: `--backend auto|bwrap|docker`.

A normal user's bwrap sandboxes run rootless, where the Bash tasks' group permissions do not
hold, so `auto` gives a normal user docker and an explicit bwrap is refused when the config is
read. The normal user is this root process with `os.geteuid` reporting another uid; the
Docker daemon is the real one (unreachable through a `DOCKER_HOST` that does not exist).
"""

from __future__ import annotations

import os

import pytest

from audit.profiles import build_config
from envs.sandbox import ROOTLESS_BWRAP, SandboxUnavailableError, resolve_backend
from tests.conftest import require_backend
from trajectories.jsonl import InputError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the root-side cases need root")


def test_auto_is_bwrap_for_root():
    assert resolve_backend("auto") == "bwrap"
    assert build_config("quick", {}, {"env": "bash"}).backend == "bwrap"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="known: auto, bwrap, docker"):
        resolve_backend("podman")
    with pytest.raises(InputError, match="backend must be auto, bwrap or docker"):
        build_config("quick", {}, {"backend": "podman"})


def test_a_normal_users_bwrap_is_refused_when_read(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailableError, match="rootless"):
        resolve_backend("bwrap")
    with pytest.raises(InputError) as err:
        build_config("quick", {}, {"env": "bash", "backend": "bwrap"})
    assert str(err.value) == f"--backend bwrap: {ROOTLESS_BWRAP}"
    assert build_config("quick", {}, {"env": "api", "backend": "bwrap"}).backend == "bwrap"


def test_auto_is_docker_for_a_normal_user(monkeypatch):
    require_backend("docker")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert resolve_backend("auto") == "docker"
    assert build_config("quick", {}, {"env": "all"}).backend == "docker"


def test_an_unreachable_daemon_is_one_line_when_read(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    with pytest.raises(InputError) as err:
        build_config("quick", {}, {"env": "bash"})
    message = str(err.value)
    assert message.startswith("--backend auto: cannot reach the Docker daemon")
    assert "setup-system" in message and "\n" not in message
    assert build_config("quick", {}, {"env": "api"}).backend == "docker"
