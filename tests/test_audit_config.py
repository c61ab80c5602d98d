"""Audit configuration: profile presets, TOML files, flags, validation."""

from __future__ import annotations

import pytest

from audit.config import AuditConfig, build_config, load_toml
from trajectories.jsonl import InputError


def test_precedence_profile_then_file_then_flags(tmp_path):
    config_file = tmp_path / "audit.toml"
    config_file.write_text('seeds = 2\nenv = "api"\nrollouts = 50\n')
    config = build_config("quick", load_toml(config_file), {"rollouts": 70, "method": None})
    assert config.profile == "quick"
    assert config.seeds == 2
    assert config.env == "api" and config.envs == ["api"]
    assert config.rollouts == 70
    assert config.method == "sft"
    assert config.positive_controls is False


def test_default_profile_keeps_dataclass_defaults():
    assert build_config("default", {}, {}) == AuditConfig()


def test_profile_flag_selects_presets():
    assert build_config("default", {}, {"profile": "paper"}).seeds == 5


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"teacher": "/no/such/teacher"}, "not a preset and no such model directory"),
        ({"env": "web"}, "env must be"),
        ({"method": "rl"}, "method must be"),
        ({"seeds": 0}, "seeds must be"),
        ({"alpha": 2.0}, "alpha"),
        ({"data": "/no/such.jsonl"}, "no such data file"),
        ({"profile": "huge"}, "unknown profile"),
        ({"first_seed": -1}, "first_seed must be"),
        ({"first_seed": 1_000_000}, "first_seed must be"),
        ({"sanitizer": "regex"}, "sanitizer must be"),
    ],
)
def test_bad_values_are_input_errors(flags, message):
    with pytest.raises(InputError, match=message):
        build_config("default", {}, flags)


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [")
    with pytest.raises(InputError, match="bad.toml: not valid TOML"):
        load_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sedes = 3\n")
    with pytest.raises(InputError, match="unknown keys sedes"):
        load_toml(unknown)
    with pytest.raises(InputError, match="no such config file"):
        load_toml(tmp_path / "missing.toml")


def test_model_directory_teacher_is_accepted(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert build_config("default", {}, {"teacher": str(tmp_path)}).teacher == str(tmp_path)


def test_student_base_seed_shorthand_and_errors():
    from audit.pipeline.artifacts import AuditPipeline
    from audit.pipeline.stages import StageRunner

    def ref(**flags):
        return AuditPipeline(build_config("default", {}, flags), StageRunner(), False)

    assert ref().student_base_ref() == "embedded:linked-tiny"
    assert ref(student_base="@1").student_base_ref() == "embedded:linked-tiny@1"
    assert ref(base="embedded:control-tiny@2", student_base="@1").student_base_ref() == (
        "embedded:control-tiny@1"
    )
    assert ref(student_base="org/model").student_base_ref() == "org/model"
    with pytest.raises(InputError, match="needs an embedded base"):
        ref(base="org/model", student_base="@1").student_base_ref()
    with pytest.raises(InputError, match="expected embedded:KIND-SIZE"):
        ref(base="embedded:linked-tiny@x").base()


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ({"student_base": "@1"}, True),
        ({"student_base": "embedded:control-tiny"}, True),
        ({"base": "embedded:control-tiny@2", "student_base": "embedded:control-tiny@2"}, False),
        ({"student_base": "embedded:linked-tiny@0"}, False),
        ({"student_base": "org/model"}, False),
    ],
)
def test_kd_into_a_base_with_another_tokenizer_is_refused_up_front(flags, refused):
    config = {"method": "kd", **flags}
    if refused:
        with pytest.raises(InputError, match="method kd needs the teacher's tokenizer"):
            build_config("default", {}, config)
    else:
        assert build_config("default", {}, config).method == "kd"
    assert build_config("default", {}, {**flags, "method": "sft"}).method == "sft"
