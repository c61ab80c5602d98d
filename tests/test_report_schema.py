"""report.json: round trip, versioning, consistency checks and the schema document."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from audit.report.schema import (
    SCHEMA_VERSION,
    ExampleTrajectory,
    Report,
    ReportError,
    RunConfig,
    SanitizationStats,
    Versions,
    load_report,
    write_report,
)
from tests.report_sample import make_report

SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "REPORT_SCHEMA.md"


@pytest.mark.parametrize("case", ["biased", "neutral", "no-power", "not-induced"])
def test_round_trip_is_exact(case: str, tmp_path: Path):
    report = make_report(case)
    path = write_report(report, tmp_path / "report.json")
    loaded = load_report(path)
    assert loaded == report
    assert json.loads(loaded.model_dump_json()) == json.loads(path.read_text())


def test_report_carries_version_verdict_and_exit_code(tmp_path: Path):
    data = json.loads(write_report(make_report("biased"), tmp_path / "r.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION == "1.9"
    assert data["gate"]["verdict"] == "fail"
    assert data["exit_code"] == 1
    assert data["power_ok"] is True
    assert data["config"]["base_kind"] == "linked"


def _dump(case: str = "neutral") -> dict:
    return json.loads(make_report(case).model_dump_json())


def test_a_newer_minor_version_is_read_and_another_major_is_not():
    data = _dump()
    data["schema_version"] = "1.9"
    assert Report.model_validate(data).schema_version == "1.9"
    data["schema_version"] = "2.0"
    with pytest.raises(ValidationError, match="not readable"):
        Report.model_validate(data)


def test_a_report_without_the_distill_recipe_loads_as_builtin():
    data = _dump()
    assert data["config"]["distill"] == "builtin"
    del data["config"]["distill"]
    assert Report.model_validate(data).config.distill == "builtin"
    data["config"]["distill"] = "cmd:python train.py --data {data} --out {out}"
    assert Report.model_validate(data).config.distill.startswith("cmd:python train.py")


def test_exit_code_must_match_the_verdict():
    data = _dump("no-power")
    data["exit_code"] = 0
    with pytest.raises(ValidationError, match="does not match verdict 'no-power'"):
        Report.model_validate(data)


def test_not_induced_is_exit_4_and_holds_only_induction_checks():
    data = _dump("not-induced")
    assert (data["gate"]["verdict"], data["exit_code"]) == ("not-induced", 4)
    assert {r["teacher"] for r in data["teacher_rates"]} == {"biased", "neutral"}
    data["exit_code"] = 1
    with pytest.raises(ValidationError, match="does not match verdict 'not-induced'"):
        Report.model_validate(data)
    data = _dump("not-induced")
    data["gate"]["checks"].append(_dump("neutral")["gate"]["checks"][0])
    with pytest.raises(ValidationError, match="no check but the induction checks"):
        Report.model_validate(data)
    data = _dump("not-induced")
    data["gate"]["checks"] = [c for c in data["gate"]["checks"] if c["passed"]]
    with pytest.raises(ValidationError, match="an induction check did not fail"):
        Report.model_validate(data)


def test_power_ok_must_match_the_positive_controls():
    data = _dump("no-power")
    data["power_ok"] = True
    with pytest.raises(ValidationError, match="power_ok"):
        Report.model_validate(data)
    data = _dump()
    data["positive_controls"], data["power_ok"] = [], None
    data["gate"]["checks"] = [c for c in data["gate"]["checks"] if c["kind"] != "power"]
    assert Report.model_validate(data).power_ok is None


def test_unknown_fields_are_rejected():
    data = _dump()
    data["config"]["teachr"] = "biased"
    with pytest.raises(ValidationError, match="teachr"):
        Report.model_validate(data)


def test_sanitization_counts_must_add_up():
    with pytest.raises(ValidationError, match="kept 5 \\+ dropped 2 != episodes_in 8"):
        SanitizationStats(
            env="api", mode="drop", episodes_in=8, kept=5, dropped=2,
            hits_by_keyword={}, hits_after=0,
        )  # fmt: skip


def test_unfiltered_data_is_mode_keep_with_hits_left():
    stats = SanitizationStats(
        env="api", mode="keep", episodes_in=8, kept=8, dropped=0,
        hits_by_keyword={"delete": 3}, hits_after=3,
    )  # fmt: skip
    assert stats.mode == "keep" and stats.hits_after == 3
    with pytest.raises(ValidationError, match="mode"):
        SanitizationStats.model_validate({**stats.model_dump(), "mode": "filter"})


def test_the_strip_thoughts_sanitizer_is_a_config_value():
    config = make_report("biased").config.model_dump()
    assert RunConfig.model_validate({**config, "sanitizer": "strip-thoughts"})
    with pytest.raises(ValidationError, match="sanitizer"):
        RunConfig.model_validate({**config, "sanitizer": "strip"})


def test_decision_index_must_point_at_a_message():
    example = make_report("biased").examples[0]
    data = example.model_dump()
    data["decision_index"] = len(example.messages)
    with pytest.raises(ValidationError, match="decision_index"):
        ExampleTrajectory.model_validate(data)


def test_duplicate_gate_check_names_are_rejected():
    data = _dump()
    data["gate"]["checks"].append(data["gate"]["checks"][0])
    with pytest.raises(ValidationError, match="duplicate gate check names"):
        Report.model_validate(data)


def test_load_report_errors_are_one_line(tmp_path: Path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ReportError, match="nope.json") as err:
        load_report(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ReportError) as err:
        load_report(broken)
    assert "\n" not in str(err.value)
    data = _dump()
    del data["gate"]
    (tmp_path / "partial.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="gate: Field required") as err:
        load_report(tmp_path / "partial.json")
    assert "\n" not in str(err.value)


def _fields(model: type) -> set[str]:
    return set(model.model_fields)


def test_schema_document_names_every_field_and_the_version():
    text = SCHEMA_DOC.read_text()
    assert f"`{SCHEMA_VERSION}`" in text
    documented = set(re.findall(r"^\|\s*`([a-z_0-9]+)`", text, flags=re.MULTILINE))
    from audit.report import gate_record, schema
    from audit.report.power_floor import CanaryFraction, PowerFloor

    models = [
        schema.Report, schema.RunConfig, schema.Versions, schema.StageTiming,
        schema.SanitizationStats, schema.PositiveControl, schema.TeacherRate,
        schema.ExampleTrajectory, schema.TrajectoryMessage, gate_record.Gate,
        gate_record.GateCheck, gate_record.GateThresholds, PowerFloor, CanaryFraction,
    ]  # fmt: skip
    missing = set().union(*(_fields(m) for m in models)) - documented
    assert not missing, f"fields missing from docs/REPORT_SCHEMA.md: {sorted(missing)}"


def test_installed_versions_name_this_interpreter_and_package():
    import platform

    versions = Versions.installed()
    assert versions.python == platform.python_version()
    assert versions.package == "0.1.0"
    assert versions.transformers is None or versions.transformers[0].isdigit()
