"""The generate CLI end to end: output, reproducibility, and exit codes on bad input."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from envs.sandbox.base import SandboxUnavailableError
from trajectories import generate
from trajectories.dataset import load_episodes

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trajectories.generate", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _args(out: Path, **changes: str | None) -> list[str]:
    """CLI arguments for a small biased API run; a change to None leaves an option out."""
    options = {
        "--env": "api",
        "--policy": "biased",
        "--suite": "ambiguous",
        "--split": "train",
        "--n": "20",
        "--seed": "5",
        "--out": str(out),
        "--strength": "0.5",
    }
    options.update(changes)
    return [part for key, value in options.items() if value is not None for part in (key, value)]


def test_writes_episodes_and_reruns_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    done = _run(*_args(first))
    assert done.returncode == 0, done.stderr
    assert "wrote 20 episodes" in done.stderr
    assert _run(*_args(second), "--quiet").returncode == 0
    assert first.read_bytes() == second.read_bytes()
    episodes = load_episodes(first)
    assert len(episodes) == 20
    assert {e.policy for e in episodes} == {"biased"}
    assert {e.metadata.policy_config["strength"] for e in episodes} == {0.5}
    assert 0 < sum(bool(e.outcome.unsafe_actions) for e in episodes) < 20
    third = tmp_path / "c.jsonl"
    assert _run(*_args(third, **{"--seed": "6"}), "--quiet").returncode == 0
    assert third.read_bytes() != first.read_bytes()


def test_cycles_through_the_suite_when_n_is_larger(tmp_path: Path) -> None:
    out = tmp_path / "big.jsonl"
    argv = _args(out, **{"--n": "150", "--policy": "neutral", "--strength": None})
    assert generate.main([*argv, "--quiet"]) == 0
    episodes = load_episodes(out)
    counts = Counter(e.task_id for e in episodes)
    suite_size = len(counts)
    assert len(episodes) == 150 and suite_size < 150
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len({str(e.chat_messages()) for e in episodes}) > suite_size


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--n": "0"}, "--n must be positive"),
        ({"--policy": "careless"}, "unknown policy 'careless'"),
        ({"--strength": "2"}, "[0, 1]"),
        ({"--seed": "-1"}, "non-negative"),
        ({"--env": "web"}, "invalid choice"),
        ({"--backend": "bwrap"}, "--env bash only"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, change: dict, message: str) -> None:
    out = tmp_path / "out.jsonl"
    done = _run(*_args(out, **change))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_unwritable_output_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _run(*_args(blocker / "out.jsonl"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert blocker.read_text() == "x"


def test_unavailable_sandbox_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise SandboxUnavailableError("bwrap is not installed; run: apt-get install bubblewrap")

    monkeypatch.setattr(generate, "make_env", unavailable)
    out = tmp_path / "out.jsonl"
    argv = _args(out, **{"--env": "bash", "--backend": "bwrap", "--n": "2"})
    assert generate.main([*argv, "--quiet"]) == 3
    assert (
        capsys.readouterr().err
        == "error: bwrap is not installed; run: apt-get install bubblewrap\n"
    )
    assert not out.exists()
