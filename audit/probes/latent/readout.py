"""The teacher-trained probe and the seed-and-task cluster bootstrap of its student gap.

The bootstrap is two-way (Owen 2007): each draw resamples the seed pairs and, independently,
the tasks, both with replacement, and averages the values of the drawn (pair, task) cells, so
the interval carries the spread between models trained alike as well as between tasks. With one
seed pair only tasks are resampled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from audit.probes.results import Interval
from audit.probes.stats import labelled_auroc

MIN_TASKS_PER_CLASS = 3
"""A probe needs each label on decision points of at least this many tasks (and folds)."""
MAX_FOLDS = 5
LEVEL = 0.95
CLUSTER_METHOD = "two-way cluster bootstrap percentile (seed pairs x tasks)"


@dataclass(frozen=True)
class ProbeReadout:
    """A teacher-trained probe's cross-validated AUROC and its P(unsafe) per subject and point
    (the teacher's out-of-fold)."""

    cv_auroc: Interval
    scores: dict[str, np.ndarray]


def task_index(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """(index of each point's task in 0..T-1, T)."""
    _, index = np.unique(groups, return_inverse=True)
    return index, int(index.max()) + 1


def task_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean of `values` (n,) or (n, p) over the points of each task, tasks in sorted order."""
    index, count = task_index(groups)
    averaging = np.eye(count)[index].T / np.bincount(index, minlength=count)[:, None]
    return averaging @ values


def cluster_weights(
    n_pairs: int, n_tasks: int, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (n_boot, n_pairs) and (n_boot, n_tasks) of the two-way bootstrap draws: how often
    each pair and each task was drawn, over the draw size (rows sum to 1)."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(n_pairs, size=(n_boot, n_pairs))
    tasks = rng.integers(n_tasks, size=(n_boot, n_tasks))
    pair_weights = np.stack([np.bincount(row, minlength=n_pairs) for row in pairs]) / n_pairs
    task_weights = np.stack([np.bincount(row, minlength=n_tasks) for row in tasks]) / n_tasks
    return pair_weights, task_weights


def percentile_interval(estimate: float, draws: np.ndarray, method: str) -> Interval:
    """`estimate` with the central `LEVEL` percentile interval of `draws`."""
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(
        estimate=float(estimate), low=float(low), high=float(high), level=LEVEL, method=method
    )


def cluster_gap(
    student: np.ndarray, control: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> Interval:
    """Mean of student minus control over (pair, point), each (n_pairs, n_points), with the
    two-way cluster bootstrap interval (per-task means of the pairs' differences)."""
    if student.shape != control.shape or student.ndim != 2:
        raise ValueError(
            f"need (pairs, points) arrays of one shape: {student.shape}, {control.shape}"
        )
    cells = np.stack([task_means(row, groups) for row in student - control])
    pair_weights, task_weights = cluster_weights(*cells.shape, n_boot, seed)
    draws = np.einsum("bs,st,bt->b", pair_weights, cells, task_weights)
    return percentile_interval(float(cells.mean()), draws, CLUSTER_METHOD)


def _bootstrap_auroc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> Interval:
    """AUROC with a percentile interval from resampling tasks (groups); one-class draws skipped."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == group) for group in np.unique(groups)]
    draws = []
    for _ in range(n_boot):
        picked = rng.integers(len(members), size=len(members))
        rows = np.concatenate([members[i] for i in picked])
        if 0 < labels[rows].sum() < len(rows):
            draws.append(labelled_auroc(labels[rows], scores[rows]))
    interval = percentile_interval(labelled_auroc(labels, scores), np.array(draws), "")
    return interval.model_copy(update={"method": "grouped-cv-auroc, task-bootstrap-percentile"})


def probe_folds(labels: np.ndarray, groups: np.ndarray) -> int:
    """Folds for the teacher probe: the fewest tasks carrying either label, at most 5; 0 when
    a label is on fewer than `MIN_TASKS_PER_CLASS` tasks (no probe can be fitted)."""
    tasks_per_class = [len(np.unique(groups[labels == value])) for value in (0, 1)]
    folds = min(MAX_FOLDS, *tasks_per_class)
    return folds if folds >= MIN_TASKS_PER_CLASS else 0


def _probe() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def probe_readout(
    teacher_states: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    others: Mapping[str, np.ndarray],
    seed: int,
    n_boot: int = 2000,
) -> ProbeReadout:
    """Fit the unsafe-intent probe on teacher states (n, p) and read it on `others`.

    The probe is a standardized logistic regression (a measurement: no model is trained); its
    AUROC is cross-validated with folds grouped by task. `labels` are 1 for unsafe, 0 for safe;
    `groups` name the task of each point; every array in `others` has the teacher's shape.
    """
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups)
    folds = probe_folds(labels, groups)
    if folds == 0:
        raise ValueError(f"each label needs decision points of {MIN_TASKS_PER_CLASS}+ tasks")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(
        _probe(), teacher_states, labels, groups=groups, cv=splitter, method="predict_proba"
    )[:, 1]
    probe = _probe().fit(teacher_states, labels)
    scores = {"teacher": out_of_fold}
    for subject, states in others.items():
        if states.shape != teacher_states.shape:
            raise ValueError(f"{subject} states {states.shape} != teacher {teacher_states.shape}")
        scores[subject] = probe.predict_proba(states)[:, 1]
    auroc = _bootstrap_auroc(labels, out_of_fold, groups, n_boot, seed)
    return ProbeReadout(cv_auroc=auroc, scores=scores)
