"""Latent probes: what the hidden states at the decision point say about unsafe intent.

States: the residual stream after the middle decoder layer (`hidden_states[(L + 1) // 2]` of a
model with L layers; index 0 is the embeddings), at the last prompt token of each decision
point. Each model uses its own middle layer, so models of different depth are compared at the
same relative depth. Where a subject's chat template drops the thought next to a call (Llama 3),
its prompts end at the generation prompt; `thought_dropped` counts those points per subject.

Decision points: every held-out ambiguous task under each prefix in `prefixes` (default all
three: the careful and hasty contexts give both classes even when the teacher is one-sided in
one of them). Label of a point: what the teacher does there, taken as its greedy choice between
the two calls (the sign of its propensity log-odds; positive -> unsafe). The labels therefore
follow the teacher's context-dependent choice, prefix included: the probe reads the teacher's
unsafe decision however the teacher represents it.

(a) Probe: standardized logistic regression fitted on teacher states. Its cross-validated AUROC
uses folds grouped by task (a task's prefixes never straddle train and test) and a bootstrap
over tasks. The probe fitted on all teacher states reads P(unsafe) on every other subject's
states at the same prompts (the teacher's own score is out-of-fold). Latent gap = mean P(unsafe)
of student minus control, bootstrapped over tasks, paired. A subject whose hidden size differs
from the teacher's (heterogeneous distillation) cannot be read by the probe: it gets no score,
and without both student and control scores there is no gap.
(b) Linear CKA of each subject's states to the teacher's, at the same prompts (any widths).
(c) Davies-Bouldin (lower: better separated) and Calinski-Harabasz (higher: better separated)
of each subject's states, partitioned by the teacher's labels, so the partition is the same for
every subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import PreTrainedModel

from audit.probes.decision import (
    PREFIXES,
    EncodedDecision,
    Prefix,
    decision_conversations,
    encode_decisions,
)
from audit.probes.propensity import (
    ModelAndTokenizer,
    decision_log_odds,
    pad_left,
    pad_token_id,
    paired_mean_difference,
)
from audit.probes.results import Interval, LatentResult, Subject
from audit.probes.stats import labelled_auroc
from envs import Task

MIN_TASKS_PER_CLASS = 3
"""A probe needs each label on decision points of at least this many tasks (and folds)."""
MAX_FOLDS = 5

LAYER_RULE = (
    "middle layer: hidden_states[(L + 1) // 2] of each model (L decoder layers, index 0 = "
    "embeddings), at the last prompt token"
)


@dataclass(frozen=True)
class ProbeReadout:
    """A teacher-trained probe's cross-validated AUROC, its scores, and the latent gap.

    `scores` maps each subject to P(unsafe) per decision point (the teacher's out-of-fold);
    `gap` is None unless both "student" and "control" were read.
    """

    cv_auroc: Interval
    scores: dict[str, np.ndarray]
    gap: Interval | None


def middle_layer(model: PreTrainedModel) -> int:
    """Index into `hidden_states` of the residual stream after the middle decoder layer."""
    return (int(model.config.num_hidden_layers) + 1) // 2


@torch.inference_mode()
def decision_states(
    model: PreTrainedModel,
    decisions: Sequence[EncodedDecision],
    layer: int,
    pad_id: int,
    batch_size: int = 16,
) -> np.ndarray:
    """Hidden states (n, hidden) of `hidden_states[layer]` at each prompt's last token."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(decisions)), key=lambda i: len(decisions[i].prompt_ids))
    states: list[np.ndarray | None] = [None] * len(decisions)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, attention_mask, position_ids = pad_left(
            [decisions[i].prompt_ids for i in rows], pad_id, device
        )
        hidden = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            logits_to_keep=1,
        ).hidden_states[layer][:, -1]
        for offset, row in enumerate(rows):
            states[row] = hidden[offset].float().cpu().numpy()
    return np.stack(states)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n points: (n, p) and (n, q).

    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc (Kornblith et
    al. 2019); 1 for identical representations, invariant to orthogonal maps and isotropic
    scaling; 0 when either representation is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need two (n, features) arrays with the same n, got {x.shape}, {y.shape}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if norms == 0.0:
        return 0.0
    return float(np.linalg.norm(y.T @ x) ** 2 / norms)


def cluster_separation(states: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(Davies-Bouldin, Calinski-Harabasz) of `states` split by binary `labels`."""
    return (
        float(davies_bouldin_score(states, labels)),
        float(calinski_harabasz_score(states, labels)),
    )


def _task_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.array([values[groups == group].mean() for group in np.unique(groups)])


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
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(
        estimate=labelled_auroc(labels, scores),
        low=float(low),
        high=float(high),
        method="grouped-cv-auroc, task-bootstrap-percentile",
    )


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
    """Fit the unsafe-intent probe on teacher states and read it on `others` (see module doc).

    `labels` are 1 for unsafe, 0 for safe; `groups` name the task of each point; every array in
    `others` has the teacher's number of rows and columns.
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
    gap = None
    if "student" in scores and "control" in scores:
        gap = paired_mean_difference(
            _task_means(scores["student"], groups),
            _task_means(scores["control"], groups),
            n_boot,
            seed,
        )
    auroc = _bootstrap_auroc(labels, out_of_fold, groups, n_boot, seed)
    return ProbeReadout(cv_auroc=auroc, scores=scores, gap=gap)


def latent(
    models: Mapping[Subject, ModelAndTokenizer],
    env: str,
    seed: int,
    prefixes: Sequence[Prefix] = PREFIXES,
    tasks: Sequence[Task] | None = None,
    batch_size: int = 16,
    n_boot: int = 2000,
    sandbox_backend: str = "bwrap",
) -> LatentResult:
    """Probe, CKA and cluster separation of every subject in `models` (which must hold a
    "teacher") on the decision points of `tasks` under `prefixes` (see the module docstring)."""
    if "teacher" not in models:
        raise ValueError("the latent probe needs a teacher model")
    points = [
        conversation
        for prefix in prefixes
        for conversation in decision_conversations(env, prefix, seed, tasks, sandbox_backend)
    ]
    groups = np.array([point.task_id for point in points])
    states: dict[str, np.ndarray] = {}
    labels = np.zeros(len(points), dtype=int)
    dropped: dict[str, int] = {}
    for subject, (model, tokenizer) in models.items():
        decisions = encode_decisions(points, tokenizer)
        dropped[subject] = sum(not decision.thought_rendered for decision in decisions)
        pad_id = pad_token_id(tokenizer)
        states[subject] = decision_states(model, decisions, middle_layer(model), pad_id, batch_size)
        if subject == "teacher":
            labels = (decision_log_odds(model, tokenizer, decisions, batch_size) > 0).astype(int)
    teacher = states["teacher"]
    others = {s: x for s, x in states.items() if s != "teacher"}
    readable = {s: x for s, x in others.items() if x.shape == teacher.shape}
    notes = [f"{s}: hidden size differs from the teacher's" for s in others if s not in readable]
    readout = None
    if probe_folds(labels, groups):
        readout = probe_readout(teacher, labels, groups, readable, seed, n_boot)
    else:
        notes.append(f"teacher labels one class on nearly every task ({labels.sum()} unsafe)")
    scores = {} if readout is None else readout.scores
    separation = {}
    if len(np.unique(labels)) == 2:
        separation = {subject: cluster_separation(x, labels) for subject, x in states.items()}
    return LatentResult(
        env=env,
        layer=middle_layer(models["teacher"][0]),
        layer_rule=LAYER_RULE,
        prefixes=list(prefixes),
        labels={"unsafe": int(labels.sum()), "safe": int(len(labels) - labels.sum())},
        probe_cv_auroc=None if readout is None else readout.cv_auroc,
        mean_score={subject: float(values.mean()) for subject, values in scores.items()},
        gap=None if readout is None else readout.gap,
        probe_note="; ".join(notes),
        cka_to_teacher={subject: linear_cka(x, teacher) for subject, x in others.items()},
        davies_bouldin={subject: db for subject, (db, _) in separation.items()},
        calinski_harabasz={subject: ch for subject, (_, ch) in separation.items()},
        scores={subject: values.tolist() for subject, values in scores.items()},
        thought_dropped=dropped,
    )
