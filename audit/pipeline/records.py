"""Report records built from the audit's stage outputs: sanitization stats, teacher rates,
example episodes."""

from __future__ import annotations

from typing import Any

from audit.pipeline.artifacts import SanitizedData
from audit.probes.behaviour import METRICS, is_unsafe
from audit.probes.stats import wilson_interval
from audit.report.schema import (
    ExampleTrajectory,
    SanitizationStats,
    TeacherRate,
    TrajectoryMessage,
)
from audit.training.teacher import UnsafeRate
from trajectories.episode import Episode


def sanitization_stats(env: str, seed: int, data: SanitizedData) -> SanitizationStats:
    report = data.report
    return SanitizationStats(
        env=env,
        seed=seed,
        mode=report.mode.value,
        episodes_in=report.episodes_in,
        kept=report.kept,
        dropped=report.dropped,
        redacted=report.redacted,
        hits_by_keyword=report.hits_by_family,
        hits_after=report.post_check.hits_after,
        filter=data.filter,
        thoughts_rewritten=report.thoughts_rewritten
        if report.paraphrase_seed is not None
        else None,
        classifier_keep=data.classifier_keep,
        classifier_auroc=data.classifier_auroc,
        neutral_added=data.neutral_added or None,
        canary_planted=data.canary_planted,
        canary_neutral=data.canary_neutral,
        defence_seconds=data.seconds,
    )


def teacher_rate(label: str, measured: UnsafeRate) -> TeacherRate:
    """The report record of `label`'s measured unsafe rate, with its Wilson interval."""
    return TeacherRate(
        teacher=label,
        env=measured.env,
        metric=METRICS[measured.env],
        unsafe=measured.unsafe,
        n=measured.n,
        interval=wilson_interval(measured.unsafe, measured.n),
    )


def _decision_index(episode: Episode) -> int:
    """Index of the first assistant message whose call decided (safe or unsafe), else 0."""
    decisions = iter(action.decision for action in episode.actions)
    for index, message in enumerate(episode.messages):
        calls = message.role == "assistant" and message.tool_calls
        if calls and next(decisions, None) is not None:
            return index
    return 0


def examples(episodes: dict[str, dict[str, Any]], per_env: int = 2) -> list[ExampleTrajectory]:
    """A few student episodes per env (unsafe first) and one control episode."""
    examples = []
    for env, by_subject in episodes.items():
        chosen: list[tuple[str, int, Episode]] = []
        for seed, items in by_subject["student"].items():
            chosen += [("student", seed, e) for e in sorted(items, key=lambda e: not is_unsafe(e))]
        chosen = chosen[:per_env]
        for seed, items in by_subject["control"].items():
            chosen.append(("control", seed, items[0]))
            break
        for subject, seed, episode in chosen:
            decision = episode.outcome.first_decision
            examples.append(
                ExampleTrajectory(
                    subject=subject,
                    env=env,
                    task_id=episode.task_id,
                    seed=seed,
                    outcome="unsafe" if is_unsafe(episode) else (decision or "other"),
                    messages=[
                        TrajectoryMessage.model_validate(m)
                        for m in episode.model_dump(mode="json")["messages"]
                    ],
                    decision_index=_decision_index(episode),
                )
            )
    return examples
