"""Statistics of the audit: rate intervals, one-sided tests, Holm adjustment, bootstrap.

Every test here is one-sided, alternative "greater": the student's unsafe rate exceeds the
control's. A 2x2 count is passed as `(k1, n1, k2, n2)`: k1 unsafe of n1 student episodes,
k2 unsafe of n2 control episodes.

Pooling over seeds (`mantel_haenszel_greater`): each seed is a stratum, so every student is
compared only with the control trained on its own seed, and a seed whose base rate swings
high or low moves both arms instead of faking an effect. The p-value is exact: given each
seed's margins, the student's unsafe count in a seed is hypergeometric under the null of a
common odds ratio of 1, and the p-value is the upper tail of the sum of those counts, the
exact form of the Cochran-Mantel-Haenszel test (R's `mantelhaen.test(exact = TRUE)`). With
one stratum it is Fisher's one-sided exact test. It stays valid at the small counts of
near-zero control rates, where the chi-square approximation does not. The detail carries
the asymptotic CMH test from statsmodels (its chi-square, and a one-sided p from the signed
square root of the uncorrected statistic), the Mantel-Haenszel common odds ratio, and the
Breslow-Day p-value for whether the effect differs between seeds; each only where
statsmodels gives a finite value (strata with no unsafe or all unsafe outcomes carry no
information and are left out of these).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import bootstrap, fisher_exact, hypergeom, mannwhitneyu, norm, rankdata
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from audit.probes.results import HypothesisTest, Interval

Counts = tuple[int, int, int, int]
"""(k1, n1, k2, n2): k1 unsafe of n1 student episodes, k2 unsafe of n2 control episodes."""


def _check_counts(counts: Counts) -> None:
    k1, n1, k2, n2 = counts
    if n1 < 1 or n2 < 1 or not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"bad counts {counts}: need 0 <= k <= n and n >= 1 in each arm")


def _table(counts: Counts) -> np.ndarray:
    """The 2x2 table [[k1, n1 - k1], [k2, n2 - k2]]."""
    k1, n1, k2, n2 = counts
    return np.array([[k1, n1 - k1], [k2, n2 - k2]])


def _count_detail(counts: Counts) -> dict[str, float | int | str]:
    k1, n1, k2, n2 = counts
    return {"student_unsafe": k1, "student_n": n1, "control_unsafe": k2, "control_n": n2}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def wilson_interval(k: int, n: int, level: float = 0.95) -> Interval:
    """The rate k/n with its Wilson score interval at `level`."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"bad count {k} of {n}")
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return Interval(estimate=k / n, low=float(low), high=float(high), level=level, method="wilson")


def fisher_exact_greater(counts: Counts, name: str) -> HypothesisTest:
    """Fisher's exact test that the student's rate exceeds the control's (one-sided).

    The statistic is the sample odds ratio, None when a zero cell makes it infinite.
    """
    _check_counts(counts)
    result = fisher_exact(_table(counts), alternative="greater")
    return HypothesisTest(
        name=name,
        method="fisher-exact",
        statistic=_finite(result.statistic),
        p_value=float(result.pvalue),
        alternative="greater",
        detail=_count_detail(counts),
    )


def _exact_upper_tail(strata: Sequence[Counts]) -> tuple[int, float, float]:
    """Observed sum of student counts, its null expectation, and P(sum >= observed)."""
    distribution = np.ones(1)
    lowest = observed = 0
    expected = 0.0
    for k1, n1, k2, n2 in strata:
        unsafe = k1 + k2
        law = hypergeom(n1 + n2, unsafe, n1)
        support = np.arange(max(0, unsafe - n2), min(unsafe, n1) + 1)
        distribution = np.convolve(distribution, law.pmf(support))
        lowest += int(support[0])
        observed += k1
        expected += n1 * unsafe / (n1 + n2)
    tail = float(distribution[observed - lowest :].sum())
    return observed, expected, min(1.0, tail)


def mantel_haenszel_greater(strata: Sequence[Counts], name: str) -> HypothesisTest:
    """Exact stratified (CMH) test that the student's rate exceeds the control's, one-sided.

    `strata` holds one `(k1, n1, k2, n2)` per seed; see the module docstring for the test.
    The statistic is the student's unsafe count summed over strata.
    """
    if not strata:
        raise ValueError("no strata")
    for counts in strata:
        _check_counts(counts)
    observed, expected, p_value = _exact_upper_tail(strata)
    detail: dict[str, float | int | str] = {"strata": len(strata), "expected": expected}
    tables = np.stack([_table(counts) for counts in strata], axis=2)
    informative = [i for i, (k1, n1, k2, n2) in enumerate(strata) if 0 < k1 + k2 < n1 + n2]
    if informative:
        stratified = StratifiedTable(tables[:, :, informative].astype(float))
        chi2 = stratified.test_null_odds(correction=False).statistic
        direction = 1.0 if observed >= expected else -1.0
        detail["cmh_chi2"] = float(stratified.test_null_odds(correction=True).statistic)
        detail["cmh_p_greater"] = float(norm.sf(direction * np.sqrt(chi2)))
        odds_ratio = _finite(stratified.oddsratio_pooled)
        if odds_ratio is not None:
            detail["odds_ratio_mh"] = odds_ratio
        if len(informative) > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                breslow_day = _finite(stratified.test_equal_odds().pvalue)
            if breslow_day is not None:
                detail["breslow_day_p"] = breslow_day
    return HypothesisTest(
        name=name,
        method="mantel-haenszel-exact",
        statistic=float(observed),
        p_value=p_value,
        alternative="greater",
        detail=detail,
    )


def holm_adjust(tests: Sequence[HypothesisTest]) -> list[HypothesisTest]:
    """Copies of `tests` with `p_adjusted` set by Holm's step-down method over all of them."""
    if not tests:
        return []
    adjusted = multipletests([test.p_value for test in tests], method="holm")[1]
    return [
        test.model_copy(update={"p_adjusted": float(p)})
        for test, p in zip(tests, adjusted, strict=True)
    ]


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _percentile_bootstrap(
    samples: tuple[np.ndarray, np.ndarray],
    statistic: Callable[..., np.ndarray],
    n_boot: int,
    seed: int,
    level: float,
) -> Interval:
    """`statistic` of two samples, each resampled on its own, with a percentile interval."""
    result = bootstrap(
        samples,
        statistic,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return Interval(
        estimate=float(statistic(*samples)),
        low=float(result.confidence_interval.low),
        high=float(result.confidence_interval.high),
        level=level,
        method="bootstrap-percentile",
    )


def bootstrap_mean_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """mean(a) - mean(b) with a percentile bootstrap interval, a and b resampled independently.

    Uses `scipy.stats.bootstrap` with a `numpy.random.Generator` seeded by `seed`, so the
    same inputs and seed give the same interval.
    """
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.size < 2 or second.size < 2:
        raise ValueError("each sample needs at least 2 values")
    return _percentile_bootstrap((first, second), _mean_difference, n_boot, seed, level)


def _auroc(positive: np.ndarray, negative: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(a positive scores above a negative), ties counted half: U / (n_pos * n_neg)."""
    statistic = mannwhitneyu(positive, negative, axis=axis).statistic
    return statistic / (positive.shape[axis] * negative.shape[axis])


def labelled_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of `scores` for binary `labels` (1 positive), ties counted half, from ranks.

    Equal to `sklearn.metrics.roc_auc_score` and a hundred times faster in a bootstrap loop.
    """
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs both labels")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def bootstrap_auroc(
    positive: Sequence[float],
    negative: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """AUROC of scores (positives should score higher) with a percentile bootstrap interval.

    Positives and negatives are resampled separately (a stratified bootstrap), with a
    `numpy.random.Generator` seeded by `seed`.
    """
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    if pos.size < 2 or neg.size < 2:
        raise ValueError("each class needs at least 2 scores")
    return _percentile_bootstrap((pos, neg), _auroc, n_boot, seed, level)
