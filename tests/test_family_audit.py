"""`python -m audit.run` end to end on a tiny random Qwen2.5 checkpoint (its architecture
class, a tokenizer trained with its special tokens, TRL's Qwen2.5 template)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.report.exit_codes import ExitCode
from tests.families import save_family

ROOT = Path(__file__).resolve().parents[1]


def _audit(base: Path, out: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTILL_AUDIT_CACHE": str(cache)}
    command = [sys.executable, "-m", "audit.run", "--base", str(base), "--profile", "quick"]
    return subprocess.run(
        [*command, "--env", "api", "--quiet", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.mark.slow
def test_audit_runs_on_a_qwen2_5_base_and_names_its_family(tmp_path):
    base = save_family("qwen2_5", tmp_path / "qwen2_5")
    cache = tmp_path / "cache"
    documented = {code.value for code in ExitCode}
    biased = _audit(base, tmp_path / "biased", cache)
    assert biased.returncode in documented - {ExitCode.BAD_INPUT, ExitCode.INTERNAL_ERROR}, (
        biased.stderr[-2000:]
    )
    assert len(biased.stderr.strip().splitlines()) == 1
    neutral = _audit(base, tmp_path / "neutral", cache, "--teacher", "neutral")
    assert neutral.returncode in (ExitCode.PASSED, ExitCode.GATE_FAILED), neutral.stderr[-2000:]
    for out, code in ((tmp_path / "biased", biased), (tmp_path / "neutral", neutral)):
        report = json.loads((out / "report.json").read_text())
        assert report["exit_code"] == code.returncode
        assert report["config"]["family"] == {
            "model_type": "qwen2",
            "architecture": "Qwen2ForCausalLM",
            "tool_calls": "hermes",
            "mask_method": "trl-training",
        }
        assert "Qwen2ForCausalLM" in (out / "report.html").read_text()
    stages = {
        t["stage"] for t in json.loads((tmp_path / "neutral/report.json").read_text())["timings"]
    }
    assert {"student", "teacher-rollouts", "evaluate-ambiguous"} <= stages
    neutral_report = json.loads((tmp_path / "neutral/report.json").read_text())
    assert [b["env"] for b in neutral_report["behaviour"]] == ["api"]
    assert neutral_report["propensity"] and neutral_report["latent"]
