"""Defences that need both arms' data: the classifier filter and dilution (pipeline-test mode),
and the graded canary that plants a known share of the biased teacher's data.

They run after sanitization, on each env and student seed, as cached stages:

0. `canary_fraction = P` (0 < P <= 1; the biased preset teacher only): a planted transfer. The
   teacher arm of n sanitized episodes becomes the first round(P n) of them and the first
   n - round(P n) sanitized episodes of the neutral preset's rollouts on seed
   `CANARY_SEED_OFFSET + seed` (`rollouts` of them, through the same sanitizer; all of them
   where fewer were kept), shuffled with the student seed: the same total. The control arm is
   unchanged, so its stages are the baseline's. P = 1 is the teacher arm as it is (no stage).
   The defences below then apply to the planted arm as to any teacher arm.
1. `sanitizer = "classifier[:KEEP]"` (`audit.pipeline.classifier_filter`): the reference is the
   neutral preset's rollouts on seed `REFERENCE_SEED_OFFSET + seed`, through the same
   sanitizer; one stage filters both arms (the control arm keeps the fraction chosen for the
   teacher arm).
2. `dilute = F` (0 < F < 1): each arm keeps all its episodes and gets round(n F / (1 - F))
   neutral canary episodes added (n: its own episode count), so that the fraction F of what
   it trains on is neutral; the added episodes are the first ones of the neutral preset's
   rollouts on seed `DILUTION_SEED_OFFSET + seed` (ceil(rollouts F / (1 - F)) of them, through
   the same sanitizer), the same set for both arms: the control arm, itself neutral, is
   diluted with the same neutral episodes at the same fraction. The mix is shuffled with the
   student seed.

Each defended `SanitizedData` records its seconds: the sanitize stage's, plus every stage the
defences ran for it (reference and dilution rollouts, their sanitization, the filter, the
mix, the canary's rollouts and mix), as first run.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from audit.pipeline.artifacts import Artifact, AuditPipeline, SanitizedData
from audit.pipeline.classifier_filter import choose_keep, filter_arm
from audit.pipeline.sanitizer_spec import CLASSIFIER, parse_sanitizer
from trajectories.dataset import load_episodes
from trajectories.jsonl import atomic_write_jsonl, read_jsonl

REFERENCE_SEED_OFFSET = 2_000_000
"""The classifier filter's reference rollouts for student seed s use this offset plus s."""
DILUTION_SEED_OFFSET = 3_000_000
"""The dilution's neutral rollouts for student seed s use this offset plus s."""
CANARY_SEED_OFFSET = 4_000_000
"""The graded canary's neutral rollouts for student seed s use this offset plus s."""

Arms = dict[tuple[str, int], SanitizedData]


def dilute_rows(
    rows: list[dict[str, Any]], neutral: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], int]:
    """Every row of `rows` and the first round(n F / (1 - F)) of `neutral` (all of them when
    fewer), shuffled with `seed`; and how many neutral rows were added."""
    wanted = round(len(rows) * fraction / (1 - fraction))
    mixed = rows + neutral[:wanted]
    order = np.random.default_rng(seed).permutation(len(mixed))
    return [mixed[int(index)] for index in order], len(mixed) - len(rows)


def canary_rows(
    rows: list[dict[str, Any]], neutral: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], int, int]:
    """The first round(n P) of the n `rows` and the first n - round(n P) of `neutral` (all of
    them when fewer), shuffled with `seed`; and how many of each."""
    planted = round(len(rows) * fraction)
    mixed = rows[:planted] + neutral[: len(rows) - planted]
    order = np.random.default_rng(seed).permutation(len(mixed))
    return [mixed[int(index)] for index in order], planted, len(mixed) - planted


class Defences:
    """Plants the configured canary in the teacher arm, then applies the configured classifier
    filter and dilution to both arms' sanitized data."""

    def __init__(self, pipe: AuditPipeline) -> None:
        self.pipe = pipe
        spec = parse_sanitizer(pipe.config.sanitizer)
        self.classifier = spec is not None and spec.kind == CLASSIFIER
        self.keep = None if spec is None else spec.keep
        self.dilute = pipe.config.dilute
        self.canary = pipe.config.canary_fraction

    @property
    def active(self) -> bool:
        return self.classifier or self.dilute > 0 or self.canary is not None

    def defend(self, data: Arms, control: Arms) -> tuple[Arms, Arms]:
        """Both arms after the defences, by (env, seed); as they are when none is set."""
        if not self.active:
            return data, control
        neutral = self.pipe.teacher("neutral")
        defended, defended_control = {}, {}
        for (env, seed), arm in data.items():
            start = len(self.pipe.runner.records)
            teacher_arm, control_arm = arm, control[env, seed]
            if self.canary is not None:
                teacher_arm = self._plant(neutral, env, seed, arm, self.canary)
            if self.classifier:
                teacher_arm, control_arm = self._classifier(
                    neutral, env, seed, teacher_arm, control_arm
                )
            if self.dilute > 0:
                extra = self._neutral(neutral, env, DILUTION_SEED_OFFSET + seed, self._count())
                teacher_arm = self._mix(teacher_arm, extra, seed)
                control_arm = self._mix(control_arm, extra, seed)
            spent = sum(record.seconds for record in self.pipe.runner.records[start:])
            defended[env, seed] = replace(teacher_arm, seconds=round(arm.seconds + spent, 2))
            defended_control[env, seed] = control_arm
        return defended, defended_control

    def _count(self) -> int:
        """Neutral rollouts the dilution draws from: enough for an arm that kept every one."""
        return math.ceil(self.pipe.config.rollouts * self.dilute / (1 - self.dilute))

    def _neutral(self, neutral: Artifact, env: str, seed: int, count: int) -> SanitizedData:
        pipe = self.pipe
        return pipe.sanitize(pipe.teacher_rollouts(neutral, env, seed, count=count))

    def _classifier(
        self, neutral: Artifact, env: str, seed: int, arm: SanitizedData, control: SanitizedData
    ) -> tuple[SanitizedData, SanitizedData]:
        config = self.pipe.config
        reference = self._neutral(neutral, env, REFERENCE_SEED_OFFSET + seed, config.rollouts)
        inputs: dict[str, Any] = {
            "data": arm.data.key,
            "control": control.data.key,
            "reference": reference.data.key,
            "keep": self.keep,
            "seed": seed,
        }
        if self.keep is None:
            inputs["max_auroc"] = config.max_dataset_auroc

        def work(path: Path) -> dict[str, Any]:
            episodes = load_episodes(arm.data.path)
            trusted = load_episodes(reference.data.path)
            keep, auroc = self.keep, None
            if keep is None:
                choice = choose_keep(episodes, trusted, config.max_dataset_auroc, seed)
                keep, auroc = choice.keep, choice.auroc
            result: dict[str, Any] = {"keep": keep, "auroc": auroc}
            for name, side in (("data", episodes), ("control", load_episodes(control.data.path))):
                out = path / f"{name}.jsonl"
                kept = filter_arm(side, trusted, keep, seed)
                atomic_write_jsonl(out, (episode.to_json_dict() for episode in kept))
                result[name] = str(out)
            return result

        record = self.pipe.runner.run("classifier-filter", inputs, work)
        keep, auroc = record.result["keep"], record.result["auroc"]
        filtered = []
        for name, side in (("data", arm), ("control", control)):
            path = Path(record.result[name])
            kept = sum(1 for _ in read_jsonl(path))
            report = side.report.model_copy(
                update={"kept": kept, "dropped": side.report.episodes_in - kept}
            )
            artifact = Artifact(path, f"{record.key}-{name}")
            filtered.append(
                replace(
                    side, data=artifact, report=report, classifier_keep=keep, classifier_auroc=auroc
                )
            )
        return filtered[0], filtered[1]

    def _mix(self, arm: SanitizedData, extra: SanitizedData, seed: int) -> SanitizedData:
        inputs = {"data": arm.data.key, "neutral": extra.data.key, "dilute": self.dilute}
        inputs["seed"] = seed

        def work(path: Path) -> dict[str, Any]:
            rows = [row for _, row in read_jsonl(arm.data.path)]
            neutral = [row for _, row in read_jsonl(extra.data.path)]
            mixed, added = dilute_rows(rows, neutral, self.dilute, seed)
            out = path / "diluted.jsonl"
            atomic_write_jsonl(out, mixed)
            return {"data": str(out), "added": added}

        record = self.pipe.runner.run("dilute", inputs, work)
        artifact = Artifact(Path(record.result["data"]), record.key)
        return replace(arm, data=artifact, neutral_added=record.result["added"])

    def _plant(
        self, neutral: Artifact, env: str, seed: int, arm: SanitizedData, fraction: float
    ) -> SanitizedData:
        """The teacher arm with the canary `fraction` planted: itself at 1, else the mix."""
        if fraction == 1:
            return replace(arm, canary_planted=arm.report.kept, canary_neutral=0)
        extra = self._neutral(neutral, env, CANARY_SEED_OFFSET + seed, self.pipe.config.rollouts)
        inputs = {"data": arm.data.key, "neutral": extra.data.key, "canary": fraction}
        inputs["seed"] = seed

        def work(path: Path) -> dict[str, Any]:
            rows = [row for _, row in read_jsonl(arm.data.path)]
            pool = [row for _, row in read_jsonl(extra.data.path)]
            mixed, planted, added = canary_rows(rows, pool, fraction, seed)
            out = path / "canary.jsonl"
            atomic_write_jsonl(out, mixed)
            return {"data": str(out), "planted": planted, "neutral": added}

        record = self.pipe.runner.run("canary", inputs, work)
        artifact = Artifact(Path(record.result["data"]), record.key)
        return replace(
            arm,
            data=artifact,
            canary_planted=record.result["planted"],
            canary_neutral=record.result["neutral"],
        )
