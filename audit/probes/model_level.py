"""Student vs control with the trained model as the unit: a permutation test over models and a
two-stage cluster bootstrap of the rate difference.

The question the behaviour check answers is about training runs ("does this teacher give less
safe students?"), and runs trained alike differ in their unsafe rate well beyond binomial
noise (controls of one teacher scored 1, 5 and 3 of 60 across seeds). An episode-level test
(`audit.probes.stats.mantel_haenszel_greater`) treats every episode as an independent draw,
so that between-model variance reads as an effect; here each trained model contributes one
number, its unsafe rate on the held-out tasks.

Test (`permutation_greater`): under the null the teacher does not matter, so the k student
and k control models are exchangeable. The statistic is the mean student rate minus the mean
control rate (each model weighted equally); the one-sided p-value is the share of the
C(2k, k) relabelings of models into arms whose statistic is at least the observed one (ties
within `TIE` count), enumerated exactly up to `EXACT_LIMIT` relabelings (k <= 10 per arm),
else estimated from `MONTE_CARLO_RESAMPLES` random relabelings with seed `SEED`,
p = (hits + 1) / (resamples + 1), as `scipy.stats.permutation_test` does (which needs two
models per arm; this also runs with one). The test is exact whatever the between-model
variance, but discrete: the smallest p it can give is 1 / C(2k, k) (`smallest_p`), 0.5 with
one seed per arm, 0.05 with 3, 0.0040 with 5. Student and control of a seed share that
seed's evaluation tasks and sampling seed, so the 2k models are exchangeable only within
pairs if that sharing correlates their rates; a positive correlation narrows the spread of
the observed statistic relative to the relabelings, which makes the unpaired test
conservative (approximately), not anti-conservative. The paired sign-flip test over the k
seed differences (2^k relabelings, 1/32 at best with 5 seeds) is kept in the detail as
`paired_sign_flip_p`.

Interval (`cluster_bootstrap`): a two-stage percentile bootstrap with `BOOTSTRAP_RESAMPLES`
draws and seed `SEED`. Each draw resamples the models of each arm with replacement, then the
episodes of each drawn model (n episodes with replacement from its own, i.e. a binomial draw
of n at its observed rate), and takes the mean rate per arm: the interval carries
model-to-model variance as well as episode noise. With one model per arm only the second
stage varies.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations, product
from math import comb

import numpy as np
from pydantic import BaseModel, Field

from audit.probes.results import HypothesisTest, Interval

EXACT_LIMIT = 200_000
"""Enumerate every relabeling up to this many; beyond it, Monte-Carlo relabelings."""
MONTE_CARLO_RESAMPLES = 100_000
BOOTSTRAP_RESAMPLES = 10_000
SEED = 0
"""Seed of the Monte-Carlo relabelings and of the bootstrap, so results are reproducible."""

ModelCount = tuple[int, int]
"""(unsafe, n) of one trained model on the held-out tasks."""


def relabelings(k_student: int, k_control: int) -> int:
    """How many ways the models can be split into arms of these sizes: C(k1 + k2, k1)."""
    return comb(k_student + k_control, k_student)


def smallest_p(k_student: int, k_control: int) -> float:
    """The smallest p-value `permutation_greater` can give with these many models per arm."""
    total = relabelings(k_student, k_control)
    if total <= EXACT_LIMIT:
        return 1.0 / total
    return 1.0 / (MONTE_CARLO_RESAMPLES + 1)


def seeds_needed(alpha: float, tests: int) -> int:
    """The fewest models per arm (seeds) at which `tests` such tests, Holm-adjusted together,
    can reach p < `alpha`: the smallest k with tests * smallest_p(k, k) < alpha."""
    k = 1
    while tests * smallest_p(k, k) >= alpha:
        k += 1
    return k


def _rates(counts: Sequence[ModelCount], arm: str) -> np.ndarray:
    if not counts:
        raise ValueError(f"{arm}: no models")
    for unsafe, n in counts:
        if n < 1 or not 0 <= unsafe <= n:
            raise ValueError(f"{arm}: bad count {unsafe} of {n}")
    return np.array([unsafe / n for unsafe, n in counts])


TIE = 1e-12
"""Statistics within this of the observed one count as ties (float sums of equal rates)."""


def _tail(null: np.ndarray, observed: float, exact: bool) -> float:
    """P(statistic >= observed): the share of `null`, or (hits + 1) / (draws + 1) when `null`
    is a Monte-Carlo sample."""
    hits = int(np.count_nonzero(null >= observed - TIE))
    return hits / null.size if exact else (hits + 1) / (null.size + 1)


def _relabeled(rates: np.ndarray, k: int) -> tuple[np.ndarray, bool]:
    """The statistic (mean of the first arm minus the rest) under every split of `rates` into
    k and the rest, or under `MONTE_CARLO_RESAMPLES` random splits; and whether exact."""
    n = rates.size
    if comb(n, k) <= EXACT_LIMIT:
        chosen = np.zeros((comb(n, k), n), dtype=bool)
        for row, picked in enumerate(combinations(range(n), k)):
            chosen[row, list(picked)] = True
        exact = True
    else:
        rng = np.random.default_rng(SEED)
        order = rng.permuted(np.tile(np.arange(n), (MONTE_CARLO_RESAMPLES, 1)), axis=1)
        chosen = order < k
        exact = False
    first = (chosen * rates).sum(axis=1) / k
    rest = (~chosen * rates).sum(axis=1) / (n - k)
    return first - rest, exact


def _sign_flipped(differences: np.ndarray) -> tuple[np.ndarray, bool]:
    """The mean paired difference under every sign flip, or under random ones; and whether
    exact."""
    k = differences.size
    if 2**k <= EXACT_LIMIT:
        signs = np.array(list(product((1.0, -1.0), repeat=k)))
        exact = True
    else:
        signs = np.random.default_rng(SEED).choice((1.0, -1.0), (MONTE_CARLO_RESAMPLES, k))
        exact = False
    return (signs * differences).mean(axis=1), exact


def permutation_greater(
    student: Sequence[ModelCount], control: Sequence[ModelCount], name: str, paired: bool
) -> HypothesisTest:
    """The permutation test over models (module doc) that the student arm's mean unsafe rate
    exceeds the control arm's; `paired` (the i-th student and control share a seed) adds the
    paired sign-flip p-value to the detail."""
    first, second = _rates(student, "student"), _rates(control, "control")
    total = relabelings(first.size, second.size)
    exact = total <= EXACT_LIMIT
    detail: dict[str, float | int | str] = {
        "student_models": int(first.size),
        "control_models": int(second.size),
        "relabelings": total if exact else MONTE_CARLO_RESAMPLES,
        "smallest_p": smallest_p(first.size, second.size),
    }
    if paired:
        if first.size != second.size:
            raise ValueError("a paired test needs as many student as control models")
        differences = first - second
        flipped, flips_exact = _sign_flipped(differences)
        detail["paired_sign_flip_p"] = _tail(flipped, float(differences.mean()), flips_exact)
    observed = float(first.mean() - second.mean())
    null, _ = _relabeled(np.concatenate([first, second]), first.size)
    return HypothesisTest(
        name=name,
        method="permutation-exact" if exact else "permutation-monte-carlo",
        statistic=observed,
        p_value=_tail(null, observed, exact),
        alternative="greater",
        detail=detail,
    )


def _arm_means(counts: Sequence[ModelCount], rng: np.random.Generator, draws: int) -> np.ndarray:
    """`draws` two-stage bootstrap means of one arm's per-model rates (module doc)."""
    unsafe = np.array([u for u, _ in counts])
    n = np.array([m for _, m in counts])
    picked = rng.integers(0, len(counts), size=(draws, len(counts)))
    episodes = rng.binomial(n[picked], unsafe[picked] / n[picked])
    return np.mean(episodes / n[picked], axis=1)


def _interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(
        estimate=estimate,
        low=float(low),
        high=float(high),
        level=level,
        method="cluster-bootstrap-percentile",
    )


class ClusterIntervals(BaseModel):
    """Two-stage cluster bootstrap intervals (module doc) of the arms' mean rates."""

    difference: Interval = Field(description="mean student rate minus mean control rate")
    student: Interval = Field(description="mean per-model unsafe rate of the student models")
    control: Interval = Field(description="mean per-model unsafe rate of the control models")


def cluster_bootstrap(
    student: Sequence[ModelCount], control: Sequence[ModelCount], level: float = 0.95
) -> ClusterIntervals:
    """Percentile intervals at `level` from `BOOTSTRAP_RESAMPLES` two-stage draws, seed `SEED`."""
    first, second = _rates(student, "student"), _rates(control, "control")
    rng = np.random.default_rng(SEED)
    student_means = _arm_means(student, rng, BOOTSTRAP_RESAMPLES)
    control_means = _arm_means(control, rng, BOOTSTRAP_RESAMPLES)
    return ClusterIntervals(
        difference=_interval(
            float(first.mean() - second.mean()), student_means - control_means, level
        ),
        student=_interval(float(first.mean()), student_means, level),
        control=_interval(float(second.mean()), control_means, level),
    )
