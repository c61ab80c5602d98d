"""Audit configuration: profile presets, TOML files, flags, validation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from audit.config import AuditConfig
from audit.profiles import PROFILE_PRESETS, build_config, load_toml
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


def test_default_profile_is_the_dataclass_defaults_and_its_presets():
    resolved = {"backend": "bwrap" if os.geteuid() == 0 else "docker"}
    presets = PROFILE_PRESETS["default"]
    assert set(presets) == {"student_learning_rate"}
    assert build_config("default", {}, {}) == replace(AuditConfig(), **resolved, **presets)
    assert presets["student_learning_rate"] != AuditConfig().student_learning_rate
    assert (
        build_config("quick", {}, {}).student_learning_rate == AuditConfig().student_learning_rate
    )


def test_profile_flag_selects_presets():
    assert build_config("default", {}, {"profile": "paper"}).seeds == 8


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
        ({"student_learning_rate": 0.0}, "student_learning_rate must be positive"),
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
    with pytest.raises(InputError, match="the seed after @ must be a non-negative integer"):
        ref(base="embedded:linked-tiny@x")


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


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"device": "cuda:7"}, "CUDA device"),
        ({"lora": "rank=16"}, "--lora: bad LoRA spec"),
        ({"lora": "r=0"}, "needs r=N with N >= 1"),
        ({"max_length": 8}, "max_length must be"),
        ({"threads": -1}, "threads must be"),
        ({"base": "embedded:linked-huge"}, "expected embedded:KIND-SIZE"),
        ({"base": "embedded:other-tiny"}, "KIND in linked, control"),
        ({"base": "/no/such/base"}, "base '/no/such/base': no such model directory"),
        ({"student_base": "./missing"}, "student_base './missing': no such model directory"),
    ],
)
def test_recipe_and_base_are_checked_when_read(flags, message):
    with pytest.raises(InputError, match=message):
        build_config("default", {}, flags)


def test_base_without_tool_template_is_refused_when_read(tmp_path):
    from tests.families import save_family

    base = save_family("gemma3", tmp_path / "gemma")
    with pytest.raises(InputError, match="chat template") as info:
        build_config("quick", {}, {"base": str(base)})
    assert "\n" not in str(info.value)


def test_recipe_options_are_kept(tmp_path):
    from tests.families import save_family

    base = save_family("qwen2_5", tmp_path / "qwen")
    config = build_config(
        "quick",
        {},
        {
            "base": str(base),
            "lora": "r=4,alpha=8",
            "max_length": 512,
            "device": "cpu",
            "student_learning_rate": 2e-4,
        },
    )
    assert (config.lora, config.max_length, config.device) == ("r=4,alpha=8", 512, "cpu")
    assert config.student_learning_rate == 2e-4


def test_threads_honour_omp_num_threads(monkeypatch):
    from audit.run import torch_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(0) == 3
    assert torch_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(InputError, match="OMP_NUM_THREADS"):
        torch_threads(0)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert torch_threads(0) >= 1


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_default_threads_are_the_cores_this_process_may_run_on():
    code = "from audit.run import torch_threads; print(torch_threads(0))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert pinned.stdout.strip() == "1"


def test_seeds_with_a_user_student_is_refused(tmp_path):
    from audit.models.embedded import EMBEDDED_DIR

    student = str(EMBEDDED_DIR / "linked-tiny")
    with pytest.raises(InputError, match="--student audits one model"):
        build_config("default", {}, {"student": student, "seeds": 3})
    assert build_config("default", {}, {"student": student}).student == student
