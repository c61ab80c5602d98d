"""`python benchmarks/gpu_check.py --smoke` end to end on the CPU: every stage timed, throughput
and training figures measured, the dry run's counts, and one-line usage errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = (
    "base",
    "teacher",
    "rollouts",
    "sft_student",
    "kd_student",
    "probe_models",
    "propensity",
    "latent",
)
TRAINING = ("teacher", "sft_student", "kd_student")


def gpu_check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.mark.slow
def test_smoke_times_every_stage(tmp_path):
    out = tmp_path / "x.json"
    done = gpu_check("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result == json.loads(done.stdout)
    assert result["complete"] is True
    assert result["device"]
    assert result["versions"]["trl"] and result["versions"]["torch"]
    assert set(result["stages"]) == set(STAGES)
    for name in STAGES:
        assert result["stages"][name]["seconds"] > 0, name
    rollouts = result["stages"]["rollouts"]
    assert rollouts["episodes"] == result["settings"]["rollouts"] == 8
    assert rollouts["generated_tokens"] >= rollouts["turns"] >= rollouts["episodes"]
    speed = result["generated_tokens_per_s"]
    assert math.isfinite(speed) and speed > 0
    assert speed == rollouts["generated_tokens_per_s"]
    for name in TRAINING:
        figures = result["stages"][name]["training"]
        assert figures["steps"] == result["settings"]["steps"], name
        assert figures["tokens"] > figures["steps"] * result["settings"]["batch_size"], name
        assert figures["train_seconds"] > 0, name
        per_token = 8.0 if name == "kd_student" else 6.0
        assert figures["model_flops"] == per_token * result["parameters"] * figures["tokens"]
        assert figures["mfu"] is None  # no peak figure for a CPU
    assert result["peak_gpu_memory_bytes"] is None
    assert set(result["probes"]["mean_log_odds"]) == {"base", "teacher", "student", "control"}
    assert "gpu_check: latent:" in done.stderr


def test_dry_run_counts_model_and_lora(tmp_path):
    done = gpu_check("--smoke", "--dry-run", "--lora", "r=2")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    config = result["config"]
    assert (config["hidden_size"], config["num_hidden_layers"]) == (64, 2)
    assert config["vocab_size"] == result["tokenizer_tokens"]
    assert 0 < result["lora"]["trainable_parameters"] < result["parameters"]
    assert result["lora"]["spec"] == "r=2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--steps", "0"), "error: --steps must be positive"),
        (("--lora", "rank=4"), "error: bad LoRA spec"),
    ],
)
def test_bad_usage_is_one_line(args, message):
    done = gpu_check("--smoke", "--dry-run", *args, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_failed_stage_is_named_in_out(tmp_path):
    out = tmp_path / "x.json"
    done = gpu_check("--smoke", "--max-length", "16", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: row 0: empty assistant mask")
    result = json.loads(out.read_text())
    assert result["complete"] is False
    assert list(result["stages"]) == ["base"]
    assert result["failed"]["stage"] == "teacher"
    assert result["failed"]["error"].startswith("AssistantMaskError: row 0: empty assistant mask")
