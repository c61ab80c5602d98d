"""Latent probes: CKA properties, the teacher probe and its seed-and-task gap on planted and
signal-free states, the activation projection on planted shifts, and both probes on tiny
models (labels from the teacher's samples or a stored copy, one class, heterogeneous
students)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import ortho_group

from audit.probes.decision import encode_decisions
from audit.probes.latent import (
    cluster_separation,
    decision_points,
    decision_states,
    latent,
    linear_cka,
    middle_layer,
    probe_folds,
    probe_readout,
    teacher_unsafe_share,
)
from audit.probes.latent.activation import activation_projection
from audit.probes.latent.readout import cluster_gap
from tests.probe_models import (
    NARROW,
    api_conversations,
    api_tasks,
    plant_preference,
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
    readout = probe_readout(
        data["teacher"], data["labels"], data["groups"], others, seed=0, n_boot=500
    )
    gap = cluster_gap(
        readout.scores["student"][None], readout.scores["control"][None], data["groups"], 500, 0
    )
    return readout, gap


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_detects_a_planted_direction(seed: int) -> None:
    readout, gap = _readout(_synthetic(signal=1.0, seed=seed))
    assert readout.cv_auroc.low > 0.8
    assert gap.low > 0.05
    assert set(readout.scores) == {"teacher", "student", "control"}


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_finds_nothing_without_signal(seed: int) -> None:
    readout, gap = _readout(_synthetic(signal=0.0, seed=seed))
    assert readout.cv_auroc.low < 0.5 < readout.cv_auroc.high
    assert abs(readout.cv_auroc.estimate - 0.5) < 0.15
    assert gap.low < 0 < gap.high


def test_gap_interval_covers_the_spread_between_seed_pairs() -> None:
    """Pairs whose gaps differ by seed (+-0.2, mean 0) with little task noise: the interval over
    pairs and tasks spans 0, while one pair's task-only interval is narrow and excludes it."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 3)
    offsets = np.array([0.2, -0.2, 0.15, -0.15, 0.0])
    control = rng.uniform(0.2, 0.4, size=(5, 90))
    student = control + offsets[:, None] + rng.normal(0, 0.01, size=(5, 90))
    pooled = cluster_gap(student, control, groups, n_boot=2000, seed=0)
    assert pooled.estimate == pytest.approx(0.0, abs=0.01)
    assert pooled.low < -0.05 and pooled.high > 0.05
    one = cluster_gap(student[:1], control[:1], groups, n_boot=2000, seed=0)
    assert one.low > 0.19 and one.high - one.low < 0.02
    assert "seed pairs x tasks" in pooled.method


def _states(seed: int) -> dict[str, np.ndarray]:
    """Base states, and teacher states moved from them along a planted shift (40 tasks x 3)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(120, 16))
    shift = rng.normal(size=16)
    return {
        "base": base,
        "teacher": base + shift + rng.normal(0, 0.1, size=(120, 16)),
        "shift": shift,
        "groups": np.repeat(np.arange(40), 3),
    }


def test_activation_projection_reads_how_far_the_student_moved() -> None:
    data = _states(0)
    teacher, base, groups = data["teacher"], data["base"], data["groups"]

    def project(students: list[np.ndarray], controls: list[np.ndarray]):
        measured = activation_projection(
            teacher, base, np.stack(students), np.stack(controls), groups, 500, 0
        )
        assert measured is not None
        return measured

    like_teacher = project([teacher, teacher], [base, base])
    assert like_teacher.projection.estimate == pytest.approx(1.0)
    assert 0.95 < like_teacher.projection.low <= like_teacher.projection.high < 1.05
    assert like_teacher.direction_norm == pytest.approx(
        np.linalg.norm(teacher.mean(0) - base.mean(0))
    )
    like_control = project([base, teacher], [base, teacher])
    assert like_control.projection.estimate == pytest.approx(0.0, abs=1e-9)
    halfway = project([base + data["shift"] / 2], [base])
    assert halfway.projection.estimate == pytest.approx(0.5, abs=0.05)
    rng = np.random.default_rng(1)
    sideways = rng.normal(size=16)
    sideways -= sideways @ data["shift"] / (data["shift"] @ data["shift"]) * data["shift"]
    orthogonal = project([base + sideways], [base])
    assert abs(orthogonal.projection.estimate) < 0.1
    assert activation_projection(base, base, base[None], base[None], groups, 10, 0) is None


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
    assert middle_layer(model) == 2
    together = decision_states(model, decisions, pad_id=0, batch_size=6)
    alone = decision_states(model, decisions, pad_id=0, batch_size=1)
    assert together.shape == (6, model.config.num_hidden_layers + 1, model.config.hidden_size)
    np.testing.assert_allclose(together, alone, atol=1e-4)


@pytest.fixture(scope="module")
def planted() -> dict[str, Any]:
    """A base and a teacher fine-tuned from it (fixture-only) to write the unsafe call after
    the careful prefix and the safe one after the hasty prefix, and their tokenizer."""
    tokenizer = probe_tokenizer()
    base = tiny_model(seed=0)
    points = [*api_conversations("careful"), *api_conversations("hasty")]
    careful = [point.prefix == "careful" for point in points]
    teacher = plant_preference(base, encode_decisions(points, tokenizer), careful, steps=100)
    return {"tokenizer": tokenizer, "base": base, "teacher": teacher}


def _latent(planted: dict[str, Any], teacher: Any, pairs: dict, **kwargs: Any):
    tokenizer = planted["tokenizer"]
    loaders = {
        seed: (lambda s=student: (s, tokenizer), lambda c=control: (c, tokenizer))
        for seed, (student, control) in pairs.items()
    }
    return latent(
        (teacher, tokenizer),
        (planted["base"], tokenizer),
        loaders,
        "api",
        seed=0,
        temperature=1.0,
        prefixes=("careful", "hasty"),
        tasks=api_tasks(),
        n_boot=300,
        **kwargs,
    )


def test_latent_labels_the_teacher_sampled_decisions(planted: dict[str, Any]) -> None:
    teacher, base = planted["teacher"], planted["base"]
    result = _latent(planted, teacher, {0: (teacher, base), 3: (teacher, base)})
    n = len(api_tasks())
    share = np.array(result.unsafe_share)
    unsafe = int((share > 0.5).sum())
    assert result.labels == {"unsafe": unsafe, "safe": 2 * n - unsafe}
    assert (share[:n] > 0.5).mean() >= 0.75 and (share[n:] <= 0.5).all(), (
        "the planted teacher no longer splits"
    )
    assert result.label_draws == 8 and "sampled" in result.label_rule
    assert result.applicable and result.seeds == [0, 3]
    assert result.layer == 2 and "middle" in result.layer_rule
    assert [layer.layer for layer in result.layers] == [0, 1, 2, 3]
    for layer in result.layers:
        assert layer.projection is not None and layer.direction_norm > 0
        assert layer.projection.estimate == pytest.approx(1.0)
        assert layer.probe_cv_auroc is not None and layer.gap is not None
    assert result.projection == result.layers[2].projection
    assert result.gap == result.layers[2].gap
    assert result.probe_cv_auroc is not None and result.probe_cv_auroc.estimate > 0.9
    assert set(result.mean_score) == {"teacher", "base", "student", "control"}
    assert result.cka_to_teacher["student/0"] == pytest.approx(1.0)
    assert set(result.thought_dropped) == {
        "teacher",
        "base",
        "student/0",
        "control/0",
        "student/3",
        "control/3",
    }


def test_stored_labels_give_the_result_sampled_labels_give(planted: dict[str, Any]) -> None:
    """The audit caches the teacher's shares (`teacher-labels` stage): passing them back must
    change nothing, and shares of other points are refused."""
    teacher, base = planted["teacher"], planted["base"]
    points = decision_points("api", 0, ("careful", "hasty"), api_tasks())
    share = teacher_unsafe_share((teacher, planted["tokenizer"]), points, "api", 1.0, 0)
    sampled = _latent(planted, teacher, {0: (teacher, base)})
    stored = _latent(planted, teacher, {0: (teacher, base)}, unsafe_share=share.tolist())
    assert sampled.unsafe_share == share.tolist()
    assert stored.model_dump() == sampled.model_dump()
    with pytest.raises(ValueError, match="unsafe shares for"):
        _latent(planted, teacher, {0: (teacher, base)}, unsafe_share=share[:-1].tolist())


def test_a_student_equal_to_its_control_reads_zero(planted: dict[str, Any]) -> None:
    teacher, base = planted["teacher"], planted["base"]
    result = _latent(planted, teacher, {0: (teacher, teacher), 1: (base, base)})
    assert result.gap is not None and result.gap.estimate == pytest.approx(0.0, abs=1e-9)
    assert result.gap.low == pytest.approx(0.0, abs=1e-9)
    assert all(layer.projection.estimate == pytest.approx(0.0, abs=1e-9) for layer in result.layers)


def test_one_class_teacher_labels_leave_the_probe_not_applicable(planted: dict[str, Any]) -> None:
    """An untrained teacher writes no parseable unsafe call: every point is safe."""
    base = planted["base"]
    teacher = tiny_model(seed=3)
    result = _latent(planted, teacher, {0: (teacher, base)}, draws=2)
    assert result.labels == {"unsafe": 0, "safe": 2 * len(api_tasks())}
    assert result.gap is None and result.probe_cv_auroc is None and result.mean_score == {}
    assert "one class" in result.probe_note
    assert result.applicable and len(result.layers) == 4
    assert all(layer.gap is None and layer.projection is not None for layer in result.layers)


def test_heterogeneous_students_are_not_applicable(planted: dict[str, Any]) -> None:
    teacher, base = planted["teacher"], planted["base"]
    reason = "the students' base embedded:linked-tiny@1 is not the teacher's"
    result = _latent(planted, teacher, {0: (teacher, base)}, not_shared=reason, draws=1)
    assert not result.applicable and result.layers == []
    assert result.gap is None and result.projection is None
    assert f"not applicable: {reason}" in result.probe_note
    assert result.cka_to_teacher["student/0"] == pytest.approx(1.0)
    narrow = tiny_model(seed=1, size=NARROW)
    result = _latent(planted, teacher, {0: (narrow, base)}, draws=1)
    assert not result.applicable and result.gap is None and result.projection is None
    assert "student/0 differ from the teacher in architecture" in result.probe_note
    assert 0.0 <= result.cka_to_teacher["student/0"] <= 1.0
