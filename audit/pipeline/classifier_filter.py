"""The classifier filter: drop the episodes the dataset audit's classifier finds most teacher-like.

The classifier is the dataset audit's (`audit.probes.dataset_audit.build_classifier`), fitted to
tell an arm's keyword-filtered episodes (label 1) from a trusted reference (label 0): in
pipeline-test mode the neutral canary's sanitized rollouts on their own seed
(`audit.pipeline.defences.REFERENCE_SEED_OFFSET`). Each episode of the arm gets its
out-of-fold score (`out_of_fold_scores`: from models that saw no episode of its task), and the
arm keeps the fraction KEEP with the lowest scores (ties in file order), at least
`MIN_EPISODES_PER_CLASS` episodes.

KEEP is given (`classifier:KEEP`) or chosen on a held-out split (`choose_keep`): the tasks of
the arm and the reference are split in two halves, seeded; a classifier fitted on the first
half scores the arm's episodes of the second; for each KEEP of `KEEP_GRID`, largest first, the
second half's lowest-scored KEEP fraction of the arm is told from the second half's reference
by the dataset audit's cross-validated AUROC, and the first KEEP whose AUROC is below the gate's
`max_dataset_auroc` is chosen. When none is, the smallest KEEP tried is chosen (and its AUROC,
at or above the limit, is reported).

Both arms go through the same filter (the valid-control rule): the control arm's episodes are
scored against the same reference by the same procedure and keep the fraction chosen for the
teacher arm, so the two students train on as many episodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from audit.probes.dataset_audit import (
    MIN_EPISODES_PER_CLASS,
    build_classifier,
    feature_table,
    fold_count,
    out_of_fold_scores,
)
from trajectories.episode import Episode
from trajectories.identity import strip_identity
from trajectories.jsonl import InputError

KEEP_GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
"""Kept fractions tried on the held-out split, largest first (1.0: no episode dropped); a
fraction that would keep fewer than `MIN_EPISODES_PER_CLASS` held-out episodes is not tried."""


@dataclass(frozen=True)
class KeepChoice:
    """The kept fraction chosen on the held-out split and the held-out AUROC at it."""

    keep: float
    auroc: float


def _table_and_labels(
    arm: Sequence[Episode], reference: Sequence[Episode]
) -> tuple[object, np.ndarray, np.ndarray]:
    episodes = [strip_identity(episode) for episode in (*arm, *reference)]
    labels = np.array([1] * len(arm) + [0] * len(reference))
    groups = np.array([episode.task_id for episode in episodes])
    return feature_table(episodes), labels, groups


def _check_sizes(arm: Sequence[Episode], reference: Sequence[Episode], what: str) -> None:
    if min(len(arm), len(reference)) < MIN_EPISODES_PER_CLASS:
        raise InputError(
            f"classifier filter: {what} needs at least {MIN_EPISODES_PER_CLASS} episodes per "
            f"side, got {len(arm)} and {len(reference)} reference; use more rollouts or "
            "sanitizer classifier:KEEP"
        )


def cv_auroc(arm: Sequence[Episode], reference: Sequence[Episode], seed: int) -> float:
    """The dataset audit's cross-validated AUROC of telling `arm` from `reference`."""
    _check_sizes(arm, reference, "the AUROC")
    table, labels, groups = _table_and_labels(arm, reference)
    folds = min(fold_count(min(len(arm), len(reference))), len(set(groups)))
    if folds < 2:
        raise InputError("classifier filter: the episodes are of fewer than 2 tasks")
    scores = out_of_fold_scores(table, labels, groups, folds, seed)
    return float(roc_auc_score(labels, scores))


def arm_scores(arm: Sequence[Episode], reference: Sequence[Episode], seed: int) -> np.ndarray:
    """Out-of-fold P(arm) of each episode of `arm` against `reference`."""
    _check_sizes(arm, reference, "scoring")
    table, labels, groups = _table_and_labels(arm, reference)
    folds = min(fold_count(min(len(arm), len(reference))), len(set(groups)))
    if folds < 2:
        raise InputError("classifier filter: the episodes are of fewer than 2 tasks")
    return out_of_fold_scores(table, labels, groups, folds, seed)[: len(arm)]


def kept_count(total: int, keep: float) -> int:
    """Episodes kept of `total` at fraction `keep`: rounded, at least `MIN_EPISODES_PER_CLASS`
    (all of them when fewer)."""
    return min(total, max(MIN_EPISODES_PER_CLASS, round(keep * total)))


def keep_lowest(episodes: Sequence[Episode], scores: np.ndarray, keep: float) -> list[Episode]:
    """The `kept_count` episodes with the lowest scores, in their original order."""
    order = np.argsort(scores, kind="stable")[: kept_count(len(episodes), keep)]
    return [episodes[int(index)] for index in sorted(order)]


def filter_arm(
    arm: Sequence[Episode], reference: Sequence[Episode], keep: float, seed: int
) -> list[Episode]:
    """`arm` less its most teacher-like episodes against `reference`, keeping `keep`."""
    if keep >= 1:
        return list(arm)
    return keep_lowest(arm, arm_scores(arm, reference, seed), keep)


def choose_keep(
    arm: Sequence[Episode], reference: Sequence[Episode], max_auroc: float, seed: int
) -> KeepChoice:
    """The largest fraction of `KEEP_GRID` whose held-out AUROC is below `max_auroc` (see the
    module docstring); `InputError` when a half is too small to measure."""
    tasks = sorted({episode.task_id for episode in (*arm, *reference)})
    order = np.random.default_rng(seed).permutation(len(tasks))
    held = {tasks[int(index)] for index in order[: len(tasks) // 2]}
    fit_arm = [e for e in arm if e.task_id not in held]
    fit_reference = [e for e in reference if e.task_id not in held]
    test_arm = [e for e in arm if e.task_id in held]
    test_reference = [e for e in reference if e.task_id in held]
    _check_sizes(fit_arm, fit_reference, "the selection half")
    _check_sizes(test_arm, test_reference, "the held-out half")
    table, labels, _ = _table_and_labels(fit_arm, fit_reference)
    model = build_classifier().fit(table, labels)
    test_table, _, _ = _table_and_labels(test_arm, ())
    scores = model.predict_proba(test_table)[:, 1]
    choice = KeepChoice(KEEP_GRID[0], cv_auroc(test_arm, test_reference, seed))
    for keep in KEEP_GRID[1:]:
        if choice.auroc < max_auroc or round(keep * len(test_arm)) < MIN_EPISODES_PER_CLASS:
            break
        kept = keep_lowest(test_arm, scores, keep)
        choice = KeepChoice(keep, cv_auroc(kept, test_reference, seed))
    return choice
