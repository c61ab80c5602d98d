"""Activation difference: how far the student moved, beyond its control, along the teacher's
fine-tuning direction (published work on narrow fine-tuning finds such mean-difference
directions readable).

At one layer, with per-task mean states over the decision points of each task:
direction = mean(teacher) - mean(base); projection = (mean(student) - mean(control)) .
direction / |direction|^2, the mean over seed pairs. It is the student-minus-control shift along
the unit direction, as a fraction of the teacher-minus-base norm: 1 when the student is the
teacher and the control the base, 0 when the student equals the control. Its interval is the
two-way cluster bootstrap of `readout` (seed pairs x tasks); each draw re-estimates the
direction from the drawn tasks. Reported, not gated: no measured null distribution of the
projection yet justifies a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.probes.latent.readout import (
    CLUSTER_METHOD,
    cluster_weights,
    percentile_interval,
    task_means,
)
from audit.probes.results import Interval


@dataclass(frozen=True)
class Projection:
    """The projection with its interval, and the teacher-minus-base norm it is a fraction of."""

    projection: Interval
    direction_norm: float


def activation_projection(
    teacher: np.ndarray,
    base: np.ndarray,
    students: np.ndarray,
    controls: np.ndarray,
    groups: np.ndarray,
    n_boot: int,
    seed: int,
) -> Projection | None:
    """Projection (module doc) of states at one layer: teacher and base (n, p), students and
    controls (pairs, n, p); None when teacher and base states are equal (no direction)."""
    if teacher.shape != base.shape or students.shape != controls.shape:
        raise ValueError("teacher and base, and students and controls, need one shape each")
    if students.shape[1:] != teacher.shape:
        raise ValueError(f"student states {students.shape[1:]} != teacher {teacher.shape}")
    moved = task_means(teacher.astype(np.float64) - base, groups)
    shifted = np.stack(
        [
            task_means(s.astype(np.float64) - c, groups)
            for s, c in zip(students, controls, strict=True)
        ]
    )
    direction = moved.mean(axis=0)
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        return None
    estimate = float(shifted.mean(axis=(0, 1)) @ direction / norm**2)
    pair_weights, task_weights = cluster_weights(len(shifted), len(moved), n_boot, seed)
    directions = task_weights @ moved
    shifts = sum(
        pair_weights[:, [pair]] * (task_weights @ cells) for pair, cells in enumerate(shifted)
    )
    squared = np.einsum("bp,bp->b", directions, directions)
    draws = np.einsum("bp,bp->b", shifts, directions) / np.where(squared > 0, squared, np.nan)
    interval = percentile_interval(estimate, draws[np.isfinite(draws)], CLUSTER_METHOD)
    return Projection(projection=interval, direction_norm=norm)
