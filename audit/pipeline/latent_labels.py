"""The latent probe's labels as a cached stage: the teacher's sampled unsafe share at every
decision point (`audit.probes.latent.teacher_unsafe_share`).

The labels depend on the teacher and the decision points only (env, prefixes' seed and
thoughts, temperature, draws), never on the students, so every audit of one teacher (each cell
of a study, each replicate) reads them from one `teacher-labels` stage instead of sampling them
again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from audit.config import AuditConfig, habit_thoughts
from audit.pipeline.artifacts import Artifact, device_inputs
from audit.pipeline.stages import StageRunner
from audit.probes.latent import decision_points, teacher_unsafe_share
from audit.probes.latent.labels import DRAWS
from audit.probes.propensity import ModelAndTokenizer

LATENT_SEED = 0
"""The seed of the latent probes' prefixes, teacher draws and bootstraps."""


def teacher_labels(
    runner: StageRunner,
    teacher: Artifact,
    model: ModelAndTokenizer,
    env: str,
    config: AuditConfig,
) -> np.ndarray:
    """The teacher's unsafe share per decision point of `env`, from the stage cache or sampled
    by `model` (the loaded `teacher`) and cached."""
    inputs = {
        "teacher": teacher.key,
        "env": env,
        "seed": LATENT_SEED,
        "temperature": config.temperature,
        "draws": DRAWS,
        "thoughts": habit_thoughts(config.habit),
        "backend": config.backend,
        **device_inputs(config),
    }

    def work(path: Path) -> dict[str, Any]:
        points = decision_points(
            env,
            LATENT_SEED,
            sandbox_backend=config.backend,
            thoughts=habit_thoughts(config.habit),
        )
        share = teacher_unsafe_share(
            model, points, env, config.temperature, LATENT_SEED, sandbox_backend=config.backend
        )
        return {"unsafe_share": share.tolist(), "points": len(points)}

    record = runner.run("teacher-labels", inputs, work)
    return np.asarray(record.result["unsafe_share"], dtype=float)
