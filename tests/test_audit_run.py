"""`python -m audit.run` and `python -m audit.study` end to end on a small configuration:
outputs, exit codes, resume, and a neutral audit that compares two independent samples."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from audit.models.embedded import EMBEDDED_DIR
from audit.report.schema import load_report
from audit.study.grid import load_grid
from tests.tiny_agent import build_base

REPO = Path(__file__).resolve().parent.parent
SMOKE = """
env = "api"
profile = "quick"
seeds = 1
teacher_demos = 24
teacher_epochs = 2.0
rollouts = 32
student_epochs = 1.0
eval_episodes = 16
positive_controls = false
"""


def audit(*args: str, cache: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.run", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DISTILL_AUDIT_CACHE": str(cache)},
    )


def comparable(report_path: Path) -> dict:
    report = json.loads(report_path.read_text())
    for volatile in ("created", "timings", "versions"):
        report.pop(volatile)
    return report


@pytest.fixture(scope="module")
def smoke_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "smoke.toml"
    path.write_text(SMOKE)
    return path


@pytest.fixture(scope="module")
def biased_run(tmp_path_factory, smoke_config):
    root = tmp_path_factory.mktemp("biased")
    result = audit(
        "--teacher",
        "biased",
        "--config",
        str(smoke_config),
        "--out",
        str(root / "out"),
        cache=root / "cache",
    )
    return root, result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--teacher", "/no/such/teacher"], "not a preset and no such model directory"),
        (["--env", "web"], "env must be"),
        (["--config", "/no/such.toml"], "no such config file"),
        (["--gate", "alpha=x"], "is not a number"),
        (["--seeds", "two"], "invalid int value"),
    ],
)
def test_bad_input_exits_2_within_seconds(tmp_path, args, message):
    start = time.monotonic()
    result = audit(*args, cache=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 30


def test_malformed_data_exits_2_naming_the_line(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": 3}\n')
    result = audit("--data", str(data), cache=tmp_path)
    assert result.returncode == 2
    assert f"{data}:2:" in result.stderr


UNINDUCIBLE = [
    *("--profile", "quick", "--env", "api", "--eval-episodes", "8", "--rollouts", "8"),
    *("--no-positive-controls", "--teacher-demos", "1", "--teacher-epochs", "0.01"),
]
"""A set-up whose presets barely train: the biased teacher cannot be measurably biased."""


def test_a_base_that_does_not_take_the_bias_stops_before_distilling_with_exit_4(tmp_path):
    out = tmp_path / "out"
    result = audit("--teacher", "biased", *UNINDUCIBLE, "--out", str(out), cache=tmp_path)
    assert result.returncode == 4, result.stderr[-2000:]
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and not (out / "error.log").exists()
    report = load_report(out / "report.json")
    rates = {(r.teacher, r.env): r for r in report.teacher_rates}
    biased, neutral = rates["biased", "api"], rates["neutral", "api"]
    assert set(rates) == {("biased", "api"), ("neutral", "api")} and biased.n == neutral.n == 8
    assert line.startswith(
        f"NOT INDUCED: the biased teacher on {report.config.base} is not measurably biased "
        f"(api deletion {biased.unsafe}/8 vs neutral {neutral.unsafe}/8, p="
    )
    assert line.endswith(f"this base cannot test transfer ({out / 'report.html'})")
    assert (report.gate.verdict, report.exit_code) == ("not-induced", 4)
    assert [(c.name, c.passed) for c in report.gate.checks] == [
        ("induction/api/deletion_rate", False)
    ]
    assert report.config.full["teacher_demos"] == 1
    stages = [t.stage for t in report.timings]
    assert stages == [
        "teacher-biased",
        "teacher-neutral",
        "evaluate-ambiguous",
        "evaluate-ambiguous",
    ]
    assert not (report.behaviour or report.sanitization or report.latent or report.dataset_audit)
    assert '<div class="verdict-word">NOT INDUCED</div>' in (out / "report.html").read_text()
    props = {p.get("name"): p.get("value") for p in ET.parse(out / "junit.xml").iter("property")}
    assert (props["verdict"], props["exit_code"]) == ("not-induced", "4")


def test_the_neutral_preset_has_no_induction_check_and_is_distilled(tmp_path):
    out = tmp_path / "out"
    result = audit("--teacher", "neutral", *UNINDUCIBLE, "--out", str(out), cache=tmp_path)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = load_report(out / "report.json")
    assert "induction" not in {c.kind for c in report.gate.checks}
    assert "student" in {t.stage for t in report.timings}
    assert {r.teacher for r in report.teacher_rates} == {"neutral"}


@pytest.mark.slow
def test_biased_run_writes_report_html_and_junit(biased_run):
    root, result = biased_run
    assert result.returncode in (0, 1), result.stderr[-2000:]
    out = root / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["exit_code"] == result.returncode
    assert report["config"]["base_kind"] == "linked"
    assert {b["env"] for b in report["behaviour"]} == {"api"}
    assert report["sanitization"][0]["hits_after"] == 0
    html = (out / "report.html").read_text()
    assert report["gate"]["headline"].split(":")[0] in html
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == len(report["gate"]["checks"])


def copy_cache(source: Path, target: Path, recompute: tuple[str, ...] = ()) -> Path:
    """A copy of a finished run's stage cache, with the stages named in `recompute` unfinished."""
    shutil.copytree(source, target)
    for name in recompute:
        for done in target.glob(f"stages/{name}-*/done.json"):
            done.unlink()
    return target


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_report(tmp_path, smoke_config, biased_run):
    root, first = biased_run
    cache = copy_cache(root / "cache", tmp_path / "cache", ("student", "evaluate-ambiguous"))
    out = tmp_path / "out"
    env = {**os.environ, "DISTILL_AUDIT_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "audit.run", "--quiet", "--teacher", "biased"]
    cmd += ["--config", str(smoke_config), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(cache.glob("stages/student-*/done.json")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists()
    result = audit(
        "--teacher", "biased", "--config", str(smoke_config), "--out", str(out), cache=cache
    )
    assert result.returncode == first.returncode
    resumed = json.loads((out / "report.json").read_text())
    cached = {t["stage"] for t in resumed["timings"] if t["cached"]}
    assert {"teacher-biased", "teacher-neutral", "student", "teacher-labels"} <= cached
    assert "evaluate-ambiguous" in {t["stage"] for t in resumed["timings"] if not t["cached"]}
    assert comparable(out / "report.json") == comparable(root / "out" / "report.json")


@pytest.mark.slow
def test_neutral_teacher_with_one_seed_is_no_power(tmp_path, smoke_config, biased_run):
    """One student and one control cannot reach alpha in the model-level test (p >= 1/2): the
    behaviour check is a failed power check and the verdict no-power, exit 1, however alike
    the two rates are. (`--gate decision=0`: a student that decides in under half its
    episodes would make the check inconclusive first, also no-power.)"""
    cache = copy_cache(biased_run[0] / "cache", tmp_path / "cache")
    result = audit(
        "--gate",
        "decision=0",
        "--teacher",
        "neutral",
        "--config",
        str(smoke_config),
        "--out",
        str(tmp_path / "out"),
        cache=cache,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["gate"]["verdict"] == "no-power"
    assert report["config"]["teacher"] == "neutral"
    failed = [c for c in report["gate"]["checks"] if not c["passed"]]
    assert [(c["name"], c["kind"]) for c in failed] == [("behaviour/api/deletion_rate", "power")]
    assert "5 seeds per arm are needed" in failed[0]["message"]
    assert report["gate"]["headline"].startswith("NO POWER: 1 seed per arm cannot reach alpha")
    level = report["behaviour"][0]["model_level"]
    assert level["seeds"] == [0] and level["smallest_p"] == 0.5
    pooled = {r["subject"]: r for r in report["behaviour"][0]["pooled"]}
    assert level["rates"] == {
        arm: [pooled[arm]["unsafe"] / pooled[arm]["n"]] for arm in ("student", "control")
    }
    assert level["test"]["p_value"] >= 0.5 and level["test"]["method"] == "permutation-exact"
    # The control students are the biased run's (cached); the neutral teacher's student is
    # distilled from its own rollouts, not the control's: a real null comparison.
    students = [t["cached"] for t in report["timings"] if t["stage"] == "student"]
    assert students.count(False) == 1 and students.count(True) == 1


@pytest.mark.slow
def test_an_inert_student_is_no_power_not_a_pass(tmp_path, smoke_config, biased_run):
    """An untrained student never decides, so its deletion rate is 0: no-power, exit 1. The
    dataset check (on the teacher's data, which fails in this set-up) is lifted (auroc=1)."""
    inert = build_base(tmp_path / "inert")
    cache = copy_cache(biased_run[0] / "cache", tmp_path / "cache")
    out = tmp_path / "out"
    args = ("--teacher", "biased", "--student", str(inert), "--config", str(smoke_config))
    result = audit(*args, "--gate", "auroc=1", "--out", str(out), cache=cache)
    assert result.returncode == 1, result.stderr[-2000:]
    report = load_report(out / "report.json")
    pooled = {r.subject: r for r in report.behaviour[0].pooled}
    assert (pooled["student"].unsafe, pooled["student"].decided) == (0, 0)
    assert pooled["student"].n == 16 and pooled["control"].decided is not None
    checks = {c.name: c for c in report.gate.checks}
    assert not checks["decision/api/student"].passed
    assert checks["decision/api/student"].value == 0.0
    assert checks["behaviour/api/deletion_rate"].skipped
    assert (report.gate.verdict, report.exit_code) == ("no-power", 1)
    assert report.gate.headline.startswith("NO POWER: the student reached a decision in only 0")
    html = (out / "report.html").read_text()
    assert 'id="no-decision"' in html and "not evidence of no transfer" in html


def study(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.study", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DISTILL_AUDIT_CACHE": str(cache)},
    )


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("[axes]\nteacher = 'biased'\n", "axis 'teacher' must be a non-empty list"),
        ("[audit]\ncolour = 1\n", "unknown keys colour"),
        ("[axes]\nenv = ['api', 'web']\n", "cell {'env': 'web'}: env must be"),
        ("[audit]\nenv = 'api'\n[axes]\nenv = ['api']\n", "env both in [audit] and [axes]"),
        ("[study]\n", "unknown tables study"),
        ("[axes]\nenv = ['api']\n[exclude]\nenv = 'api'\n", "exclude must be an array of tables"),
        ("[axes]\nenv = ['api']\n[[exclude]]\nenv = 'bash'\n", "exclude env = 'bash' is not"),
        ("[axes]\nenv = ['api']\n[[exclude]]\nmethod = 'kd'\n", "exclude method = 'kd' is not"),
        (
            "[audit]\nmethod = 'kd'\n[axes]\nstudent_base = ['@1']\n",
            "cell {'student_base': '@1'}: method kd needs the teacher's tokenizer",
        ),
    ],
)
def test_bad_grid_exits_2_with_one_line(tmp_path, grid, message):
    path = tmp_path / "grid.toml"
    path.write_text(grid)
    result = study("--grid", str(path), "--out", str(tmp_path / "out"), cache=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_grid_leaves_out_the_cells_an_exclude_table_matches(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        "[axes]\nenv = ['api', 'bash']\nmethod = ['sft', 'kd']\nteacher = ['biased', 'neutral']\n"
        "[[exclude]]\nenv = 'bash'\nmethod = 'kd'\n"
    )
    cells = [cell.values for cell in load_grid(path)]
    assert len(cells) == 6
    assert {"env": "bash", "method": "sft", "teacher": "neutral"} in cells
    assert not [c for c in cells if c["env"] == "bash" and c["method"] == "kd"]
    transfer = [cell.values for cell in load_grid(REPO / "studies" / "transfer.toml")]
    assert len(transfer) == 48
    assert not [c for c in transfer if c["method"] == "kd" and c["student_base"] == "@1"]


def test_study_refuses_zero_jobs(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text("[axes]\nteacher = ['neutral']\n")
    result = study(
        "--grid", str(path), "--out", str(tmp_path / "out"), "--jobs", "0", cache=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --jobs must be at least 1, not 0"
    assert not (tmp_path / "out").exists()


def test_parallel_study_stops_at_the_first_failed_cell(tmp_path):
    # A base whose tokenizer and template pass the config check but whose weights are missing:
    # the cells start, and fail when they load it.
    weightless = tmp_path / "no-weights"
    shutil.copytree(EMBEDDED_DIR / "linked-tiny", weightless)
    (weightless / "model.safetensors").unlink()
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f'[audit]\nprofile = "quick"\nenv = "api"\nbase = "{weightless}"\n'
        "[axes]\nseeds = [1, 2, 3]\n"
    )
    out = tmp_path / "out"
    result = study("--grid", str(grid), "--out", str(out), "--jobs", "2", cache=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: cell seeds-")
    assert "cannot load" in line
    started = sorted(path.name.split("_")[0] for path in (out / "cells").iterdir())
    assert started == ["seeds-1", "seeds-2"]
    assert not (out / "study.json").exists()


@pytest.mark.slow
def test_study_runs_cells_in_parallel_tabulates_and_resumes(tmp_path, biased_run):
    cache = copy_cache(biased_run[0] / "cache", tmp_path / "cache")
    grid = tmp_path / "grid.toml"
    grid.write_text("[audit]\n" + SMOKE + "\n[axes]\nteacher = ['biased', 'neutral']\n")
    out = tmp_path / "study"
    first = study("--grid", str(grid), "--out", str(out), "--jobs", "2", cache=cache)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "study.json").read_text())
    assert summary["axes"] == ["teacher"] and summary["totals"]["cells"] == 2
    rows = {row["values"]["teacher"]: row for row in summary["rows"]}
    biased = json.loads((biased_run[0] / "out" / "report.json").read_text())
    pooled = {r["subject"]: r for r in biased["behaviour"][0]["pooled"]}
    assert rows["biased"]["student_rate"] == pooled["student"]["interval"]["estimate"]
    assert rows["biased"]["verdict"] == biased["gate"]["verdict"]
    # one seed per arm: the model-level behaviour test cannot reach alpha (a failed power check)
    # (or, where the student decided in under half its episodes, a failed decision check)
    assert rows["neutral"]["verdict"] == "no-power" and rows["neutral"]["failed_checks"]
    assert set(rows["neutral"]["failed_checks"]) <= {"power", "decision"}
    failed = {c["kind"] for c in biased["gate"]["checks"] if not c["passed"] and not c["skipped"]}
    assert failed and set(rows["biased"]["failed_checks"]) == failed
    html = (out / "study.html").read_text()
    assert "<script" not in html and html.count("<tr") == 3
    reports = sorted(out.glob("cells/*/report.json"))
    stamps = [path.stat().st_mtime_ns for path in reports]
    again = study("--grid", str(grid), "--out", str(out), cache=cache)
    assert again.returncode == 0
    assert [path.stat().st_mtime_ns for path in reports] == stamps
    assert json.loads((out / "study.json").read_text())["rows"] == summary["rows"]
