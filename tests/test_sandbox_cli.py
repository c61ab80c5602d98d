"""`python -m envs.sandbox`: exit codes, JSON output, usage errors, unavailable backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envs.sandbox", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_exec_passes_output_and_exit_code(backend):
    result = run_cli("exec", "--backend", backend, "--", "echo hi; echo oops >&2; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, "hi\n", "oops\n")


def test_exec_joins_words_like_ssh(backend):
    result = run_cli("exec", "--backend", backend, "--", "echo", "a", "&&", "id", "-un")
    assert result.stdout == "a\nagent\n"


def test_exec_json(backend):
    result = run_cli("exec", "--backend", backend, "--json", "--", "printf x; exit 4")
    assert result.returncode == 0
    payload = json.loads(result.stdout)
    assert set(payload) == {"exit_code", "stdout", "stderr", "timed_out", "truncated", "duration_s"}
    assert (payload["exit_code"], payload["stdout"], payload["timed_out"]) == (4, "x", False)


def test_exec_timeout_exits_124(backend):
    result = run_cli("exec", "--backend", backend, "--timeout", "1", "--", "sleep 20")
    assert result.returncode == 124
    assert "timed out" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("exec", "--backend", "podman", "--", "true"),
        ("exec", "--", "true"),
        ("exec", "--backend", "bwrap"),
        ("exec", "--backend", "bwrap", "--timeout", "-1", "--", "true"),
        ("frobnicate",),
    ],
)
def test_bad_usage_exits_2_with_one_line(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unreachable_docker_daemon_exits_3_naming_the_fix():
    result = run_cli(
        "exec", "--backend", "docker", "--", "true", env={"DOCKER_HOST": "unix:///nonexistent"}
    )
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Docker daemon" in result.stderr and "bwrap" in result.stderr


def test_missing_bwrap_exits_3_naming_the_fix(tmp_path):
    result = run_cli("exec", "--backend", "bwrap", "--", "true", env={"PATH": str(tmp_path)})
    assert result.returncode == 3
    assert "apt-get install -y bubblewrap" in result.stderr


def test_build_is_idempotent():
    result = run_cli("build", "--backend", "bwrap")
    assert result.returncode == 0
    assert "root filesystem:" in result.stderr
