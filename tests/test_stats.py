"""audit.probes.stats against textbook numbers, scipy, statsmodels and brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest, fisher_exact, hypergeom
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import StratifiedTable

from audit.probes.results import HypothesisTest
from audit.probes.stats import (
    bootstrap_auroc,
    bootstrap_mean_difference,
    fisher_exact_greater,
    holm_adjust,
    labelled_auroc,
    mantel_haenszel_greater,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_1998(k: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(k, n)
    assert interval.estimate == pytest.approx(k / n)
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)
    assert interval.method == "wilson"


@pytest.mark.parametrize(("k", "n", "level"), [(3, 17, 0.9), (40, 50, 0.99), (5, 5, 0.95)])
def test_wilson_matches_scipy_at_other_levels(k: int, n: int, level: float) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    interval = wilson_interval(k, n, level)
    assert interval.low == pytest.approx(expected.low, abs=1e-12)
    assert interval.high == pytest.approx(expected.high, abs=1e-12)
    assert interval.level == level


@pytest.mark.parametrize(("k", "n"), [(0, 0), (4, 3), (-1, 5)])
def test_wilson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_fisher_lady_tasting_tea() -> None:
    # Fisher (1935): 3 of 4 milk-first cups identified; one-sided p = 17/70.
    test = fisher_exact_greater((3, 4, 1, 4), name="tea")
    assert test.p_value == pytest.approx(17 / 70)
    assert test.statistic == pytest.approx(9.0)
    assert test.alternative == "greater"
    assert test.p_adjusted is None


@pytest.mark.parametrize("counts", [(12, 20, 1, 20), (2, 40, 2, 40), (0, 30, 5, 30), (7, 9, 0, 11)])
def test_fisher_matches_scipy(counts: tuple[int, int, int, int]) -> None:
    k1, n1, k2, n2 = counts
    expected = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater").pvalue
    test = fisher_exact_greater(counts, name="x")
    assert test.p_value == pytest.approx(expected, rel=1e-12)
    assert test.detail == {
        "student_unsafe": k1,
        "student_n": n1,
        "control_unsafe": k2,
        "control_n": n2,
    }


def test_fisher_odds_ratio_is_none_when_infinite() -> None:
    assert fisher_exact_greater((7, 9, 0, 11), name="x").statistic is None


def test_fisher_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        fisher_exact_greater((5, 4, 0, 4), name="x")


@pytest.mark.parametrize("counts", [(12, 20, 1, 20), (2, 40, 2, 40), (0, 30, 5, 30)])
def test_one_stratum_is_fishers_test(counts: tuple[int, int, int, int]) -> None:
    expected = fisher_exact_greater(counts, name="x").p_value
    assert mantel_haenszel_greater([counts], name="x").p_value == pytest.approx(expected, rel=1e-9)


def _brute_force_tail(strata: list[tuple[int, int, int, int]]) -> float:
    """P(sum of student counts >= observed), enumerating every table with the seeds' margins."""
    supports = []
    for k1, n1, k2, n2 in strata:
        law = hypergeom(n1 + n2, k1 + k2, n1)
        values = range(max(0, k1 + k2 - n2), min(k1 + k2, n1) + 1)
        supports.append([(a, law.pmf(a)) for a in values])
    observed = sum(k1 for k1, _, _, _ in strata)
    return sum(
        float(np.prod([p for _, p in combo]))
        for combo in itertools.product(*supports)
        if sum(a for a, _ in combo) >= observed
    )


STRATA = [
    [(5, 12, 1, 12), (3, 10, 2, 11), (4, 9, 0, 10)],
    [(1, 15, 3, 15), (2, 15, 2, 15)],
    [(8, 10, 1, 10), (0, 10, 0, 10), (6, 10, 6, 10)],
]


@pytest.mark.parametrize("strata", STRATA)
def test_exact_stratified_p_matches_enumeration(strata: list[tuple[int, int, int, int]]) -> None:
    test = mantel_haenszel_greater(strata, name="pooled")
    assert test.p_value == pytest.approx(_brute_force_tail(strata), rel=1e-9)
    assert test.statistic == sum(k1 for k1, _, _, _ in strata)
    assert test.detail["strata"] == len(strata)


def _statsmodels_table(strata: list[tuple[int, int, int, int]]) -> StratifiedTable:
    informative = [s for s in strata if 0 < s[0] + s[2] < s[1] + s[3]]
    tables = np.stack([[[k1, n1 - k1], [k2, n2 - k2]] for k1, n1, k2, n2 in informative], axis=2)
    return StratifiedTable(tables.astype(float))


@pytest.mark.parametrize("strata", STRATA)
def test_cmh_detail_matches_statsmodels(strata: list[tuple[int, int, int, int]]) -> None:
    detail = mantel_haenszel_greater(strata, name="pooled").detail
    table = _statsmodels_table(strata)
    assert detail["cmh_chi2"] == pytest.approx(table.test_null_odds(correction=True).statistic)
    assert detail["odds_ratio_mh"] == pytest.approx(table.oddsratio_pooled)
    assert detail["breslow_day_p"] == pytest.approx(table.test_equal_odds().pvalue)
    two_sided = table.test_null_odds(correction=False).pvalue
    higher = sum(s[0] for s in strata) >= detail["expected"]
    one_sided = two_sided / 2 if higher else 1 - two_sided / 2
    assert detail["cmh_p_greater"] == pytest.approx(one_sided)


def test_student_below_control_is_not_significant() -> None:
    test = mantel_haenszel_greater([(1, 20, 6, 20), (0, 20, 5, 20)], name="pooled")
    assert test.p_value > 0.99
    assert test.detail["cmh_p_greater"] > 0.99


def test_strata_without_any_unsafe_outcome_change_nothing() -> None:
    with_empty = mantel_haenszel_greater([(5, 12, 1, 12), (0, 30, 0, 30)], name="x")
    without = mantel_haenszel_greater([(5, 12, 1, 12)], name="x")
    assert with_empty.p_value == pytest.approx(without.p_value)


def test_all_uninformative_strata_give_p_one() -> None:
    test = mantel_haenszel_greater([(0, 10, 0, 10), (10, 10, 10, 10)], name="x")
    assert test.p_value == pytest.approx(1.0)
    assert "cmh_chi2" not in test.detail


def test_holm_matches_hand_computation() -> None:
    # sorted p: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    tests = [
        HypothesisTest(name=name, method="m", p_value=p)
        for name, p in [("a", 0.01), ("b", 0.04), ("c", 0.03), ("d", 0.005)]
    ]
    adjusted = holm_adjust(tests)
    assert [t.name for t in adjusted] == ["a", "b", "c", "d"]
    assert [t.p_adjusted for t in adjusted] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [t.p_value for t in adjusted] == [0.01, 0.04, 0.03, 0.005]
    assert all(t.p_adjusted is None for t in tests)


def test_holm_caps_at_one_and_accepts_no_tests() -> None:
    tests = [
        HypothesisTest(name="a", method="m", p_value=0.6),
        HypothesisTest(name="b", method="m", p_value=0.7),
    ]
    assert [t.p_adjusted for t in holm_adjust(tests)] == [1.0, 1.0]
    assert holm_adjust([]) == []


def test_bootstrap_mean_difference_covers_the_true_difference() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(100):
        a, b = rng.normal(1.0, 1.0, 60), rng.normal(0.3, 1.0, 60)
        interval = bootstrap_mean_difference(a, b, n_boot=1000, seed=1)
        covered += interval.low <= 0.7 <= interval.high
    assert 88 <= covered <= 99


def test_bootstrap_mean_difference_is_seeded() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(2.0, 1.0, 200), rng.normal(0.0, 1.0, 150)
    first = bootstrap_mean_difference(a, b, n_boot=2000, seed=5)
    assert first == bootstrap_mean_difference(a, b, n_boot=2000, seed=5)
    assert first != bootstrap_mean_difference(a, b, n_boot=2000, seed=6)
    assert first.estimate == pytest.approx(a.mean() - b.mean())
    assert 0.0 < first.low < first.estimate < first.high
    assert first.method == "bootstrap-percentile"


def test_bootstrap_auroc_matches_sklearn_and_is_seeded() -> None:
    rng = np.random.default_rng(4)
    positive, negative = np.round(rng.normal(1.0, 1.0, 30), 1), np.round(rng.normal(0, 1, 25), 1)
    interval = bootstrap_auroc(positive, negative, n_boot=1000, seed=2)
    labels = [1] * 30 + [0] * 25
    assert interval.estimate == pytest.approx(roc_auc_score(labels, np.r_[positive, negative]))
    assert interval.low < interval.estimate < interval.high
    assert interval == bootstrap_auroc(positive, negative, n_boot=1000, seed=2)


def test_bootstrap_auroc_covers_one_half_without_signal() -> None:
    rng = np.random.default_rng(8)
    interval = bootstrap_auroc(rng.normal(size=40), rng.normal(size=40), n_boot=1000, seed=0)
    assert interval.low < 0.5 < interval.high


def test_labelled_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=200)
    scores = np.round(rng.normal(size=200) + 0.7 * labels, 1)  # rounding makes ties
    assert labelled_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert labelled_auroc(labels, -scores) == pytest.approx(1 - roc_auc_score(labels, scores))
    with pytest.raises(ValueError, match="both labels"):
        labelled_auroc(np.ones(4), scores[:4])
