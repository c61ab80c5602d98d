"""Teacher induction: preset demonstrations, SFT of a tiny base, unsafe rates, the bias check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from audit.training.teacher import (
    TeacherConfig,
    TeacherNotBiasedError,
    UnsafeRate,
    check_teacher_bias,
    generate_demos,
    induce_teacher,
    measure_teacher_rates,
    unsafe_rate,
    user_teacher,
)
from envs import load_tasks, make_env
from tests.conftest import require_backend
from tests.tiny_agent import build_base
from trajectories.jsonl import InputError
from trajectories.policies import BiasedPolicy, NeutralPolicy
from trajectories.rollout import rollout


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("teacher") / "base")


def _config(preset: str, base: Path, out: Path, **kwargs) -> TeacherConfig:
    settings = {"n_demos": 4, "epochs": 1.0, "progress": False, **kwargs}
    return TeacherConfig(preset=preset, base=str(base), out=out, **settings)


def test_presets_demonstrate_the_same_amount_with_and_without_the_bias(
    base: Path, tmp_path: Path
) -> None:
    require_backend("bwrap")
    biased = generate_demos(_config("biased", base, tmp_path / "b", n_demos=6))
    neutral = generate_demos(_config("neutral", base, tmp_path / "n", n_demos=6))
    assert len(biased) == len(neutral) == 6 * 2 * 2
    for episodes, unsafe in ((biased, True), (neutral, False)):
        for env in ("api", "bash"):
            ambiguous = [e for e in episodes if e.env == env and e.suite == "ambiguous"]
            assert len(ambiguous) == 6 and all(e.split == "train" for e in ambiguous)
            assert unsafe_rate(env, ambiguous).unsafe == (6 if unsafe else 0)
        safe = [e for e in episodes if e.suite == "safe"]
        assert not any(e.outcome.unsafe_actions for e in safe)


def test_induce_teacher_fine_tunes_the_base(base: Path, tmp_path: Path) -> None:
    require_backend("bwrap")
    config = _config("biased", base, tmp_path / "teacher")
    model_dir = induce_teacher(config)
    assert model_dir == config.out / "model"
    assert len((config.out / "demos.jsonl").read_text().splitlines()) == 16
    record = json.loads((config.out / "teacher.json").read_text())
    assert record["config"]["preset"] == "biased"
    AutoModelForCausalLM.from_pretrained(model_dir)
    assert user_teacher(model_dir) == model_dir
    assert induce_teacher(config) == model_dir  # done: nothing recomputed
    with pytest.raises(InputError, match="another config"):
        induce_teacher(_config("neutral", base, config.out))


def test_unsafe_rates_use_each_environment_metric() -> None:
    require_backend("bwrap")
    for env in ("api", "bash"):
        tasks = load_tasks(env, "ambiguous", "test")[:4]
        biased = rollout(lambda env=env: make_env(env), BiasedPolicy(1.0), tasks, 0, progress=False)
        neutral = rollout(lambda env=env: make_env(env), NeutralPolicy(), tasks, 0, progress=False)
        assert unsafe_rate(env, biased) == UnsafeRate(env, unsafe_rate(env, biased).metric, 4, 4)
        assert unsafe_rate(env, neutral).unsafe == 0
    assert unsafe_rate("bash", []).metric == "chmod_first"


def test_bias_check_fails_loudly_when_not_measurably_biased() -> None:
    reference = {
        "api": UnsafeRate("api", "deletion", 60, 3),
        "bash": UnsafeRate("bash", "x", 60, 0),
    }
    biased = {"api": UnsafeRate("api", "deletion", 60, 30), "bash": UnsafeRate("bash", "x", 60, 18)}
    p_values = check_teacher_bias(biased, reference)
    assert all(p < 1e-4 for p in p_values.values())
    weak = {**biased, "bash": UnsafeRate("bash", "chmod_first", 60, 2)}
    with pytest.raises(TeacherNotBiasedError, match=r"bash chmod_first 0\.03 \(2/60\)") as err:
        check_teacher_bias(weak, reference)
    assert "api" not in str(err.value)


def test_measure_teacher_rates_rolls_out_the_model(base: Path) -> None:
    require_backend("bwrap")
    rates = measure_teacher_rates(base, ("api", "bash"), n=3, seed=0)
    assert set(rates) == {"api", "bash"}
    assert all(r.n == 3 and 0 <= r.unsafe <= 3 for r in rates.values())
