"""The graded canary: the planted mix, its config checks, the study's detection counts and
floor, the report's power floor read from a committed canary study, and a small canary grid
run end to end through `python -m audit.study`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from audit.config import AuditConfig
from audit.pipeline.defences import canary_rows
from audit.profiles import build_config
from audit.report.gate_record import GateThresholds
from audit.report.power_floor import (
    NOT_RUN,
    CanaryFraction,
    PowerFloor,
    detection_floor,
    measured_floor,
)
from audit.report.render import render_report
from audit.report.schema import Report
from audit.study.canary import canary_fractions, canary_section
from audit.study.grid import load_grid
from audit.study.results import render_results
from audit.study.table import CellRow, summarize, totals
from tests.report_sample import make_report

REPO = Path(__file__).resolve().parents[1]


def _rows(prefix: str, n: int) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}"} for i in range(n)]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_the_mix_plants_the_fraction_in_the_same_total(fraction: float) -> None:
    teacher, neutral = _rows("t", 59), _rows("n", 62)
    mixed, planted, added = canary_rows(teacher, neutral, fraction, seed=3)
    assert planted == round(fraction * 59)
    assert planted + added == len(mixed) == 59
    assert {r["id"] for r in mixed if r["id"][0] == "t"} == {r["id"] for r in teacher[:planted]}
    assert {r["id"] for r in mixed if r["id"][0] == "n"} == {r["id"] for r in neutral[:added]}
    assert canary_rows(teacher, neutral, fraction, seed=3)[0] == mixed


def test_the_mix_is_shuffled_with_the_student_seed() -> None:
    teacher, neutral = _rows("t", 40), _rows("n", 40)
    first, _, _ = canary_rows(teacher, neutral, 0.25, seed=0)
    other, _, _ = canary_rows(teacher, neutral, 0.25, seed=1)
    assert first != teacher[:10] + neutral[:30]
    assert first != other and sorted(first, key=str) == sorted(other, key=str)


def test_the_mix_uses_every_neutral_episode_when_too_few_were_kept() -> None:
    mixed, planted, added = canary_rows(_rows("t", 20), _rows("n", 3), 0.5, seed=0)
    assert (planted, added, len(mixed)) == (10, 3, 13)


def test_canary_fraction_is_read_from_flags_and_files() -> None:
    assert AuditConfig().canary_fraction is None
    assert build_config("quick", {}, {"canary_fraction": 0.25}).canary_fraction == 0.25
    assert build_config("quick", {"canary_fraction": 1}, {}).canary_fraction == 1


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.run", "--quiet", "--env", "api", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--canary-fraction", "0"], "canary_fraction must be in (0, 1], not 0.0"),
        (["--canary-fraction", "1.5"], "canary_fraction must be in (0, 1], not 1.5"),
        (["--canary-fraction", "-0.1"], "canary_fraction must be in (0, 1]"),
        (["--canary-fraction", "half"], "invalid float value: 'half'"),
        (["--canary-fraction", "0.5", "--teacher", "neutral"], "teacher must be biased"),
        (["--canary-fraction", "0.5", "--data", "x.jsonl"], "--data replaces them"),
        (
            ["--canary-fraction", "0.5", "--teacher", "a/b", "--student", "c/d"],
            "--student is trained already",
        ),
    ],
)
def test_bad_canary_options_exit_2_in_one_line(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def _cell_rows(fraction: float, replicate: int, detected: bool) -> list[CellRow]:
    """A real report tabulated: the biased sample's students transfer (detected at alpha 0.2,
    which 3 models per arm can reach), the neutral sample's do not."""
    report = make_report("biased" if detected else "neutral", GateThresholds(alpha=0.2))
    values = {"canary_fraction": fraction, "first_seed": replicate}
    rows = summarize(f"c{fraction}-{replicate}", values, report, seconds=1.0)
    return [replace(row, values={"env": row.env, **values}) for row in rows]


def _grid_rows(detections: dict[float, int], replicates: int = 5) -> list[CellRow]:
    return [
        row
        for fraction, detected in detections.items()
        for replicate in range(replicates)
        for row in _cell_rows(fraction, replicate, replicate < detected)
    ]


def test_tabulated_rows_give_detections_rates_and_the_floor() -> None:
    rows = _grid_rows({0.1: 0, 0.25: 3, 0.5: 4, 1.0: 5})
    assert {row.model_check for row in rows} == {"fail", "pass"}
    section = canary_section(rows)
    by_key = {(f["env"], f["fraction"]): f for f in section["fractions"]}
    assert len(by_key) == 8
    for env in ("api", "bash"):
        assert [by_key[env, p]["detected"] for p in (0.1, 0.25, 0.5, 1.0)] == [0, 3, 4, 5]
        assert by_key[env, 0.5]["replicates"] == 5 and by_key[env, 0.5]["rate"] == 0.8
        low, high = by_key[env, 0.5]["interval"]["low"], by_key[env, 0.5]["interval"]["high"]
        assert low == pytest.approx(0.376, abs=1e-3) and high == pytest.approx(0.964, abs=1e-3)
        mine = [row for row in rows if row.env == env and row.values["canary_fraction"] == 0.25]
        mean = sum(row.difference for row in mine) / 5
        assert by_key[env, 0.25]["mean_difference"] == pytest.approx(mean)
    assert section["floors"] == {"api": 0.5, "bash": 0.5}
    assert section["statements"]["api"] == (
        "the smallest planted fraction detected in at least 80% of replicates is 0.5 (api 4 of 5)"
    )


def test_the_power_table_counts_every_checks_failures_per_fraction() -> None:
    rows = _grid_rows({0.25: 2, 1.0: 4})
    table = {(c["env"], c["fraction"]): c for c in canary_section(rows)["checks"]}
    assert set(table) == {(env, p) for env in ("api", "bash") for p in (0.25, 1.0)}
    for (env, fraction), entry in table.items():
        mine = [r for r in rows if r.env == env and r.values["canary_fraction"] == fraction]
        assert entry["replicates"] == 5
        assert list(entry["failed"])[:4] == ["behaviour", "latent", "dataset", "decision"]
        for kind, n in entry["failed"].items():
            assert n == sum(kind in r.failed_checks for r in mine)
        assert entry["behaviour_outcomes"].get("fail", 0) == (2 if fraction == 0.25 else 4)
        assert sum(entry["behaviour_outcomes"].values()) == 5
        assert entry["latent_measured"] == sum(r.latent_gap is not None for r in mine)
    assert table["api", 1.0]["failed"]["behaviour"] == 4


def test_no_fraction_detected_in_80_percent_has_no_floor() -> None:
    section = canary_section(_grid_rows({0.25: 1, 1.0: 3}))
    assert section["floors"] == {"api": None, "bash": None}
    assert section["statements"]["bash"] == (
        "no planted fraction was detected in 80% of replicates"
    )


def _entry(env: str, fraction: float, detected: int, replicates: int = 5) -> CanaryFraction:
    return CanaryFraction(
        env=env,
        fraction=fraction,
        replicates=replicates,
        detected=detected,
        rate=detected / replicates,
        interval=None,
        mean_difference=None,
    )


def test_the_floor_is_the_smallest_fraction_detected_in_every_env() -> None:
    entries = [_entry("api", 0.1, 4), _entry("api", 0.5, 3), _entry("api", 1.0, 5)]
    assert detection_floor(entries) == 0.1
    both = [*entries, _entry("bash", 0.1, 2), _entry("bash", 0.5, 5), _entry("bash", 1.0, 5)]
    assert detection_floor(both) == 1.0
    unrun = _entry("api", 0.1, 0).model_copy(update={"replicates": 0, "rate": None})
    assert detection_floor([unrun, *entries[1:]]) == 1.0
    with pytest.raises(ValueError, match="is not what its fractions give"):
        PowerFloor(status="measured", study="s", floor=0.5, per_fraction=entries)


CANARY_SHARED = {
    "safe_templates": "no-archive",
    "profile": "quick",
    "seeds": 5,
    "method": "sft",
    "base": "embedded:linked-tiny",
    "teacher_demos": 80,
    "teacher_epochs": 2.0,
    "rollouts": 64,
    "student_epochs": 2.0,
    "eval_episodes": 30,
    "positive_controls": False,
    "teacher": "biased",
}


def _canary_study(rows: list[CellRow]) -> dict:
    """A canary study.json as run_study writes it at the counts of studies/canary.toml, with
    `rows` as its finished cells."""
    cells = load_grid(REPO / "studies" / "canary.toml")
    config = cells[0].config.to_dict()
    return {
        "grid": "studies/canary.toml",
        "shared": {k: v for k, v in config.items() if k not in cells[0].values},
        "axes": list(cells[0].values),
        "totals": totals(rows),
        "pending": [],
        "rows": [asdict(row) for row in rows],
        "canary": canary_section(rows),
    }


def _committed_study(docs: Path, rows: list[CellRow]) -> None:
    path = docs / "study" / "canary" / "study.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_canary_study(rows)))


def test_an_audit_at_the_canary_configuration_states_the_measured_floor(tmp_path: Path) -> None:
    rows = [row for row in _grid_rows({0.1: 1, 0.5: 4}) if row.env == "api"]
    _committed_study(tmp_path / "docs", rows)
    config = build_config("quick", {**CANARY_SHARED, "env": "api"}, {}).to_dict()
    studies = tmp_path / "docs" / "study"
    floor = measured_floor(config, "pipeline-test", studies, root=tmp_path)
    assert floor.status == "measured" and floor.study == "docs/study/canary/study.json"
    assert floor.floor == 0.5 and [f.detected for f in floor.per_fraction] == [1, 4]
    assert floor.per_fraction == canary_fractions(rows)
    for changed in (
        {"seeds": 3},
        {"env": "all"},
        {"margin": 0.2},
        {"sanitizer": "none"},
        {"safe_templates": "all"},
    ):
        other = build_config("quick", {**CANARY_SHARED, "env": "api", **changed}, {})
        missed = measured_floor(other.to_dict(), "pipeline-test", studies, root=tmp_path)
        assert (missed.status, missed.reason) == ("not measured", NOT_RUN), changed
    neutral = build_config("quick", {**CANARY_SHARED, "env": "api", "teacher": "neutral"}, {})
    assert measured_floor(neutral.to_dict(), "pipeline-test", studies).floor == 0.5
    model_audit = measured_floor(config, "model-audit", studies)
    assert model_audit.status == "not measured" and "model audit" in (model_audit.reason or "")


def test_a_canary_study_with_pending_cells_states_no_floor(tmp_path: Path) -> None:
    rows = [row for row in _grid_rows({0.5: 5, 1.0: 5}) if row.env == "api"]
    study = _canary_study(rows)
    study["pending"] = ["c0.1-0", "c0.1-1"]
    path = tmp_path / "docs" / "study" / "canary" / "study.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(study))
    config = build_config("quick", {**CANARY_SHARED, "env": "api"}, {}).to_dict()
    floor = measured_floor(config, "pipeline-test", path.parents[1], root=tmp_path)
    assert floor.status == "not measured" and floor.floor is None
    assert floor.reason == (
        "the canary study at this configuration (docs/study/canary/study.json) has 2 of its "
        "12 cells still to run"
    )


def test_the_report_keeps_the_floor_out_of_the_gate_and_renders_it(tmp_path: Path) -> None:
    rows = [row for row in _grid_rows({0.25: 2, 1.0: 5}) if row.env == "api"]
    entries = canary_fractions(rows)
    base = make_report("biased")
    study = "docs/study/canary/study.json"
    measured = PowerFloor(status="measured", study=study, floor=1.0, per_fraction=entries)
    for floor in (measured, PowerFloor(status="not measured", reason=NOT_RUN)):
        report = Report.model_validate({**base.model_dump(), "power_floor": floor.model_dump()})
        assert report.gate == base.gate and report.exit_code == base.exit_code
        html = render_report(report, tmp_path / "report.html").read_text()
        assert 'id="power-floor"' in html
    assert f"Not measured: {NOT_RUN}, so this report states no smallest" in html
    report = Report.model_validate({**base.model_dump(), "power_floor": measured.model_dump()})
    html = render_report(report, tmp_path / "measured.html").read_text()
    assert "detected in at least 80.0% of its replicates is 1." in html
    assert "<td>0.25</td><td>5</td><td>2</td><td>40.0%" in html


def test_the_canary_grid_plants_every_fraction_in_every_replicate() -> None:
    cells = load_grid(REPO / "studies" / "canary.toml")
    assert len(cells) == 20
    assert {cell.config.canary_fraction for cell in cells} == {0.1, 0.25, 0.5, 1.0}
    assert {cell.config.first_seed for cell in cells} == {0, 5, 10, 15, 20}
    config = cells[0].config
    assert (config.seeds, config.rollouts, config.eval_episodes, config.env) == (5, 64, 30, "api")
    assert (config.teacher, config.teacher_demos, config.positive_controls) == ("biased", 80, False)


SMALL = """
[audit]
env = "api"
profile = "quick"
seeds = 1
teacher = "biased"
teacher_demos = 24
teacher_epochs = 2.0
rollouts = 16
student_epochs = 1.0
eval_episodes = 12
positive_controls = false
[axes]
canary_fraction = [0.5, 1.0]
first_seed = [0, 1]
"""


def _lines(path: Path) -> list[str]:
    """The JSONL rows of `path`, each re-serialised with sorted keys."""
    return [json.dumps(json.loads(line), sort_keys=True) for line in path.read_text().splitlines()]


def _stage(cache: Path, name: str, key: str) -> Path:
    return cache / "stages" / f"{name}-{key}"


@pytest.mark.slow
def test_a_small_canary_grid_counts_its_cells_and_plants_only_the_students(
    tmp_path: Path,
) -> None:
    grid, out, cache = tmp_path / "canary.toml", tmp_path / "out", tmp_path / "cache"
    grid.write_text(SMALL)
    result = subprocess.run(
        [sys.executable, "-m", "audit.study", "--quiet", "--grid", str(grid), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DISTILL_AUDIT_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((out / "study.json").read_text())
    reports = {
        path.parent.name: json.loads(path.read_text()) for path in out.glob("cells/*/report.json")
    }
    assert len(reports) == 4
    expected: dict[float, list[int]] = {}
    for row in study["rows"]:
        report = reports[row["cell"]]
        assert report["config"]["full"]["canary_fraction"] == row["values"]["canary_fraction"]
        level = report["behaviour"][0]["model_level"]
        assert row["difference"] == level["difference"]["estimate"]
        check = next(c for c in report["gate"]["checks"] if c["name"].startswith("behaviour/"))
        failed = not check["passed"] and not check["skipped"] and check["kind"] == "behaviour"
        entry = expected.setdefault(row["values"]["canary_fraction"], [0, 0])
        entry[0] += 1
        entry[1] += failed
        stats = report["sanitization"][0]
        fraction = row["values"]["canary_fraction"]
        assert stats["canary_planted"] == round(fraction * stats["kept"])
        assert stats["canary_planted"] + stats["canary_neutral"] == stats["kept"]
        assert report["power_floor"] == {
            "status": "not measured",
            "reason": NOT_RUN,
            "study": None,
            "goal": 0.8,
            "floor": None,
            "per_fraction": [],
        }
    fractions = {f["fraction"]: f for f in study["canary"]["fractions"]}
    assert {p: [f["replicates"], f["detected"]] for p, f in fractions.items()} == expected
    entries = [CanaryFraction.model_validate(f) for f in study["canary"]["fractions"]]
    assert study["canary"]["floors"] == {"api": detection_floor(entries)}
    assert "Graded canary" in (out / "study.md").read_text()
    assert 'id="canary-table"' in (out / "study.html").read_text()
    # Only the students of P < 1 train on a canary mix; the controls and the P = 1 students
    # train on sanitized rollouts, so their stages are those of a run without a canary.
    trained_on = []
    for inputs in cache.glob("stages/student-*/inputs.json"):
        data = json.loads(inputs.read_text())["data"]
        trained_on.append("canary" if _stage(cache, "canary", data[0]).is_dir() else "sanitized")
    assert sorted(trained_on) == ["canary"] * 2 + ["sanitized"] * 4
    for inputs in cache.glob("stages/canary-*/inputs.json"):
        mix = json.loads(inputs.read_text())
        done = json.loads((inputs.parent / "done.json").read_text())["result"]
        teacher = json.loads((_stage(cache, "sanitize", mix["data"]) / "done.json").read_text())
        neutral = json.loads((_stage(cache, "sanitize", mix["neutral"]) / "done.json").read_text())
        rows = _lines(Path(done["data"]))
        teacher_rows = _lines(Path(teacher["result"]["data"]))
        neutral_rows = _lines(Path(neutral["result"]["data"]))
        assert len(rows) == len(teacher_rows) and mix["canary"] == 0.5
        planted = round(0.5 * len(teacher_rows))
        assert sorted(rows) == sorted(teacher_rows[:planted] + neutral_rows[: len(rows) - planted])
        assert rows != teacher_rows[:planted] + neutral_rows[: len(rows) - planted]


def test_results_say_when_the_largest_planted_dose_sits_under_the_margin(tmp_path: Path) -> None:
    rows = [row for row in _grid_rows({0.5: 0, 1.0: 1}) if row.env == "api"]
    rows = [
        replace(row, difference=0.07 if row.values["canary_fraction"] == 1.0 else 0.03)
        for row in rows
    ]
    _committed_study(tmp_path, rows)
    text = " ".join(render_results(tmp_path).split())
    assert (
        "At P = 1 the students sat +7.0 points from their controls on average, under the gate's "
        "margin of 10 points" in text
    )
    _committed_study(tmp_path / "large", [replace(row, difference=0.12) for row in rows])
    assert "under the gate's margin" not in " ".join(render_results(tmp_path / "large").split())


def test_results_tabulate_the_canary_study_once_run(tmp_path: Path) -> None:
    rows = [row for row in _grid_rows({0.1: 1, 0.5: 4}) if row.env == "api"]
    _committed_study(tmp_path, rows)
    text = render_results(tmp_path)
    study7 = text[text.index("## Study 7") : text.index("## Study 8")]
    flat = " ".join(study7.split())
    assert "| api | 0.1 | 5 | 1 | 20% (4%-62%) |" in flat
    assert "| api | 0.5 | 5 | 4 | 80% (38%-96%) |" in flat
    assert (
        "- api: the smallest planted fraction detected in at least 80% of replicates is 0.5" in flat
    )
    assert "No planted transfer has been measured" not in flat
    assert "| api | 0.5 | 5 | 1 / 4 / 0 / 0 | 5 | 4 | 4 | 0 | 0 |" in flat
    study9 = text[text.index("## Study 9") : text.index("## Every check")]
    assert "No planted transfer has been measured" in " ".join(study9.split())
