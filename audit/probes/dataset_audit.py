"""Dataset audit, before any training: can a classifier tell biased from neutral trajectories?

The inputs are the two teachers' SANITIZED trajectories. Each episode becomes the features
of `audit.probes.episode_features` (n-grams of the assistant turns' words, of the call
sequence and of the call arguments, plus four habit features); a scikit-learn pipeline
(TF-IDF per text field, standardized habits, logistic regression) predicts "biased".

- AUROC: out-of-fold probabilities from stratified group K-fold cross-validation, grouped
  by task id so that the two teachers' episodes of one task are never split between
  training and test (else each episode's twin, in training with the other label, drags the
  AUROC far below 0.5); K = `fold_count(smaller class size)`, 2 to 5, at most the number of
  tasks; averaged over `CV_REPEATS` seeded shuffles. The interval is a stratified percentile
  bootstrap over those predictions; it does not refit, so it leaves out the variation
  between fitted models and is too narrow: in null simulations (one scripted policy against
  itself on the same API tasks, 20 or 60 episodes per class, 60 runs) it held 0.5 in 85% of
  runs and lay wholly above 0.5 in 3%. Read the estimate, not only whether the interval
  clears 0.5. Roll both teachers out on the same tasks: a different task mix is itself a
  difference the classifier finds.
- Top features: the largest coefficients for "biased" of the pipeline refit on all
  episodes: n-grams with positive weights, named `field: n-gram`, and habits of either sign,
  named `habit: high NAME` or `habit: low NAME` (a habit the biased data has less of, e.g.
  `habit: low looks_before_change`) with the weight's magnitude.
- Keyword hits: every keyword hit (`KeywordMatcher`) in the strings the classifier reads;
  0 after drop-mode sanitization, so whatever the classifier finds is not a keyword.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from audit.probes.episode_features import (
    HABIT_COLUMNS,
    TEXT_COLUMNS,
    episode_features,
    visible_strings,
)
from audit.probes.results import DatasetAuditResult
from audit.probes.stats import bootstrap_auroc
from trajectories.dataset import load_episodes
from trajectories.episode import Episode
from trajectories.identity import strip_identity
from trajectories.jsonl import InputError
from trajectories.keywords import DEFAULT_KEYWORDS, KeywordMatcher

MIN_EPISODES_PER_CLASS = 5
MAX_FOLDS = 5
CV_REPEATS = 5
NGRAM_RANGES: dict[str, tuple[int, int]] = {
    "thoughts": (1, 2),
    "calls": (1, 3),
    "arguments": (1, 1),
}
"""n-gram lengths per text field: word pairs of thoughts, call sequences up to three."""

Episodes = Sequence[Episode] | str | Path


def fold_count(smallest_class: int) -> int:
    """Folds for cross-validation: one per 4 episodes of the smaller class, 2 to 5."""
    return max(2, min(MAX_FOLDS, smallest_class // 4))


def build_classifier() -> Pipeline:
    """The unfitted pipeline: TF-IDF per text field and scaled habits into a logistic model."""
    columns = [
        (
            field,
            TfidfVectorizer(
                token_pattern=r"\S+",
                lowercase=False,
                ngram_range=NGRAM_RANGES[field],
                sublinear_tf=True,
            ),
            field,
        )
        for field in TEXT_COLUMNS
    ]
    columns.append(("habit", StandardScaler(), list(HABIT_COLUMNS)))
    return Pipeline(
        [
            ("features", ColumnTransformer(columns)),
            ("model", LogisticRegression(C=1.0, solver="liblinear", random_state=0)),
        ]
    )


def feature_table(episodes: Iterable[Episode]) -> pd.DataFrame:
    """One row of `episode_features` per episode."""
    return pd.DataFrame(
        [episode_features(episode) for episode in episodes],
        columns=[*TEXT_COLUMNS, *HABIT_COLUMNS],
    )


def count_keyword_hits(episodes: Iterable[Episode], matcher: KeywordMatcher) -> int:
    """Keyword hits in every string the classifier reads, over all `episodes`."""
    return sum(len(matcher.find(text)) for episode in episodes for text in visible_strings(episode))


def _top_features(pipeline: Pipeline, k: int) -> list[tuple[str, float]]:
    """The k strongest pieces of evidence for "biased", strongest first (see module doc)."""
    names = pipeline.named_steps["features"].get_feature_names_out()
    weights = pipeline.named_steps["model"].coef_[0]
    evidence: list[tuple[str, float]] = []
    for name, weight in zip(names, weights, strict=True):
        field, feature = str(name).split("__", 1)
        if field == "habit" and weight < 0:
            evidence.append((f"habit: low {feature}", float(-weight)))
        elif weight > 0:
            prefix = "habit: high " if field == "habit" else f"{field}: "
            evidence.append((prefix + feature, float(weight)))
    return sorted(evidence, key=lambda item: -item[1])[:k]


def out_of_fold_scores(
    table: pd.DataFrame, labels: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """P(biased) per episode from models that saw no episode of its task, averaged over repeats.

    `CV_REPEATS` stratified group K-fold splits (groups: task ids), shuffled with seeds
    derived from `seed`.
    """
    runs = [
        cross_val_predict(
            build_classifier(),
            table,
            labels,
            groups=groups,
            cv=StratifiedGroupKFold(
                n_splits=folds, shuffle=True, random_state=seed * CV_REPEATS + i
            ),
            method="predict_proba",
        )[:, 1]
        for i in range(CV_REPEATS)
    ]
    return np.mean(runs, axis=0)


def _episodes(source: Episodes) -> list[Episode]:
    """The episodes of a side, identity metadata stripped (trajectories.identity)."""
    episodes = load_episodes(source) if isinstance(source, str | Path) else list(source)
    return [strip_identity(episode) for episode in episodes]


def _env_of(episodes: Sequence[Episode]) -> Literal["api", "bash", "all"]:
    envs = {episode.env for episode in episodes}
    return envs.pop() if len(envs) == 1 else "all"


def dataset_audit(
    biased: Episodes,
    neutral: Episodes,
    seed: int = 0,
    n_boot: int = 2000,
    top_k: int = 10,
    keywords: Sequence[str] = DEFAULT_KEYWORDS,
) -> DatasetAuditResult:
    """Cross-validated AUROC of telling `biased` from `neutral` episodes (see module doc).

    Each side is a list of episodes or a JSONL path. `seed` fixes the folds and the
    bootstrap. Raises `InputError` when a side has fewer than `MIN_EPISODES_PER_CLASS`
    episodes or all episodes are of one task.
    """
    positives, negatives = _episodes(biased), _episodes(neutral)
    smallest = min(len(positives), len(negatives))
    if smallest < MIN_EPISODES_PER_CLASS:
        raise InputError(
            f"dataset audit needs at least {MIN_EPISODES_PER_CLASS} episodes per class, "
            f"got {len(positives)} biased and {len(negatives)} neutral"
        )
    episodes = positives + negatives
    table = feature_table(episodes)
    labels = np.array([1] * len(positives) + [0] * len(negatives))
    groups = np.array([episode.task_id for episode in episodes])
    if len(set(groups)) < 2:
        raise InputError("dataset audit needs episodes of at least 2 different tasks")
    folds = min(fold_count(smallest), len(set(groups)))
    scores = out_of_fold_scores(table, labels, groups, folds, seed)
    auroc = bootstrap_auroc(scores[labels == 1], scores[labels == 0], n_boot=n_boot, seed=seed)
    refit = build_classifier().fit(table, labels)
    return DatasetAuditResult(
        env=_env_of(episodes),
        n_biased=len(positives),
        n_neutral=len(negatives),
        auroc=auroc,
        top_features=_top_features(refit, top_k),
        keyword_hits=count_keyword_hits(episodes, KeywordMatcher(keywords)),
    )
