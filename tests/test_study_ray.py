"""`python -m audit.study --executor ray` on a local Ray cluster started here: cells really run
as Ray tasks against the `--cache` directory, a second run resumes, the first failed cell stops
the study, SIGTERM cancels the running cells; without Ray, one line saying how to install it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.models.embedded import EMBEDDED_DIR

SMALL = """
[audit]
env = "api"
profile = "quick"
seeds = 1
teacher_demos = 24
teacher_epochs = 2.0
rollouts = 32
student_epochs = 1.0
eval_episodes = 16
positive_controls = false
[axes]
margin = [0.1, 0.2]
"""
"""Two cells that differ only in the gate's margin: the second reuses the first's stages."""


def require_ray() -> None:
    """Skip without Ray, or fail where CI requires it (`DISTILL_AUDIT_REQUIRE_RAY=1`)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("DISTILL_AUDIT_REQUIRE_RAY") == "1":
            pytest.fail("ray required (DISTILL_AUDIT_REQUIRE_RAY=1) but not installed")
        pytest.skip("ray is not installed (pip install 'distill-audit[ray]')")


@pytest.fixture(scope="module")
def cluster():
    """The address of a 2-CPU Ray cluster that lives as long as this module's tests."""
    require_ray()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def study(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`python -m audit.study --quiet args`, started; the stage cache comes from `--cache`."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DISTILL_AUDIT_CACHE",)}
    return subprocess.Popen(
        [sys.executable, "-m", "audit.study", "--quiet", *args],
        env={**environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr


def cell_tasks() -> list[int]:
    """Processes running a cell's Ray task (Ray titles them `ray::cell <id>`)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::cell "):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def test_ray_study_runs_cells_as_tasks_and_resumes(tmp_path, cluster):
    cache, out = tmp_path / "shared-cache", tmp_path / "study"
    args = ["--grid", str(grid(tmp_path, SMALL)), "--out", str(out), "--cache", str(cache)]
    code, stderr = finish(study(*args, "--executor", "ray", "--address", cluster))
    assert code == 0, stderr[-3000:]
    summary = json.loads((out / "study.json").read_text())
    assert summary["totals"]["cells"] == 2 and summary["pending"] == []
    reports = sorted(out.glob("cells/*/report.json"))
    assert len(reports) == 2
    timings = [json.loads(path.read_text())["timings"] for path in reports]
    # Both cells ran the whole audit against --cache, and each stage there was computed by
    # exactly one of the two tasks (the other read it from the shared cache).
    computed = sum(not t["cached"] for cell in timings for t in cell)
    assert computed == len(list(cache.glob("stages/*/done.json"))) > 0
    assert all(len(cell) == len(timings[0]) for cell in timings)
    assert {row["values"]["margin"] for row in summary["rows"]} == {0.1, 0.2}
    assert cell_tasks() == []

    stamps = [path.stat().st_mtime_ns for path in reports]
    again, stderr = finish(study(*args, "--executor", "ray", "--address", cluster))
    assert again == 0, stderr[-3000:]
    assert [path.stat().st_mtime_ns for path in reports] == stamps
    assert json.loads((out / "study.json").read_text())["rows"] == summary["rows"]


def test_ray_study_stops_at_the_first_failed_cell(tmp_path, cluster):
    # Its tokenizer and template pass the config check; its weights are missing, so the cells
    # start and fail when they load it.
    weightless = tmp_path / "no-weights"
    shutil.copytree(EMBEDDED_DIR / "linked-tiny", weightless)
    (weightless / "model.safetensors").unlink()
    text = (
        f'[audit]\nprofile = "quick"\nenv = "api"\nbase = "{weightless}"\n'
        "[axes]\nseeds = [1, 2, 3]\n"
    )
    out = tmp_path / "out"
    code, stderr = finish(
        study(
            "--grid", str(grid(tmp_path, text)), "--out", str(out), "--cache", str(tmp_path),
            "--executor", "ray", "--address", cluster, "--jobs", "2",
        )
    )  # fmt: skip
    assert code == 2, stderr[-3000:]
    line = stderr.strip()
    assert "\n" not in line and line.startswith("error: cell seeds-")
    assert "cannot load" in line
    started = sorted(path.name.split("_")[0] for path in (out / "cells").iterdir())
    assert started == ["seeds-1", "seeds-2"]
    assert not (out / "study.json").exists()


def test_sigterm_cancels_the_running_cell_tasks(tmp_path, cluster):
    out = tmp_path / "study"
    proc = study(
        "--grid", str(grid(tmp_path, SMALL)), "--out", str(out), "--cache", str(tmp_path / "c"),
        "--executor", "ray", "--address", cluster,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(cell_tasks()) < 2:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the cell tasks did not start"
        time.sleep(0.1)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    code, stderr = finish(proc, timeout=180)
    assert code == 143, stderr[-3000:]
    assert stderr.strip() == "terminated: re-run the same command to resume"
    assert cell_tasks() == []
    assert not list(out.glob("cells/*/report.json")) and not (out / "study.json").exists()


def test_without_ray_the_executor_is_refused_with_one_line(tmp_path):
    hidden = tmp_path / "no-ray"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = os.pathsep.join(p for p in (str(hidden), os.environ.get("PYTHONPATH")) if p)
    code, stderr = finish(
        study(
            "--grid", str(grid(tmp_path, SMALL)), "--out", str(tmp_path / "out"),
            "--executor", "ray", env={"PYTHONPATH": path},
        ),
        timeout=120,
    )  # fmt: skip
    assert code == 2
    assert stderr.strip() == "error: --executor ray needs Ray: pip install 'distill-audit[ray]'"
    assert not (tmp_path / "out").exists()
