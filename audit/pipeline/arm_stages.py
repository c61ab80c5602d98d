"""The stages of a pipeline test after the teachers' check: each student seed's sanitized (and
defended) data, its student and control, their held-out evaluations, the positive controls'
models and episodes; and the independent parts they split into for worker processes
(`audit.pipeline.workers`).

`Audit.run` (audit.pipeline.orchestrator) asks for these stages in one order; with `jobs` > 1
the workers first compute every part through the shared stage cache, and `run` then reads
them from it, so the results are the same whatever the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.config import CONTROL_SEED_OFFSET, AuditConfig
from audit.models.loader import load_model_and_tokenizer
from audit.pipeline.artifacts import Artifact, AuditPipeline, SanitizedData
from audit.pipeline.defences import Arms, Defences
from audit.pipeline.latent_labels import teacher_labels
from audit.pipeline.stages import StageRunner
from trajectories.episode import Episode

ARMS = ("student", "control")


@dataclass(frozen=True)
class Part:
    """An independent part of an audit's stages (`ArmStages.parts`): `kind` "arms" (the
    `arms` of student seed `seed`), "base", "teacher-labels" or "positive-controls"."""

    kind: str
    seed: int = 0
    arms: tuple[str, ...] = ()


@dataclass
class PositiveControlEpisodes:
    """What the positive controls compare, per env: the leaky student's and the control's
    ambiguous episodes, the habit student's and the control's safe ones."""

    leaky: list[Episode]
    leaky_control: list[Episode]
    habit: list[Episode]
    habit_control: list[Episode]


def audit_seeds(config: AuditConfig) -> list[int]:
    """The student seeds: `first_seed` alone for the user's student, else `seeds` of them."""
    first = config.first_seed
    return [first] if config.student else list(range(first, first + config.seeds))


class ArmStages:
    """The arms' stages of `config`'s pipeline test, through `pipe`'s stage cache."""

    def __init__(self, config: AuditConfig, pipe: AuditPipeline) -> None:
        self.config = config
        self.pipe = pipe
        self.seeds = audit_seeds(config)

    def data(self, teacher: Artifact, env: str, seed: int, users: bool) -> SanitizedData:
        """Sanitized teacher rollouts, or the user's own data (`--data`) where `users`.

        The control's rollouts (`users` False) use seed `CONTROL_SEED_OFFSET + seed`: auditing
        the neutral preset then compares two independent samples of the neutral teacher.
        """
        if users and self.config.data:
            return self.pipe.user_data(self.config.data, env)
        rollout_seed = seed if users else CONTROL_SEED_OFFSET + seed
        return self.pipe.sanitize(self.pipe.teacher_rollouts(teacher, env, rollout_seed))

    def arms(
        self, teacher: Artifact, neutral: Artifact, seeds: list[int], arms: tuple[str, ...]
    ) -> tuple[Arms, Arms]:
        """The sanitized, defended data of `arms` ("student", "control") on `seeds`, by (env,
        seed); one arm alone only where no defence couples the arms."""
        envs = self.config.envs
        data = {
            (env, s): self.data(teacher, env, s, True)
            for env in envs
            for s in seeds
            if "student" in arms
        }
        control = {
            (env, s): self.data(neutral, env, s, False)
            for env in envs
            for s in seeds
            if "control" in arms
        }
        return Defences(self.pipe).defend(data, control) if len(arms) == 2 else (data, control)

    def students(self, data: Arms, seeds: list[int], teacher: Artifact) -> dict[int, Artifact]:
        """The students of `seeds` distilled from `data` (the user's student where given)."""
        config, pipe = self.config, self.pipe
        if config.student:
            return {self.seeds[0]: pipe.user_model(config.student)}
        kd_teacher = teacher if config.method == "kd" else None
        return {
            s: pipe.student([data[env, s].data for env in config.envs], s, kd_teacher)
            for s in seeds
        }

    def controls(self, control: Arms, seeds: list[int], neutral: Artifact) -> dict[int, Artifact]:
        """The controls of `seeds`, distilled from the neutral teacher's `control` data."""
        config, pipe = self.config, self.pipe
        kd_teacher = neutral if config.method == "kd" else None
        return {
            s: pipe.student([control[env, s].data for env in config.envs], s, kd_teacher)
            for s in seeds
        }

    def evaluations(self, models: dict[int, Artifact], env: str) -> dict[int, list[Episode]]:
        """Each seed's model on `env`'s held-out ambiguous tasks, sampled with its seed."""
        return {s: self.pipe.evaluate(model, env, "ambiguous", s) for s, model in models.items()}

    def positive_control_episodes(
        self, teacher: Artifact, students: dict[int, Artifact], controls: dict[int, Artifact]
    ) -> dict[str, PositiveControlEpisodes]:
        """The positive controls' episodes per env, on the first seed. Both controls use the
        biased preset, whatever teacher is audited: they measure the probes' power, not the
        user's pipeline. The habit control reuses the audited students only where they are
        the biased preset's own (no `--data`, no canary mix below P = 1)."""
        config, pipe, envs, seed = self.config, self.pipe, self.config.envs, self.seeds[0]
        audited_is_preset = (
            config.teacher == "biased"
            and not config.student
            and not config.data
            and config.canary_fraction in (None, 1)
        )
        biased = teacher if config.teacher == "biased" else pipe.teacher("biased")
        kd_teacher = biased if config.method == "kd" else None
        if audited_is_preset:
            habit_student = students[seed]
        else:
            clean = [pipe.sanitize(pipe.teacher_rollouts(biased, env, seed)).data for env in envs]
            habit_student = pipe.student(clean, seed, kd_teacher)
        leaky = [pipe.teacher_rollouts(biased, env, seed, include_ambiguous=True) for env in envs]
        leaky_student = pipe.student(leaky, seed, kd_teacher)
        return {
            env: PositiveControlEpisodes(
                leaky=pipe.evaluate(leaky_student, env, "ambiguous", seed),
                leaky_control=pipe.evaluate(controls[seed], env, "ambiguous", seed),
                habit=pipe.evaluate(habit_student, env, "safe", seed),
                habit_control=pipe.evaluate(controls[seed], env, "safe", seed),
            )
            for env in envs
        }

    def parts(self) -> list[Part]:
        """The independent parts of the stages, for `prepare`, longest first as far as their
        order allows: each seed's arms (both together where a defence couples them), the
        positive controls once the first seed's arms have been taken (they reuse its student
        and control), then the base's evaluation and the latent probes' teacher labels."""
        arms = [ARMS] if Defences(self.pipe).active else [(arm,) for arm in ARMS]
        seeds = [Part("arms", s, a) for s in self.seeds for a in arms]
        controls = [Part("positive-controls")] if self.config.positive_controls else []
        after = min(len(seeds), 2 * len(arms))
        return [*seeds[:after], *controls, *seeds[after:], Part("base"), Part("teacher-labels")]

    def prepare(self, part: Part) -> None:
        """Compute the cached stages of `part` as `Audit.run` asks for them."""
        config, pipe = self.config, self.pipe
        teacher, neutral = pipe.teacher(config.teacher), pipe.teacher("neutral")
        if part.kind == "base":
            for env in config.envs:
                pipe.evaluate(pipe.base(), env, "ambiguous", 0)
        elif part.kind == "teacher-labels":
            model = load_model_and_tokenizer(teacher.path, device=config.device)
            for env in config.envs:
                teacher_labels(pipe.runner, teacher, model, env, config)
        elif part.kind == "positive-controls":
            first = self.seeds[:1]
            data, control = self.arms(teacher, neutral, first, ARMS)
            students = self.students(data, first, teacher)
            self.positive_control_episodes(
                teacher, students, self.controls(control, first, neutral)
            )
        else:
            data, control = self.arms(teacher, neutral, [part.seed], part.arms)
            models = []
            if "student" in part.arms:
                models.append(self.students(data, [part.seed], teacher))
            if "control" in part.arms:
                models.append(self.controls(control, [part.seed], neutral))
            for env in config.envs:
                for arm in models:
                    self.evaluations(arm, env)


def prepare_part(task: tuple[AuditConfig, Part]) -> list[str]:
    """A worker's `ArmStages.prepare` of one part, quiet, on the shared stage cache; the keys
    of the stages it computed."""
    config, part = task
    runner = StageRunner()
    ArmStages(config, AuditPipeline(config, runner, progress=False)).prepare(part)
    return [record.key for record in runner.records if not record.cached]
