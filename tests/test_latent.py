"""Latent probes: CKA properties, the teacher probe on planted and signal-free states, and the
whole probe on tiny models (homogeneous and heterogeneous)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from audit.probes.decision import encode_decisions
from audit.probes.latent import (
    cluster_separation,
    decision_states,
    latent,
    linear_cka,
    middle_layer,
    probe_folds,
    probe_readout,
)
from tests.probe_models import (
    NARROW,
    api_conversations,
    api_tasks,
    probe_tokenizer,
    tiny_model,
)


def test_cka_properties() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12))
    rotation = ortho_group.rvs(12, random_state=1)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, 7.5 * x + 3.0) == pytest.approx(1.0)
    assert linear_cka(x, y := rng.normal(size=(300, 20))) == pytest.approx(linear_cka(y, x))
    assert linear_cka(x, rng.normal(size=(300, 5))) < 0.1
    mixed = np.hstack([x[:, :6], rng.normal(size=(300, 6))])
    assert 0.3 < linear_cka(x, mixed) < 0.9
    assert linear_cka(x, np.ones((300, 4))) == 0.0
    with pytest.raises(ValueError):
        linear_cka(x, x[:10])


def _synthetic(signal: float, seed: int) -> dict[str, np.ndarray]:
    """Teacher states whose labels lie along one direction (scaled by `signal`), a student shifted
    along it by `signal`, and a control with no shift; 40 tasks x 3 prefixes, 16 dimensions."""
    rng = np.random.default_rng(seed)
    n_tasks, per_task, dim = 40, 3, 16
    n = n_tasks * per_task
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    labels = rng.permutation(np.arange(n) % 2)
    return {
        "labels": labels,
        "groups": np.repeat(np.arange(n_tasks), per_task),
        "teacher": rng.normal(size=(n, dim)) + signal * 3.0 * (labels - 0.5)[:, None] * direction,
        "student": rng.normal(size=(n, dim)) + signal * direction,
        "control": rng.normal(size=(n, dim)),
    }


def _readout(data: dict[str, np.ndarray]):
    others = {"student": data["student"], "control": data["control"]}
    return probe_readout(
        data["teacher"], data["labels"], data["groups"], others, seed=0, n_boot=500
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_detects_a_planted_direction(seed: int) -> None:
    readout = _readout(_synthetic(signal=1.0, seed=seed))
    assert readout.cv_auroc.low > 0.8
    assert readout.gap is not None and readout.gap.low > 0.05
    assert set(readout.scores) == {"teacher", "student", "control"}


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_finds_nothing_without_signal(seed: int) -> None:
    readout = _readout(_synthetic(signal=0.0, seed=seed))
    assert readout.cv_auroc.low < 0.5 < readout.cv_auroc.high
    assert abs(readout.cv_auroc.estimate - 0.5) < 0.15
    assert readout.gap is not None and readout.gap.low < 0 < readout.gap.high


def test_probe_needs_both_labels_on_enough_tasks() -> None:
    data = _synthetic(signal=1.0, seed=0)
    groups = data["groups"]
    assert probe_folds(data["labels"], groups) == 5
    few = np.isin(groups, [0, 1]).astype(int)
    assert probe_folds(few, groups) == 0
    with pytest.raises(ValueError, match="tasks"):
        probe_readout(data["teacher"], few, groups, {}, seed=0)


def test_cluster_separation_orders_planted_and_random() -> None:
    planted, random = _synthetic(1.0, 0), _synthetic(0.0, 0)
    db_planted, ch_planted = cluster_separation(planted["teacher"], planted["labels"])
    db_random, ch_random = cluster_separation(random["teacher"], random["labels"])
    assert db_planted < db_random
    assert ch_planted > ch_random


def test_decision_states_do_not_depend_on_batching() -> None:
    model = tiny_model(seed=0)
    decisions = encode_decisions(api_conversations("careful")[:3], probe_tokenizer())
    decisions += encode_decisions(api_conversations("hasty")[:3], probe_tokenizer())
    layer = middle_layer(model)
    assert layer == 2
    together = decision_states(model, decisions, layer, pad_id=0, batch_size=6)
    alone = decision_states(model, decisions, layer, pad_id=0, batch_size=1)
    assert together.shape == (6, model.config.hidden_size)
    np.testing.assert_allclose(together, alone, atol=1e-4)


TEACHER_SEED = 2
"""An untrained tiny model that, as initialised, prefers the unsafe call after the careful
prefix on every task and the safe call after the hasty one: two classes of decision points."""
ONE_SIDED_SEED = 3
"""An untrained tiny model that prefers the safe call after every prefix."""


def test_latent_end_to_end_on_tiny_models() -> None:
    tokenizer = probe_tokenizer()
    teacher = tiny_model(seed=TEACHER_SEED)
    models = {
        "teacher": (teacher, tokenizer),
        "student": (teacher, tokenizer),
        "control": (tiny_model(seed=0), tokenizer),
        "base": (tiny_model(seed=5, size=NARROW), tokenizer),
    }
    result = latent(models, "api", seed=0, prefixes=("careful", "hasty"), tasks=api_tasks())
    n = len(api_tasks())
    assert result.labels == {"unsafe": n, "safe": n}, "the teacher seed no longer splits"
    assert result.prefixes == ["careful", "hasty"]
    assert result.layer == 2 and "middle" in result.layer_rule
    assert result.probe_cv_auroc is not None and result.probe_cv_auroc.estimate > 0.9
    assert result.gap is not None and result.gap.low <= result.gap.estimate <= result.gap.high
    assert result.mean_score["student"] > 0.9 * result.mean_score["teacher"]
    assert result.cka_to_teacher["student"] == pytest.approx(1.0)
    assert result.cka_to_teacher["control"] < 0.999
    assert 0.0 <= result.cka_to_teacher["base"] <= 1.0
    assert set(result.mean_score) == {"teacher", "student", "control"}
    assert "base" in result.probe_note
    assert set(result.davies_bouldin) == {"teacher", "student", "control", "base"}
    assert len(result.scores["student"]) == 2 * n


def test_latent_without_a_probe_still_reports_cka() -> None:
    tokenizer = probe_tokenizer()
    models = {
        "teacher": (tiny_model(seed=ONE_SIDED_SEED), tokenizer),
        "student": (tiny_model(seed=3, size=NARROW), tokenizer),
        "control": (tiny_model(seed=0), tokenizer),
    }
    result = latent(models, "api", seed=0, prefixes=("hasty",), tasks=api_tasks())
    assert result.labels == {"unsafe": 0, "safe": len(api_tasks())}
    assert result.probe_cv_auroc is None and result.gap is None and result.mean_score == {}
    assert "one class" in result.probe_note and "student" in result.probe_note
    assert set(result.cka_to_teacher) == {"student", "control"}
    assert result.davies_bouldin == {}
