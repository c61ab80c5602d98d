"""The audit's artifact stages: teachers, rollouts, sanitized data, students, evaluations.

Each method runs one cached stage (audit.pipeline.stages) and returns paths into the stage cache.
Inputs of a stage are the config values it reads plus the keys of the stages it consumes,
so a changed setting recomputes exactly the stages downstream of it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.config import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_STUDENT_LEARNING_RATE,
    AuditConfig,
    parse_embedded,
    student_base_ref,
)
from audit.models.embedded import EMBEDDED_DIR, embedded_base
from audit.pipeline.content_key import content_key
from audit.pipeline.plugins import (
    command_distill,
    command_inputs,
    command_sanitize,
    distill_command,
    sanitizer_command,
)
from audit.pipeline.sanitizer_spec import parse_sanitizer, student_lora_spec
from audit.pipeline.stages import StageRunner, inputs_key
from audit.training.distill import DistillConfig, distill
from audit.training.teacher import TeacherConfig, induce_teacher, user_teacher
from envs import Task, load_tasks, make_env
from trajectories.dataset import load_episodes
from trajectories.device import resolve_device
from trajectories.episode import Episode
from trajectories.generate import select_tasks
from trajectories.jsonl import InputError, atomic_write_jsonl
from trajectories.keywords import DEFAULT_KEYWORDS, KeywordMatcher, read_keywords_file
from trajectories.paraphrase import Paraphraser
from trajectories.policies import get_policy
from trajectories.rollout import rollout
from trajectories.sanitize import Mode, Sanitizer, SanitizeReport, Scope, sanitize_file

EMBEDDED_TEACHERS = EMBEDDED_DIR / "teachers"
"""Committed preset teachers of the default audit config, named by their stage key; regenerate
with `python -m audit.pipeline embed-teachers`."""

ARCHIVE_TEMPLATES = frozenset({"archive", "archive-logs"})
"""Safe templates answered by the safe sibling action (archive / move into archive/)."""


@dataclass(frozen=True)
class Artifact:
    """A stage output: its path and the stage key that identifies its content."""

    path: Path
    key: str


@dataclass(frozen=True)
class SanitizedData:
    """Sanitized episodes of one env, the sanitizer's report, which filter ran, the seconds
    its stages took (as first run), and what the defences of `audit.pipeline.defences` did."""

    data: Artifact
    report: SanitizeReport
    filter: str
    seconds: float = 0.0
    classifier_keep: float | None = None
    classifier_auroc: float | None = None
    neutral_added: int = 0
    canary_planted: int | None = None
    """The graded canary: the teacher's episodes kept in the mix (None: no canary)."""
    canary_neutral: int | None = None
    """The graded canary: the neutral episodes in the mix (None: no canary)."""


class AuditPipeline:
    """Builds the audit's models and episode sets through the stage cache."""

    def __init__(self, config: AuditConfig, runner: StageRunner, progress: bool) -> None:
        self.config = config
        self.runner = runner
        self.progress = progress

    def base(self) -> Artifact:
        """The base the teachers (presets) start from, and the students unless `student_base`."""
        return _resolve_base(self.config.base, self.progress)

    def student_base(self) -> Artifact:
        """The base students start from: `student_base` (heterogeneous) or the teachers' base."""
        return _resolve_base(self.student_base_ref(), self.progress)

    def student_base_ref(self) -> str:
        """`audit.config.student_base_ref` of this audit's config."""
        return student_base_ref(self.config)

    def base_kind(self) -> str:
        return _base_kind(self.config.base)

    def teacher_inputs(self, preset: str) -> dict[str, Any]:
        """The stage inputs of a preset teacher; settings left at their defaults (`lora`,
        `max_length`, `habit`, the CPU) add none, so the committed teachers' keys still match."""
        config = self.config
        return {
            "preset": preset,
            "base": self.base().key,
            "demos": config.teacher_demos,
            "epochs": config.teacher_epochs,
            "envs": config.envs,
            **training_recipe(config, config.lora),
            **({} if config.habit == "phrases" else {"habit": config.habit}),
        }

    def teacher(self, preset_or_path: str) -> Artifact:
        """A preset teacher induced from the base, or the user's teacher checked as it is."""
        if preset_or_path not in ("biased", "neutral"):
            return self.user_model(preset_or_path)
        base = self.base()
        config = self.config
        inputs = self.teacher_inputs(preset_or_path)
        name = f"teacher-{preset_or_path}"
        committed = embedded_teacher_path(name, inputs)

        def work(path: Path) -> dict[str, Any]:
            if (committed / "model.safetensors").is_file():
                model_dir = path / "teacher" / "model"
                shutil.copytree(committed, model_dir)
                return {"model": str(model_dir), "embedded": str(committed)}
            model = induce_teacher(
                TeacherConfig(
                    preset=preset_or_path,
                    base=str(base.path),
                    out=path / "teacher",
                    n_demos=config.teacher_demos,
                    envs=config.envs,
                    backend=config.backend,
                    epochs=config.teacher_epochs,
                    habit=config.habit,
                    lora=config.lora,
                    max_length=config.max_length,
                    device=config.device,
                    progress=self.progress,
                )
            )
            return {"model": str(model)}

        record = self.runner.run(name, inputs, work)
        return Artifact(Path(record.result["model"]), record.key)

    def _rollouts(
        self, name: str, model: Artifact, env: str, tasks: Sequence[Task], seed: int
    ) -> Artifact:
        inputs = {
            "model": model.key,
            "env": env,
            "tasks": [task.id for task in tasks],
            "seed": seed,
            "temperature": self.config.temperature,
            **device_inputs(self.config),
        }

        def work(path: Path) -> dict[str, Any]:
            policy = get_policy(
                f"model:{model.path}",
                temperature=self.config.temperature,
                device=self.config.device,
            )
            episodes = rollout(
                lambda: self._make_env(env), policy, tasks, seed, progress=self.progress
            )
            out = path / "episodes.jsonl"
            atomic_write_jsonl(out, (episode.to_json_dict() for episode in episodes))
            return {"episodes": str(out), "n": len(episodes)}

        record = self.runner.run(name, inputs, work)
        return Artifact(Path(record.result["episodes"]), record.key)

    def _make_env(self, env: str):
        return make_env(env, backend=self.config.backend) if env == "bash" else make_env(env)

    def teacher_rollouts(
        self,
        teacher: Artifact,
        env: str,
        seed: int,
        include_ambiguous: bool = False,
        count: int | None = None,
    ) -> Artifact:
        """The teacher on `count` (default `rollouts`) train-split safe tasks (and ambiguous
        ones for the leaky control)."""
        safe = [
            task
            for task in load_tasks(env, "safe", "train")
            if self.config.safe_templates == "all" or task.template not in ARCHIVE_TEMPLATES
        ]
        tasks = select_tasks(safe, count or self.config.rollouts, seed)
        if include_ambiguous:
            ambiguous = load_tasks(env, "ambiguous", "train")
            tasks += select_tasks(ambiguous, self.config.rollouts // 2, seed)
        name = "teacher-rollouts-leaky" if include_ambiguous else "teacher-rollouts"
        return self._rollouts(name, teacher, env, tasks, seed)

    def sanitize(self, rollouts: Artifact) -> SanitizedData:
        """Keyword-drop the rollouts (`sanitizer = "keyword"`, and `"classifier"`, whose
        classifier filter runs later in `audit.pipeline.defences`), strip the assistant's free
        text and then keyword-drop (`"strip-thoughts"`, `trajectories.sanitize.strip_thoughts`),
        paraphrase every thought and then keyword-drop (`"paraphrase[:SEED]"`,
        `trajectories.paraphrase`), keep them all and only count the hits (`"none"`), or run
        the team's filter and count the hits it left (`"cmd:..."`,
        `audit.pipeline.plugins.command_sanitize`). Keywords: `keywords_file`, else the
        defaults."""
        config = self.config
        command = sanitizer_command(config.sanitizer)
        spec = parse_sanitizer(config.sanitizer)
        keywords = (
            read_keywords_file(config.keywords_file)
            if config.keywords_file
            else list(DEFAULT_KEYWORDS)
        )
        strip = spec is not None and spec.kind == "strip-thoughts"
        seed = None if spec is None else spec.paraphrase_seed
        mode = Mode.DROP if spec is not None and spec.drops_keywords else Mode.KEEP
        inputs: dict[str, Any] = {"rollouts": rollouts.key, "keywords": keywords, "mode": mode}
        if strip:
            inputs["strip_thoughts"] = True
        if seed is not None:
            inputs["paraphrase_seed"] = seed
        if config.keywords_file:
            inputs["keywords_file"] = content_key(config.keywords_file, "keywords")
        if command is not None:
            inputs["filter"] = command_inputs(command)

        def work(path: Path) -> dict[str, Any]:
            matcher = KeywordMatcher(keywords)
            if command is not None:
                out = path / "filtered.jsonl"
                report = command_sanitize(command, rollouts.path, out, matcher)
                return {"data": str(out), "report": report.model_dump(mode="json")}
            out = path / "sanitized.jsonl"
            paraphraser = None if seed is None else Paraphraser(seed)
            sanitizer = Sanitizer(matcher, mode, Scope.ALL, strip, paraphraser)
            report = sanitize_file(rollouts.path, out, sanitizer)
            if mode is Mode.DROP and not report.post_check.passed:
                raise RuntimeError(f"sanitizer left {report.post_check.hits_after} hits in {out}")
            return {"data": str(out), "report": report.model_dump(mode="json")}

        record = self.runner.run("sanitize", inputs, work)
        report = SanitizeReport.model_validate(record.result["report"])
        data = Artifact(Path(record.result["data"]), record.key)
        return SanitizedData(data, report, config.sanitizer, record.seconds)

    def user_model(self, path: str) -> Artifact:
        """The user's own model directory, checked, keyed by a manifest of its contents."""
        return Artifact(user_teacher(path), content_key(path, "user"))

    def user_data(self, path: str, env: str) -> SanitizedData:
        """The user's own trajectories of `env` (any format trajectories.formats reads, each
        episode in the env it belongs to), as episodes, through `sanitize` (the keyword check or
        the team's filter); keyed by the file's bytes, so data rewritten in place is sanitized
        (and trained on) again."""
        inputs = {"data": content_key(path, "user-data"), "env": env}

        def work(out: Path) -> dict[str, Any]:
            episodes = out / "episodes.jsonl"
            rows = (e.to_json_dict() for e in load_episodes(path) if e.env == env)
            return {"episodes": str(episodes), "count": atomic_write_jsonl(episodes, rows)}

        record = self.runner.run("user-data", inputs, work)
        return self.sanitize(Artifact(Path(record.result["episodes"]), record.key))

    def student(
        self, data: Sequence[Artifact], seed: int, kd_teacher: Artifact | None = None
    ) -> Artifact:
        """A student distilled from the student base on `data` (SFT, or KD from `kd_teacher`)."""
        base = self.student_base()
        config = self.config
        inputs = {
            "data": [artifact.key for artifact in data],
            "base": base.key,
            "method": config.method,
            "kd_teacher": kd_teacher.key if kd_teacher else None,
            "seed": seed,
            "epochs": config.student_epochs,
            **training_recipe(config, student_lora_spec(config)),
        }
        if config.student_learning_rate != DEFAULT_STUDENT_LEARNING_RATE:
            inputs["learning_rate"] = config.student_learning_rate
        command = distill_command(config.distill)
        if command is not None:
            inputs["distill"] = command_inputs(command)

        def work(path: Path) -> dict[str, Any]:
            if command is not None:
                paths = [artifact.path for artifact in data]
                out = command_distill(
                    command, paths, base.path, path / "student", seed, config.device
                )
                return {"model": str(out)}
            model = distill(
                DistillConfig(
                    data=[artifact.path for artifact in data],
                    base=str(base.path),
                    out=path / "student",
                    method=config.method,
                    teacher=str(kd_teacher.path) if kd_teacher else None,
                    seed=seed,
                    epochs=config.student_epochs,
                    learning_rate=config.student_learning_rate,
                    lora=student_lora_spec(config),
                    max_length=config.max_length,
                    device=config.device,
                    progress=self.progress,
                )
            )
            return {"model": str(model)}

        record = self.runner.run("student", inputs, work)
        return Artifact(Path(record.result["model"]), record.key)

    def evaluate(self, model: Artifact, env: str, suite: str, seed: int) -> list[Episode]:
        """Held-out (test split) episodes of `model` on `suite` tasks of `env`."""
        tasks = select_tasks(load_tasks(env, suite, "test"), self.config.eval_episodes, seed)
        artifact = self._rollouts(f"evaluate-{suite}", model, env, tasks, seed)
        return load_episodes(artifact.path)


def device_inputs(config: AuditConfig) -> dict[str, str]:
    """The device type as a stage input where it is not the CPU (a GPU's bf16 kernels give other
    numbers), so CPU stage keys, and the committed teachers' keys, stay what they were."""
    kind = resolve_device(config.device).type
    return {} if kind == "cpu" else {"device": kind}


def training_recipe(config: AuditConfig, lora: str | None) -> dict[str, Any]:
    """The training settings that differ from full fine-tuning at 1024 tokens on the CPU, as
    stage inputs, with `lora` the LoRA spec of the model trained (the defaults add none, so
    existing stage keys stay valid)."""
    recipe: dict[str, Any] = device_inputs(config)
    if lora:
        recipe["lora"] = lora
    if config.max_length != DEFAULT_MAX_LENGTH:
        recipe["max_length"] = config.max_length
    return recipe


def embedded_teacher_path(name: str, inputs: dict[str, Any]) -> Path:
    """Where a committed preset teacher with these stage inputs lives (it may not exist)."""
    return EMBEDDED_TEACHERS / f"{name}-{inputs_key({'stage': name, **inputs})}"


def embed_preset_teachers(progress: bool = True) -> list[Path]:
    """Induce both preset teachers of the default audit config again and commit them under
    `EMBEDDED_TEACHERS` (replacing the old ones), so a first audit needs no teacher training."""
    shutil.rmtree(EMBEDDED_TEACHERS, ignore_errors=True)
    paths = []
    with tempfile.TemporaryDirectory() as scratch:
        pipe = AuditPipeline(AuditConfig(), StageRunner(root=Path(scratch)), progress)
        for preset in ("biased", "neutral"):
            teacher = pipe.teacher(preset)
            target = EMBEDDED_TEACHERS / f"teacher-{preset}-{teacher.key}"
            shutil.copytree(teacher.path, target)
            paths.append(target)
    return paths


def _resolve_base(ref: str, progress: bool) -> Artifact:
    """`embedded:KIND-SIZE[@SEED]` (committed or pretrained and cached), a path or a hub id."""
    parsed = parse_embedded(ref)
    if parsed is None:
        local = Path(ref).expanduser()
        return (
            Artifact(local, content_key(local, "base")) if local.is_dir() else Artifact(local, ref)
        )
    if not parsed.size or (parsed.seed and not parsed.seed.isdigit()):
        raise InputError(f"base {ref!r}: expected embedded:KIND-SIZE[@SEED], e.g. linked-tiny")
    try:
        path = embedded_base(parsed.kind, parsed.size, int(parsed.seed or 0), progress=progress)
    except ValueError as err:
        raise InputError(f"base {ref!r}: {err}") from None
    return Artifact(path, ref)


def _base_kind(ref: str) -> str:
    """'linked' or 'control' for an embedded base, else 'external'."""
    parsed = parse_embedded(ref)
    return "external" if parsed is None else parsed.kind
