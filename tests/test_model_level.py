"""Model-level behaviour statistics: known values, scipy agreement, and the false-positive rate
under planted between-model variance (issue 15's acceptance test)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, permutation_test

from audit.probes import model_level
from audit.probes.model_level import (
    cluster_bootstrap,
    permutation_greater,
    seeds_needed,
    smallest_p,
)
from audit.probes.stats import mantel_haenszel_greater

ALPHA = 0.01


def test_k2_by_hand() -> None:
    # rates .2 .4 (student) vs .1 .3: of the 6 splits of {.1, .2, .3, .4} into pairs, the
    # student pair {.3, .4} (+.2) and the observed {.2, .4} (+.1) reach +.1: p = 2/6
    test = permutation_greater([(2, 10), (4, 10)], [(1, 10), (3, 10)], "t", paired=True)
    assert test.method == "permutation-exact"
    assert test.statistic == pytest.approx(0.1)
    assert test.p_value == pytest.approx(2 / 6)
    assert test.detail["relabelings"] == 6
    # the paired differences are +.1 and +.1: of the 4 sign flips only (+, +) reaches +.1
    assert test.detail["paired_sign_flip_p"] == pytest.approx(1 / 4)
    top = permutation_greater([(3, 10), (4, 10)], [(1, 10), (2, 10)], "t", paired=False)
    assert top.p_value == pytest.approx(1 / 6) == smallest_p(2, 2)
    assert "paired_sign_flip_p" not in top.detail


def test_one_model_per_arm_cannot_go_below_one_half() -> None:
    test = permutation_greater([(40, 40)], [(0, 40)], "t", paired=True)
    assert test.p_value == pytest.approx(0.5) == smallest_p(1, 1)
    assert test.detail["paired_sign_flip_p"] == pytest.approx(0.5)


def test_ties_count_as_at_least_as_extreme() -> None:
    equal = permutation_greater([(3, 30)] * 3, [(3, 30)] * 3, "t", paired=True)
    assert equal.p_value == pytest.approx(1.0)
    assert equal.detail["paired_sign_flip_p"] == pytest.approx(1.0)


def test_agrees_with_scipy_permutation_test() -> None:
    rng = np.random.default_rng(3)
    for k in (2, 3, 5):
        student = [(int(u), 40) for u in rng.integers(0, 12, k)]
        control = [(int(u), 40) for u in rng.integers(0, 12, k)]
        first = np.array([u / n for u, n in student])
        second = np.array([u / n for u, n in control])
        reference = permutation_test(
            (first, second),
            lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
            permutation_type="independent",
            alternative="greater",
            n_resamples=10**6,
            vectorized=True,
        )
        paired = permutation_test(
            (first, second),
            lambda a, b, axis: np.mean(a - b, axis=axis),
            permutation_type="samples",
            alternative="greater",
            n_resamples=10**6,
            vectorized=True,
        )
        test = permutation_greater(student, control, "t", paired=True)
        assert test.p_value == pytest.approx(reference.pvalue)
        assert test.detail["paired_sign_flip_p"] == pytest.approx(paired.pvalue)


def test_monte_carlo_beyond_the_exact_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    student = [(10 + i, 40) for i in range(5)]
    control = [(i, 40) for i in range(5)]
    exact = permutation_greater(student, control, "t", paired=False)
    monkeypatch.setattr(model_level, "EXACT_LIMIT", 100)
    estimated = permutation_greater(student, control, "t", paired=False)
    assert estimated.method == "permutation-monte-carlo"
    assert estimated.detail["relabelings"] == model_level.MONTE_CARLO_RESAMPLES
    # all 5 students above all 5 controls: exact 1/252; the estimate is (hits + 1) / (R + 1)
    assert exact.p_value == pytest.approx(1 / 252)
    assert estimated.p_value == pytest.approx(1 / 252, abs=0.002)
    assert estimated.p_value == permutation_greater(student, control, "t", paired=False).p_value


def test_smallest_p_and_seeds_needed() -> None:
    assert smallest_p(3, 3) == pytest.approx(1 / 20)
    assert smallest_p(5, 5) == pytest.approx(1 / 252)
    assert seeds_needed(0.01, 2) == 5  # 2/70 = 0.029, 2/252 = 0.0079
    assert seeds_needed(0.01, 1) == 5  # 1/70 = 0.014
    assert seeds_needed(0.05, 1) == 4  # 1/20 = 0.05 is not under 0.05; 1/70 is
    assert seeds_needed(0.05, 2) == 4  # 2/20 = 0.1; 2/70 = 0.029


def test_cluster_bootstrap_widens_with_between_model_variance() -> None:
    same = [(6, 60)] * 5
    spread = [(0, 60), (2, 60), (6, 60), (10, 60), (12, 60)]
    control = [(3, 60)] * 5
    narrow = cluster_bootstrap(same, control)
    wide = cluster_bootstrap(spread, control)
    assert narrow.difference.estimate == pytest.approx(wide.difference.estimate) == 0.05
    assert wide.difference.high - wide.difference.low > 1.5 * (
        narrow.difference.high - narrow.difference.low
    )
    assert wide.student.low < 0.1 < wide.student.high
    assert wide.difference.method == "cluster-bootstrap-percentile"
    assert cluster_bootstrap(spread, control) == wide  # fixed seed: reproducible


def test_cluster_bootstrap_of_a_clear_difference_excludes_zero() -> None:
    intervals = cluster_bootstrap([(30, 60)] * 5, [(3, 60)] * 5)
    assert 0.3 < intervals.difference.low < 0.45 < intervals.difference.high < 0.6
    assert intervals.control.low < 0.05 < intervals.control.high


def _null_rejections(
    mean: float, sd: float, seeds: int, episodes: int, replicates: int, shift: float = 0.0
) -> tuple[int, int]:
    """Rejections at ALPHA of the model-level test and of the episode-level exact
    Mantel-Haenszel test, over `replicates` simulated audits whose per-model rates are drawn
    from one beta distribution (mean, between-model sd) for both arms, plus `shift` for the
    student arm."""
    rng = np.random.default_rng(20261203)
    size = mean * (1 - mean) / sd**2 - 1
    a, b = mean * size, (1 - mean) * size
    new = old = 0
    for _ in range(replicates):
        student = rng.binomial(episodes, np.clip(rng.beta(a, b, seeds) + shift, 0, 1))
        control = rng.binomial(episodes, rng.beta(a, b, seeds))
        models = [(int(u), episodes) for u in student], [(int(u), episodes) for u in control]
        new += permutation_greater(*models, "m", paired=True).p_value < ALPHA
        strata = [
            (int(s), episodes, int(c), episodes) for s, c in zip(student, control, strict=True)
        ]
        old += mantel_haenszel_greater(strata, "e").p_value < ALPHA
    return new, old


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_false_positives_under_between_model_variance() -> None:
    # Per-model rates mean 10%, between-model sd 5% (the observed controls, 1, 5 and 3 of 60,
    # have mean 5% and sd 3.3%), 5 seeds per arm and 60 episodes per model, no effect.
    # Tolerance: the 99.9% quantile of Binomial(R, alpha), so a test whose false-positive rate
    # were exactly alpha would exceed it 1 time in 1000; the exact test's true rate is at most
    # 2/252 (p < 0.01 means p <= 2/252).
    replicates = 2000
    tolerance = binom.ppf(0.999, replicates, ALPHA)
    new, old = _null_rejections(0.10, 0.05, seeds=5, episodes=60, replicates=replicates)
    assert new <= tolerance
    assert old > tolerance
    assert old / replicates > 3 * ALPHA


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_model_level_test_has_power_against_a_planted_rise() -> None:
    new, _ = _null_rejections(0.10, 0.05, seeds=5, episodes=60, replicates=300, shift=0.25)
    assert new / 300 > 0.8
