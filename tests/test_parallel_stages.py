"""`--jobs N`: the students' stages of one audit computed in worker processes give the report
that one process gives (both with one torch thread a process, so that no float sum is split
differently), and SIGTERM stops the workers with their sandboxes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from audit.config import AuditConfig
from audit.pipeline.arm_stages import ARMS, ArmStages, Part
from audit.pipeline.artifacts import AuditPipeline
from audit.pipeline.stages import StageRunner
from audit.pipeline.workers import parallel_jobs
from audit.profiles import build_config
from tests.conftest import require_backend
from tests.test_termination import TERMINATED_LINE, spawned_children, start, terminate, wait_for

ROOT = Path(__file__).resolve().parents[1]
SMALL = (
    *("--profile", "quick", "--env", "api", "--seeds", "2", "--rollouts", "16"),
    *("--eval-episodes", "8", "--teacher-demos", "40", "--teacher-epochs", "1"),
    *("--positive-controls", "--quiet"),
)
"""A small audit that always reaches the students (the neutral teacher has no induction
check) and has every kind of part: 2 seeds of 2 arms, positive controls, base, labels."""


def _parts(**fields) -> list[Part]:
    config = replace(AuditConfig(), **fields)
    return ArmStages(config, AuditPipeline(config, StageRunner(), progress=False)).parts()


def test_parts_split_every_seed_and_arm_and_put_the_controls_after_the_first_seed():
    parts = _parts(seeds=3, first_seed=10, positive_controls=True)
    arms = [Part("arms", s, (arm,)) for s in (10, 11, 12) for arm in ARMS]
    assert parts == [
        *arms[:4],
        Part("positive-controls"),
        *arms[4:],
        Part("base"),
        Part("teacher-labels"),
    ]
    assert Part("positive-controls") not in _parts(seeds=1, positive_controls=False)


def test_a_defence_that_couples_the_arms_keeps_each_seeds_arms_together():
    parts = _parts(seeds=2, dilute=0.5, positive_controls=False)
    assert parts[:2] == [Part("arms", 0, ARMS), Part("arms", 1, ARMS)]
    assert len(parts) == 4


def test_jobs_default_to_one_per_torch_thread_on_the_cpu():
    cpu = replace(AuditConfig(), device="cpu")
    assert parallel_jobs(cpu, threads=2) == 2
    assert parallel_jobs(cpu, threads=1) == 1
    assert parallel_jobs(replace(cpu, jobs=3), threads=1) == 3


def test_negative_jobs_are_bad_input(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "audit.run", "--jobs", "-1", "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: jobs must be >= 0"
    with pytest.raises(Exception, match="jobs must be >= 0"):
        build_config("quick", {}, {"jobs": -2})


def _audit(cache: Path, out: Path, *args: str) -> dict:
    env = {**os.environ, "DISTILL_AUDIT_CACHE": str(cache)}
    command = [sys.executable, "-m", "audit.run", "--teacher", "neutral", *SMALL, *args]
    result = subprocess.run(
        [*command, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


def _flags(report: dict) -> list[tuple[str, bool]]:
    """Each stage read after the teachers, and whether this run found it computed before."""
    teachers = ("teacher-biased", "teacher-neutral")
    return [(t["stage"], t["cached"]) for t in report["timings"] if t["stage"] not in teachers]


def _results(report: dict) -> dict:
    """The report without its times, its creation stamp and its config (jobs, threads)."""
    results = {k: v for k, v in report.items() if k not in ("created", "timings", "config")}
    results["sanitization"] = [
        {k: v for k, v in row.items() if k != "defence_seconds"} for row in report["sanitization"]
    ]
    return results


@pytest.mark.slow
def test_two_workers_give_the_report_of_one_process(tmp_path):
    cache = tmp_path / "cache"
    parallel = _audit(cache, tmp_path / "parallel", "--jobs", "2", "--threads", "1")
    for stage in (cache / "stages").iterdir():
        if not stage.name.startswith(("teacher-biased", "teacher-neutral")):
            shutil.rmtree(stage) if stage.is_dir() else stage.unlink()
    serial = _audit(cache, tmp_path / "serial", "--jobs", "1", "--threads", "1")
    assert len(parallel["positive_controls"]) == 2
    assert parallel["behaviour"][0]["model_level"] is not None
    assert _results(parallel) == _results(serial)
    assert _flags(parallel) == _flags(serial)
    assert {"student", "teacher-rollouts", "evaluate-ambiguous", "teacher-labels"} <= {
        stage for stage, cached in _flags(parallel) if not cached
    }


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_closes_their_sandboxes(tmp_path):
    require_backend("bwrap")
    args = ["--teacher", "biased", "--profile", "quick", "--jobs", "2"]
    proc = start("audit.run", *args, "--out", str(tmp_path / "out"), root=tmp_path)
    workers = wait_for(proc, lambda: spawned_children(proc.pid), timeout=900)
    sandboxes = lambda: list((tmp_path / "tmp").glob("distill-audit-ws-*"))  # noqa: E731
    wait_for(proc, sandboxes)
    stderr = terminate(proc)
    assert stderr.strip().splitlines()[-1] == TERMINATED_LINE
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []
    assert sandboxes() == []
    assert not (tmp_path / "out" / "report.json").exists()
