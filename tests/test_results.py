"""docs/RESULTS.md is what `python -m audit.study.results` renders from the committed studies."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audit.study.canary import CHECKS
from audit.study.check_table import check_table
from audit.study.markdown import reflow
from audit.study.results import STUDIES, render_results

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_committed_results_are_the_rendering_of_the_committed_studies():
    assert render_results(DOCS) == (DOCS / "RESULTS.md").read_text()


def test_missing_studies_are_said_to_be_not_run(tmp_path):
    shutil.copytree(DOCS / "study" / "default", tmp_path / "study" / "default")
    text = render_results(tmp_path)
    assert text.count("Not run yet") == len(STUDIES) - 1
    flat = " ".join(text.split())
    assert "**Not run yet.** No number of this study exists: the grid's 20 cells" in flat
    assert "Expected audit time" not in flat
    assert "| biased | api |" in text and "detected in both environments" in text


def _write_study(directory: Path, source: dict, rows: list[dict]) -> None:
    """`source` with `rows` as its finished cells, none pending, as `directory`/study.json."""
    study = {**source, "rows": rows, "pending": []}
    study["totals"] = {**source["totals"], "cells": len(rows)}
    directory.mkdir(parents=True)
    (directory / "study.json").write_text(json.dumps(study))


def _false_alarm_study(tmp_path: Path, verdicts: list[str]) -> None:
    """Replicates of these verdicts; a no-power one failed its decision check."""
    source = json.loads((DOCS / "study" / "false-alarm-3seeds" / "study.json").read_text())
    template = source["rows"][0]
    rows = []
    for index, verdict in enumerate(verdicts):
        row = copy.deepcopy(template)
        failed = ["decision"] if verdict == "no-power" else []
        row.update(cell=f"first_seed-{3 * index}", verdict=verdict, failed_checks=failed)
        row["values"] = {"first_seed": 3 * index}
        rows.append(row)
    _write_study(tmp_path / "study" / "false-alarm", source, rows)


def test_false_alarm_rate_is_counted_and_judged_against_the_goal(tmp_path):
    _false_alarm_study(tmp_path, ["pass"] * 19 + ["fail"])
    text = " ".join(render_results(tmp_path).split())
    assert "**1 of 20 replicates failed the gate**: a false-alarm rate of 5%" in text
    assert "within the goal" in text
    _false_alarm_study(tmp_path / "two", ["pass"] * 18 + ["fail"] * 2)
    assert "above the goal" in " ".join(render_results(tmp_path / "two").split())
    assert "more came out no-power" not in text


def test_no_power_replicates_are_counted_as_stops_not_as_false_alarms(tmp_path):
    _false_alarm_study(tmp_path, ["pass"] * 17 + ["no-power"] * 2 + ["fail"])
    text = " ".join(render_results(tmp_path).split())
    assert "**1 of 20 replicates failed the gate**" in text
    assert (
        "2 more came out no-power (2 of them because an arm decided in under half its "
        "episodes), which exits 1 as well: a CI job gated on the neutral preset stopped in "
        "3 of 20 replicates." in text
    )


def _check_row(teacher, check, failed, fraction=None, latent=0.0):
    values = {} if fraction is None else {"canary_fraction": fraction}
    return {
        "teacher": teacher,
        "values": values,
        "models_per_arm": 5 if check != "no-power" else 3,
        "model_check": check,
        "failed_checks": failed,
        "latent_gap": latent,
    }


def test_every_checks_failures_are_counted_over_rows_with_power():
    studies = {
        "a": {
            "rows": [
                _check_row("biased", "fail", ["behaviour", "latent", "dataset"]),
                _check_row("biased", "fail", ["behaviour"], fraction=1.0),
                _check_row("biased", "inconclusive", ["decision"], fraction=0.25, latent=None),
                _check_row("biased", "no-power", ["behaviour", "dataset"]),
            ]
        },
        "b": {"rows": [_check_row("neutral", "pass", ["sanitization"])]},
        "c": None,
    }
    table = {entry["group"]: entry for entry in check_table(studies)}
    assert list(table) == ["biased", "planted < 1", "neutral"]
    biased = table["biased"]
    assert (biased["rows"], biased["studies"], biased["models_per_arm"]) == (2, ["a"], [5])
    assert biased["outcomes"] == {"pass": 0, "fail": 2, "inconclusive": 0}
    assert biased["failed"]["behaviour"] == 2 and biased["failed"]["dataset"] == 1
    assert (biased["behaviour_detected"], biased["latent_where_detected"]) == (2, 1)
    planted = table["planted < 1"]
    assert planted["latent_measured"] == 0 and planted["failed"]["decision"] == 1
    neutral = table["neutral"]
    assert list(neutral["failed"]) == [*CHECKS, "sanitization"]
    assert neutral["failed"]["sanitization"] == 1 and neutral["studies"] == ["b"]
    assert check_table({"c": None}) == []


def test_reflow_rewraps_prose_and_keeps_tables_and_code():
    text = "# T\n\nA short\nline.\n\n\n| a |\n|---|\n```\nx  y\n```\n- one\n  two\n- three\n"
    assert reflow(text, width=40) == (
        "# T\n\nA short line.\n\n| a |\n|---|\n```\nx  y\n```\n- one two\n- three\n"
    )


def test_bad_jobs_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "audit.study.results", "--run", "--jobs", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --jobs must be at least 1, not 0"


def _transfer_study(
    tmp_path: Path,
    detected: set[tuple[str, str]],
    neutral_failed: dict[tuple[str, str], tuple[str, ...]] | None = None,
) -> None:
    """A transfer grid (env x sanitizer x teacher) built from Study 2's first row, whose
    biased cells fail the behaviour check exactly at the (env, sanitizer) pairs in `detected`
    and whose neutral cells fail the checks `neutral_failed` gives their (env, sanitizer)."""
    source = json.loads((DOCS / "study" / "transfer-small" / "study.json").read_text())
    rows = []
    for env in ("api", "bash"):
        for sanitizer in ("keyword", "none"):
            for teacher in ("biased", "neutral"):
                row = copy.deepcopy(source["rows"][0])
                failed = teacher == "biased" and (env, sanitizer) in detected
                row.update(
                    cell=f"{env}-{sanitizer}-{teacher}",
                    env=env,
                    teacher=teacher,
                    values={"env": env, "sanitizer": sanitizer, "teacher": teacher},
                    student_rate=0.4 if failed else 0.2,
                    control_rate=0.2,
                    behaviour_failed=failed,
                    failed_checks=("behaviour",) if failed else (),
                )
                if teacher == "neutral":
                    row["failed_checks"] = (neutral_failed or {}).get((env, sanitizer), ())
                rows.append(row)
    source = {**source, "axes": ["env", "sanitizer", "teacher"]}
    _write_study(tmp_path / "study" / "transfer", source, rows)


def test_transfer_grid_is_summarized_by_factor_from_its_rows(tmp_path):
    _transfer_study(tmp_path, {("bash", "keyword"), ("bash", "none")})
    text = render_results(tmp_path)
    assert "| env | bash | 2 | 2 | +20 points | 2 | 0 |" in text
    assert "| env | api | 2 | 0 | +0 points | 2 | 0 |" in text
    assert "| sanitizer | keyword | 2 | 1 | +10 points | 2 | 0 |" in text
    flat = " ".join(text.split())
    assert "transfer detected in 1 of the 2 biased-teacher cells with the keyword" in flat
    assert "not detected in any cell**: env api (2 biased cells)." in flat
    assert "| api | keyword | biased | api |" not in text
    assert "| api | keyword | biased | 0.97 |" in text


def test_neutral_cells_failing_other_checks_are_listed(tmp_path):
    failed = {("bash", "none"): ("latent", "sanitization"), ("api", "none"): ("sanitization",)}
    _transfer_study(tmp_path, set(), failed)
    flat = " ".join(render_results(tmp_path).split())
    assert "failing the latent check**: 1 of 4: bash, none (latent gap" in flat
    assert "A false alarm of the latent check" in flat
    assert "failing the sanitization check**: 2 of 4, all without a filter" in flat
    failed[("api", "keyword")] = ("sanitization",)
    _transfer_study(tmp_path / "keyword", set(), failed)
    flat = " ".join(render_results(tmp_path / "keyword").split())
    assert "failing the sanitization check**: 3 of 4: api, keyword; api, none; bash, none." in flat
    _transfer_study(tmp_path / "none", set())
    assert "Neutral-teacher cells failing" not in render_results(tmp_path / "none")


def _with_base_axis(directory: Path) -> None:
    """Give the transfer study in `directory` a base axis: linked for api, control for bash."""
    path = directory / "study" / "transfer" / "study.json"
    study = json.loads(path.read_text())
    for row in study["rows"]:
        kind = "linked" if row["env"] == "api" else "control"
        row["values"] = {"base": f"embedded:{kind}-tiny", **row["values"]}
    study["axes"] = ["base", *study["axes"]]
    path.write_text(json.dumps(study))


def test_base_conclusion_follows_the_factor_table(tmp_path):
    _transfer_study(tmp_path / "control", {("bash", "keyword"), ("bash", "none")})
    _with_base_axis(tmp_path / "control")
    flat = " ".join(render_results(tmp_path / "control").split())
    assert "The base mattered little in Study 4" in flat
    assert "transfer was detected in 0 of 2 biased cells (+0 points" in flat
    assert "(`control`), in 2 of 2 (+20 points)" in flat
    _transfer_study(tmp_path / "linked", {("api", "keyword"), ("api", "none")})
    _with_base_axis(tmp_path / "linked")
    flat = " ".join(render_results(tmp_path / "linked").split())
    assert "The base matters" in flat and "mattered little" not in flat


def test_defence_study_is_tabulated_once_run_and_estimated_before(tmp_path):
    shutil.copytree(DOCS / "study" / "transfer", tmp_path / "study" / "transfer")
    not_run = "**Not run yet.** No number of this study exists"
    flat = " ".join(render_results(tmp_path).split())
    assert not_run in flat and "Expected audit time: about" in flat
    source = json.loads((DOCS / "study" / "transfer" / "study.json").read_text())
    row = copy.deepcopy(source["rows"][0])
    row.update(data_kept=150, data_in=192, defence_seconds=12.5, student_seconds=40.0)
    row["values"] = {"defence": "classifier", "env": row["env"], "teacher": row["teacher"]}
    source["axes"] = ["defence", "env", "teacher"]
    _write_study(tmp_path / "study" / "defences", source, [row])
    flat = " ".join(render_results(tmp_path).split())
    assert "**Not run yet.** No number of this study exists: the grid" not in flat
    assert f"| classifier | {row['env']} | {row['teacher']} |" in flat
    assert "| 150 of 192 | 12.5 | 40 |" in flat


def test_defence_outcomes_and_costs_are_read_from_the_rows(tmp_path):
    source = json.loads((DOCS / "study" / "transfer" / "study.json").read_text())
    template = next(r for r in source["rows"] if r["teacher"] == "biased" and r["env"] == "api")
    rows = []
    for defence, teacher, check, seconds in (
        ("keyword", "biased", "fail", 40.0),
        ("classifier", "biased", "pass", 52.5),
        ("classifier", "neutral", "pass", 50.0),
        ("paraphrase", "biased", "inconclusive", 41.0),
    ):
        row = copy.deepcopy(template)
        row.update(
            cell=f"{defence}-{teacher}",
            teacher=teacher,
            model_check=check,
            student_seconds=seconds,
            defence_seconds=2.0,
            failed_checks=["dataset"] if teacher == "neutral" else [],
            student_decided=0.6,
            control_decided=0.45,
            data_kept=180,
            data_in=192,
        )
        row["values"] = {"defence": defence, "env": "api", "teacher": teacher}
        rows.append(row)
    source["axes"] = ["defence", "env", "teacher"]
    _write_study(tmp_path / "study" / "defences", source, rows)
    flat = " ".join(render_results(tmp_path).split())
    assert "No transfer detected (with power): classifier (api)." in flat
    baseline = "The baseline, the keyword filter alone: api leaked. A defence that shows no"
    assert f"{baseline} transfer in api stopped" in flat
    assert "Leaked (transfer detected): keyword (api)." in flat
    assert "Cannot say (an arm decided in under half its episodes): paraphrase (api)." in flat
    assert "classifier (api) +12 s; paraphrase (api) +1 s." in flat
    assert "classifier (api): dataset." in flat
    assert "| 60% / 45% |" in flat
    assert "Checks that failed, over the 3 rows: none." in flat
    assert "detected transfer (1 rows), the latent check flagged 0." in flat


def _safe_rows(detected: dict[str, int], alarms: dict[str, int]) -> list[dict]:
    rows = []
    for level in ("all", "no-archive"):
        for index, env in enumerate(("api", "bash")):
            for teacher, fired in (("biased", detected[level]), ("neutral", alarms[level])):
                rows.append(
                    {
                        "values": {"safe_templates": level},
                        "env": env,
                        "teacher": teacher,
                        "model_check": "fail" if index < fired else "pass",
                    }
                )
    return rows


def test_safe_templates_rule_picks_most_detections_without_alarms():
    from audit.study.setting_choice import choose_level, level_counts

    counts = level_counts(
        {"rows": _safe_rows({"all": 1, "no-archive": 2}, {"all": 0, "no-archive": 0})},
        "safe_templates",
    )
    assert counts["no-archive"] == {"biased": 2, "detected": 2, "neutral": 2, "alarms": 0}
    assert choose_level(counts, tie="all") == "no-archive"
    tied = level_counts(
        {"rows": _safe_rows({"all": 1, "no-archive": 1}, {"all": 0, "no-archive": 0})},
        "safe_templates",
    )
    assert choose_level(tied, tie="all") == "all"
    alarmed = level_counts(
        {"rows": _safe_rows({"all": 0, "no-archive": 2}, {"all": 0, "no-archive": 1})},
        "safe_templates",
    )
    assert choose_level(alarmed, tie="all") == "all"
    both = level_counts(
        {"rows": _safe_rows({"all": 2, "no-archive": 2}, {"all": 1, "no-archive": 1})},
        "safe_templates",
    )
    assert choose_level(both, tie="all") is None


def _recipe_study(decided: dict[tuple[float, int], tuple[float, float]]) -> dict:
    """Recipe-study rows, one per teacher and setting, with (student, control) decided shares."""
    rows = [
        {
            "env": "api",
            "teacher": teacher,
            "values": {"student_learning_rate": rate, "rollouts": rollouts, "teacher": teacher},
            "student_decided": student - (0.05 if teacher == "neutral" else 0.0),
            "control_decided": control,
        }
        for (rate, rollouts), (student, control) in decided.items()
        for teacher in ("biased", "neutral")
    ]
    return {"rows": rows, "shared": {"min_decision_rate": 0.5}}


def test_recipe_rule_takes_the_nearest_setting_where_every_arm_decides():
    from audit.study.setting_choice import recipe_choice

    study = _recipe_study(
        {(5e-4, 160): (0.6, 0.45), (2e-4, 160): (0.58, 0.52), (2e-4, 320): (0.7, 0.7)}
    )
    choice = recipe_choice(study, (5e-4, 160))
    lowest = {(e["learning_rate"], e["rollouts"]): e["lowest_decided"] for e in choice["settings"]}
    assert lowest == pytest.approx({(5e-4, 160): 0.45, (2e-4, 160): 0.52, (2e-4, 320): 0.65})
    assert (choice["chosen"]["learning_rate"], choice["chosen"]["rollouts"]) == (2e-4, 160)
    assert not choice["is_default"]
    # The neutral students of (2e-4, 160) decide in 0.53 - 0.05 < 0.5: the next setting.
    study = _recipe_study(
        {(5e-4, 160): (0.6, 0.45), (2e-4, 160): (0.53, 0.52), (2e-4, 320): (0.7, 0.7)}
    )
    assert recipe_choice(study, (5e-4, 160))["chosen"]["rollouts"] == 320
    none = recipe_choice(_recipe_study({(5e-4, 160): (0.6, 0.45)}), (5e-4, 160))
    assert none["chosen"] is None and not none["is_default"]
    assert recipe_choice(None, (5e-4, 160))["settings"] == []
    unknown = _recipe_study({(2e-4, 320): (0.7, 0.7)})
    unknown["rows"][0]["student_decided"] = None
    entry = recipe_choice(unknown, (5e-4, 160))["settings"][0]
    assert entry["lowest_decided"] is None and not entry["qualifies"]


def test_committed_studies_resume_from_their_finished_cells():
    """A re-run of a committed study skips its finished cells: every cell of its grid has its
    report under the id the grid gives it now, or is listed as pending in its study.json (a
    study run in parts). The default-profile studies follow the profile: default's committed
    cells are of an older one (3 seeds, the former default safe_templates), and
    false-alarm-3seeds' cells were named before the current ids, as their grid files say."""
    from audit.study.grid import load_grid
    from audit.study.results import REPO, STUDIES

    for spec in STUDIES:
        cells_dir = DOCS / "study" / spec.name / "cells"
        if spec.name in ("default", "false-alarm-3seeds") or not cells_dir.is_dir():
            continue
        pending = json.loads((cells_dir.parent / "study.json").read_text())["pending"]
        missing = [
            c.id
            for c in load_grid(REPO / spec.grid)
            if not (cells_dir / c.id).is_dir() and c.id not in pending
        ]
        assert not missing, (spec.name, missing[:3])
