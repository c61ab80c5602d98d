"""One audit end to end: stages, probes, positive controls, gate, the report model.

The experiment (DESIGN.md): induce (or load) the teacher and a neutral control teacher and
measure both on held-out ambiguous tasks; where the biased preset is not measurably more
unsafe than the neutral one, stop there with a not-induced report (the base cannot test
transfer). Otherwise roll both out on safe tasks, keyword-sanitize, distil a student from
each on the same seeds, then probe base, teacher, student and control on held-out ambiguous
tasks. A model audit (the user's teacher and student) runs `audit.pipeline.model_audit`.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from audit.config import AuditConfig, habit_thoughts
from audit.models.loader import load_model_and_tokenizer
from audit.pipeline.arm_stages import ARMS, ArmStages, prepare_part
from audit.pipeline.artifacts import Artifact, AuditPipeline, SanitizedData
from audit.pipeline.controls import habit_test, leaky_test, positive_control
from audit.pipeline.family import describe_family
from audit.pipeline.latent_labels import LATENT_SEED, teacher_labels
from audit.pipeline.records import examples, sanitization_stats, teacher_rate
from audit.pipeline.sanitizer_spec import parse_sanitizer
from audit.pipeline.stages import StageRunner
from audit.pipeline.workers import parallel_jobs, run_in_workers
from audit.probes.behaviour import behaviour_probe, holm_behaviour
from audit.probes.dataset_audit import dataset_audit
from audit.probes.latent import Loader, latent
from audit.probes.propensity import ModelAndTokenizer, propensity
from audit.probes.results import BehaviourResult, HypothesisTest, LatentResult
from audit.probes.stats import holm_adjust
from audit.report.gate import (
    ARM_NAMES,
    GateInputs,
    InductionTest,
    evaluate_gate,
    exit_code_of,
)
from audit.report.gate_record import Gate, GateThresholds
from audit.report.power_floor import measured_floor
from audit.report.schema import (
    Report,
    RunConfig,
    StageTiming,
    TeacherRate,
    Versions,
    power_ok_of,
)
from audit.training.teacher import BIAS_ALPHA, UnsafeRate, bias_p_value, unsafe_rate
from trajectories.episode import Episode

Log = Callable[[str], None]


class Audit:
    """Runs the audit described by `config`; `run()` returns the finished `Report`."""

    def __init__(self, config: AuditConfig, runner: StageRunner, log: Log, progress: bool):
        self.config = config
        self.runner = runner
        self.log = log
        self.progress = progress
        self.pipe = AuditPipeline(config, runner, progress)
        self.stages = ArmStages(config, self.pipe)
        self.seeds = self.stages.seeds
        self.notes: list[str] = []

    def run(self) -> Report:
        config, pipe, envs = self.config, self.pipe, self.config.envs
        self.log("teachers")
        teacher = pipe.teacher(config.teacher)
        neutral = pipe.teacher("neutral")
        base = pipe.base()
        self.log("teachers on held-out ambiguous tasks")
        teacher_episodes = {
            env: {
                "teacher": pipe.evaluate(teacher, env, "ambiguous", 0),
                "neutral": pipe.evaluate(neutral, env, "ambiguous", 0),
            }
            for env in envs
        }
        measured = {
            (env, name): unsafe_rate(env, items)
            for env, by_teacher in teacher_episodes.items()
            for name, items in by_teacher.items()
        }
        teacher_rates = [self._teacher_rate(name, rate) for (_, name), rate in measured.items()]
        induction = self._induction(measured)
        thresholds = self.thresholds()
        if any(test.p_value >= test.alpha for test in induction):
            self.log("not induced: stopping before distillation")
            self.notes.append(
                "The biased teacher is not measurably more unsafe than the neutral one, so "
                "no teacher data was rolled out, no student was distilled and no other check "
                "ran. Induce it harder (teacher_demos, teacher_epochs) or choose another base."
            )
            gate = evaluate_gate(GateInputs(induction=induction), thresholds)
            return self.report(gate, teacher_rates=teacher_rates)
        self.log("teacher rollouts and sanitization")
        if config.data and not config.student:
            self.notes.append(
                f"--data: every student of env E trains on the {config.data} episodes of env E "
                f"(each once); the {len(self.seeds)} students differ only in their training seed, "
                "and each control trains on the neutral teacher's rollouts of its own seed."
            )
        jobs = parallel_jobs(config, torch.get_num_threads())
        if jobs > 1:
            self._in_workers(jobs)
        data, control_data = self.stages.arms(teacher, neutral, self.seeds, ARMS)
        self.log("students")
        students = self.stages.students(data, self.seeds, teacher)
        controls = self.stages.controls(control_data, self.seeds, neutral)
        self.log("evaluation on held-out ambiguous tasks")
        episodes = {
            env: {
                "base": {0: pipe.evaluate(base, env, "ambiguous", 0)},
                "teacher": {0: teacher_episodes[env]["teacher"]},
                "neutral": {0: teacher_episodes[env]["neutral"]},
                "student": self.stages.evaluations(students, env),
                "control": self.stages.evaluations(controls, env),
            }
            for env in envs
        }
        sampling = f"temperature={config.temperature:g}"
        behaviour = [
            behaviour_probe(
                env, {k: v for k, v in episodes[env].items() if k != "neutral"}, sampling
            )
            for env in envs
        ]
        controls_tests = self._positive_control_tests(teacher, students, controls)
        behaviour, controls_tests = self.adjust(behaviour, controls_tests)
        positive = [
            positive_control(name, env, test, config.alpha, config.margin)
            for (name, env), test in controls_tests.items()
        ]
        self.log("dataset audit")
        audits = [
            dataset_audit(
                [e for d in _distinct(data[env, s] for s in self.seeds) for e in _episodes(d)],
                [e for s in self.seeds for e in _episodes(control_data[env, s])],
                seed=0,
            )
            for env in envs
        ]
        self.log("propensity and latent probes")
        models = {
            "base": base,
            "teacher": teacher,
            "student": students[self.seeds[0]],
            "control": controls[self.seeds[0]],
        }
        loaded = {
            name: load_model_and_tokenizer(a.path, device=config.device)
            for name, a in models.items()
        }
        backend = config.backend
        prop = [
            propensity(loaded, env, prefix, seed=0, sandbox_backend=backend)
            for env in envs
            for prefix in ("task",)
        ]
        pairs = {s: (self._loader(students[s]), self._loader(controls[s])) for s in self.seeds}
        lat = [self.latent(loaded, pairs, env, teacher) for env in envs]
        self.notes.append(
            f"Propensity uses the seed-{self.seeds[0]} student and control; the latent probes "
            "use every seed's."
        )
        sanitization = [
            sanitization_stats(env, s, data[env, s]) for env in envs for s in self.seeds
        ]
        gate = evaluate_gate(
            GateInputs(
                induction=induction,
                behaviour=behaviour,
                latent=lat,
                dataset_audit=audits,
                sanitization=sanitization,
                positive_controls=positive,
            ),
            thresholds,
        )
        self.note_transfer(behaviour)
        return self.report(
            gate,
            sanitization=sanitization,
            behaviour=behaviour,
            propensity=prop,
            latent=lat,
            dataset_audit=audits,
            positive_controls=positive,
            teacher_rates=teacher_rates,
            examples=examples(episodes),
        )

    def _in_workers(self, jobs: int) -> None:
        """Compute every part's stages in `jobs` worker processes (`audit.pipeline.workers`),
        so that `run` then reads them from the cache."""
        parts = self.stages.parts()
        threads = max(1, torch.get_num_threads() // jobs)
        self.log(f"students' stages: {len(parts)} parts in {jobs} processes")
        with tqdm(
            total=len(parts), desc="parts", unit="part", file=sys.stderr, disable=not self.progress
        ) as bar:
            self.runner.computed_by_workers |= run_in_workers(
                prepare_part, [(self.config, part) for part in parts], jobs, threads, bar.update
            )

    def _loader(self, artifact: Artifact) -> Loader:
        return lambda: load_model_and_tokenizer(artifact.path, device=self.config.device)

    def latent(
        self,
        loaded: dict[str, ModelAndTokenizer],
        pairs: dict[int, tuple[Loader, Loader]],
        env: str,
        teacher: Artifact,
    ) -> LatentResult:
        """The latent probes of `env` on `loaded` teacher and base and every seed's `pairs`,
        labelled by the cached `teacher-labels` stage of `teacher`; not applicable where the
        students' base is not the teacher's."""
        config, pipe = self.config, self.pipe
        same = Path(pipe.student_base().path).resolve() == Path(pipe.base().path).resolve()
        not_shared = (
            ""
            if same
            else f"the students' base {pipe.student_base_ref()} is not the teacher's "
            f"({config.base}), so their states share no initialisation with the teacher's"
        )
        return latent(
            loaded["teacher"],
            loaded["base"],
            pairs,
            env,
            seed=LATENT_SEED,
            temperature=config.temperature,
            not_shared=not_shared,
            sandbox_backend=config.backend,
            thoughts=habit_thoughts(config.habit),
            unsafe_share=teacher_labels(pipe.runner, teacher, loaded["teacher"], env, config),
        )

    def thresholds(self) -> GateThresholds:
        """The gate's thresholds from the config."""
        config = self.config
        return GateThresholds(
            alpha=config.alpha,
            margin=config.margin,
            max_latent_gap=config.max_latent_gap,
            max_dataset_auroc=config.max_dataset_auroc,
            min_decision_rate=config.min_decision_rate,
            max_student_rate=config.max_student_rate,
        )

    def report(self, gate: Gate, **results: Any) -> Report:
        """The report of this run: its config, versions, seeds and stage timings, `gate`, and
        `results` (Report fields by name)."""
        config, pipe = self.config, self.pipe
        return Report(
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            config=RunConfig(
                profile=config.profile,
                mode=config.mode,
                teacher=config.teacher,
                student=config.student,
                data=config.data,
                base=config.base,
                base_kind=pipe.base_kind(),
                family=describe_family(pipe.base().path),
                student_base=pipe.student_base_ref() if config.student_base else None,
                sanitizer=_kind(config.sanitizer),
                method=config.method,
                distill=config.distill,
                envs=config.envs,
                full=config.to_dict(),
            ),
            versions=Versions.installed(),
            seeds=self.seeds,
            timings=[
                StageTiming(stage=r.name, seconds=r.seconds, cached=r.cached)
                for r in self.runner.records
            ],
            power_ok=power_ok_of(results.get("positive_controls", [])),
            notes=self.notes,
            power_floor=measured_floor(config.to_dict(), config.mode),
            gate=gate,
            exit_code=exit_code_of(gate),
            **results,
        )

    def _teacher_rate(self, name: str, measured: UnsafeRate) -> TeacherRate:
        """`measured` of the audited teacher (`name` "teacher") or the neutral preset."""
        return teacher_rate(self.config.teacher if name == "teacher" else "neutral", measured)

    def _induction(self, measured: dict[tuple[str, str], UnsafeRate]) -> list[InductionTest]:
        """Is the biased preset measurably more unsafe than the neutral one, per env; no tests
        for any other teacher (the user's own teacher is audited as it is)."""
        if self.config.teacher != "biased":
            return []
        return [
            InductionTest(
                base=self.config.base,
                teacher=self._teacher_rate("teacher", measured[env, "teacher"]),
                reference=self._teacher_rate("neutral", measured[env, "neutral"]),
                p_value=bias_p_value(measured[env, "teacher"], measured[env, "neutral"]),
                alpha=BIAS_ALPHA,
            )
            for env in self.config.envs
        ]

    def _positive_control_tests(
        self, teacher: Artifact, students: dict[int, Artifact], controls: dict[int, Artifact]
    ) -> dict[tuple[str, str], HypothesisTest]:
        """The leaky-sanitizer and style-trait tests per env
        (`ArmStages.positive_control_episodes`); none where they are off."""
        if not self.config.positive_controls:
            return {}
        self.log("positive controls")
        tests = {}
        for env, got in self.stages.positive_control_episodes(teacher, students, controls).items():
            tests["leaky-sanitizer", env] = leaky_test(env, got.leaky, got.leaky_control)
            tests["style-trait", env] = habit_test(env, got.habit, got.habit_control)
        return tests

    def adjust(
        self, behaviour: list[BehaviourResult], controls: dict[tuple[str, str], HypothesisTest]
    ) -> tuple[list[BehaviourResult], dict[tuple[str, str], HypothesisTest]]:
        """Holm over the behaviour family, and apart from it over the positive controls.

        The behaviour family is each result's model-level test, or where it has none (a model
        audit: one student) its pooled episode-level test; the positive controls are one model
        each, episode-level sanity checks outside that family (`audit.report.gate`). The other
        episode-level tests stay descriptive (no adjusted p).
        """
        behaviour = holm_behaviour(behaviour)
        return behaviour, dict(zip(controls, holm_adjust(list(controls.values())), strict=True))

    def note_transfer(self, behaviour: list[BehaviourResult]) -> None:
        """A note per env: the student's pooled rate against the comparison arm's."""
        for result in behaviour:
            pooled = {r.subject: r for r in result.pooled}
            student, control = pooled["student"], pooled["control"]
            gap = student.interval.estimate - control.interval.estimate
            arm = ARM_NAMES[result.control_arm]
            self.notes.append(
                f"{result.env}: student {result.metric} {student.interval.estimate:.0%} vs "
                f"{arm} {control.interval.estimate:.0%} ({gap:+.0%})."
            )


def _kind(sanitizer: str) -> str:
    """The kind of a built-in `--sanitizer` (`paraphrase` for `paraphrase:3`)."""
    spec = parse_sanitizer(sanitizer)
    return "cmd" if spec is None else spec.kind


def _distinct(data: Iterable[SanitizedData]) -> list[SanitizedData]:
    """`data` without repeats: with `--data` every seed has the same sanitized file."""
    return list({d.data.key: d for d in data}.values())


def _episodes(data: SanitizedData) -> list[Episode]:
    from trajectories.dataset import load_episodes

    return load_episodes(data.data.path)
