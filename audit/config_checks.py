"""Checks of an `AuditConfig`'s values, made when the config is read: every bad value is a
one-line `InputError` (exit 2) within seconds, before any stage runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from audit.config import (
    CONTROL_SEED_OFFSET,
    HABITS,
    PROFILES,
    TEACHER_PRESETS,
    AuditConfig,
    parse_embedded,
    student_base_ref,
)
from trajectories.jsonl import InputError
from trajectories.keywords import read_keywords_file


def resolved_backend(config: AuditConfig) -> str:
    """The concrete backend `config.backend` stands for (`envs.sandbox.resolve_backend`; 'auto'
    is bwrap for root, docker for a normal user); checked only where Bash episodes run, where a
    backend that cannot run them here is an `InputError`."""
    from envs.sandbox import SandboxUnavailableError, resolve_backend

    if "bash" not in config.envs:
        return resolve_backend(config.backend, check=False)
    try:
        return resolve_backend(config.backend)
    except SandboxUnavailableError as err:
        raise InputError(f"--backend {config.backend}: {err}") from None


def validate(config: AuditConfig) -> None:
    """One-line `InputError` for any value the audit cannot run with."""
    checks = [
        (config.env in ("api", "bash", "all"), f"env must be api, bash or all, not {config.env!r}"),
        (config.method in ("sft", "kd"), f"method must be sft or kd, not {config.method!r}"),
        (config.backend in ("auto", "bwrap", "docker"), "backend must be auto, bwrap or docker"),
        (config.safe_templates in ("all", "no-archive"), "safe_templates: all or no-archive"),
        (config.habit in HABITS, f"habit must be phrases or grammar, not {config.habit!r}"),
        (
            config.habit == "phrases" or config.mode != "model-audit",
            "--habit grammar sets the preset teachers' demonstrations; a model audit induces none",
        ),
        (isinstance(config.seeds, int) and config.seeds >= 1, "seeds must be a positive integer"),
        (
            isinstance(config.first_seed, int) and 0 <= config.first_seed < CONTROL_SEED_OFFSET,
            f"first_seed must be an integer in [0, {CONTROL_SEED_OFFSET})",
        ),
        (config.profile in PROFILES, f"profile must be one of {', '.join(PROFILES)}"),
        (0 < config.alpha < 1, "alpha must be in (0, 1)"),
        (0 <= config.margin < 1, "margin must be in [0, 1)"),
        (0 <= config.max_latent_gap <= 1, "max_latent_gap (--gate latent) must be in [0, 1]"),
        (
            0.5 <= config.max_dataset_auroc <= 1,
            "max_dataset_auroc (--gate auroc) must be in [0.5, 1]",
        ),
        (
            0 <= config.min_decision_rate <= 1,
            "min_decision_rate (--gate decision) must be in [0, 1]",
        ),
        (
            config.max_student_rate is None or 0 <= config.max_student_rate <= 1,
            "max_student_rate (--gate ceiling) must be in [0, 1]",
        ),
        (
            min(config.teacher_epochs, config.student_epochs) > 0,
            "teacher and student epochs must be positive",
        ),
        (config.student_learning_rate > 0, "student_learning_rate must be positive"),
        (config.temperature >= 0, "temperature must be >= 0"),
        (
            min(config.teacher_demos, config.rollouts, config.eval_episodes) > 0,
            "demos, rollouts and eval episodes must be positive",
        ),
        (
            isinstance(config.max_length, int) and config.max_length >= 16,
            "max_length must be an integer >= 16",
        ),
        (isinstance(config.threads, int) and config.threads >= 0, "threads must be >= 0"),
        (isinstance(config.jobs, int) and config.jobs >= 0, "jobs must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    _check_device(config.device)
    _check_plugins(config)
    if config.keywords_file is not None:
        read_keywords_file(config.keywords_file)
    _check_lora(config.lora)
    if config.student_lora != "none":
        _check_lora(config.student_lora)
    _check_defences(config)
    _check_canary(config)
    _check_kd_tokenizer(config)
    for ref, what in ((config.base, "base"), (config.student_base, "student_base")):
        if ref and not ref.startswith("@"):
            _check_base(ref, what)
    if config.teacher not in TEACHER_PRESETS and not _model_ref_exists(config.teacher):
        raise InputError(f"teacher {config.teacher!r}: not a preset and no such model directory")
    if config.student is not None and not _model_ref_exists(config.student):
        raise InputError(f"student {config.student!r}: no such model directory")
    if config.data is not None:
        _check_data(Path(config.data), config.envs)
    if config.reference_data is not None:
        if config.mode != "model-audit" or config.data is None:
            raise InputError(
                "--reference-data needs a model audit with data: --teacher PATH --student PATH "
                "--data FILE"
            )
        _check_data(Path(config.reference_data), config.envs)


def _embedded_corpus(ref: str) -> tuple[str, str] | None:
    """(kind, seed) of an embedded base, which fix its corpus and tokenizer; None for others."""
    parsed = parse_embedded(ref)
    return None if parsed is None else (parsed.kind, parsed.seed or "0")


def _check_kd_tokenizer(config: AuditConfig) -> None:
    """KD from a preset teacher needs the student to share the teacher's tokenizer; an embedded
    base of another kind or seed is pretrained on its own corpus with its own tokenizer, so that
    set-up is refused here rather than after the teacher's stages have run."""
    if config.method != "kd" or config.teacher not in TEACHER_PRESETS:
        return
    student = _embedded_corpus(student_base_ref(config))
    teacher = _embedded_corpus(config.base)
    if student is not None and teacher is not None and student != teacher:
        raise InputError(
            f"method kd needs the teacher's tokenizer, and student_base "
            f"{config.student_base!r} has its own (another corpus); use method sft"
        )


def _check_plugins(config: AuditConfig) -> None:
    """`audit.pipeline.plugins.check_plugins`: the sanitizer and distill recipe are usable."""
    from audit.pipeline.plugins import check_plugins

    check_plugins(config.sanitizer, config.distill, config.method)


def _check_defences(config: AuditConfig) -> None:
    """`audit.pipeline.sanitizer_spec.check_defences`: the dilution and the classifier filter
    can run."""
    from audit.pipeline.sanitizer_spec import check_defences

    check_defences(config)


def _check_canary(config: AuditConfig) -> None:
    """A graded canary is a fraction in (0, 1] planted in the students that a pipeline test
    distils from the biased preset's rollouts (`audit.pipeline.defences`)."""
    fraction = config.canary_fraction
    if fraction is None:
        return
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise InputError(f"canary_fraction must be in (0, 1], not {fraction!r}")
    if config.student:
        raise InputError(
            "--canary-fraction plants a transfer in students the audit distils; "
            "--student is trained already"
        )
    if config.data:
        raise InputError(
            "--canary-fraction mixes the biased preset's rollouts; --data replaces them"
        )
    if config.teacher != "biased":
        raise InputError(
            f"--canary-fraction plants the biased preset's episodes; teacher must be biased, not "
            f"{config.teacher!r}"
        )


def _check_device(spec: str) -> None:
    """`spec` names a device this machine has (`trajectories.device.resolve_device`)."""
    from trajectories.device import resolve_device

    try:
        resolve_device(spec)
    except ValueError as err:
        raise InputError(str(err)) from None


def _check_lora(spec: str | None) -> None:
    """`spec` is empty or a LoRA spec `audit.training.trl_setup.parse_lora` reads."""
    if not spec:
        return
    from audit.training.trl_setup import parse_lora

    try:
        parse_lora(spec)
    except ValueError as err:
        raise InputError(f"--lora: {err}") from None


def _check_base(ref: str, what: str) -> None:
    """An embedded base of a known kind and size, or a model directory whose tokenizer loads
    and whose chat template can train agents (`audit.models.loader.check_tokenizer`), so a bad
    `--base` is refused before any stage runs. A hub id is checked when it is loaded."""
    parsed = parse_embedded(ref)
    if parsed is not None:
        from audit.models.config import MODEL_SIZES
        from audit.models.corpus import CORPUS_KINDS

        if parsed.kind not in CORPUS_KINDS or parsed.size not in MODEL_SIZES:
            raise InputError(
                f"{what} {ref!r}: expected embedded:KIND-SIZE[@SEED] with KIND in "
                f"{', '.join(CORPUS_KINDS)} and SIZE in {', '.join(MODEL_SIZES)}"
            )
        if parsed.seed and not parsed.seed.isdigit():
            raise InputError(f"{what} {ref!r}: the seed after @ must be a non-negative integer")
        return
    path = Path(ref).expanduser()
    if not path.exists():
        if _model_ref_exists(ref):
            return
        raise InputError(f"{what} {ref!r}: no such model directory")
    from audit.models.loader import check_tokenizer

    check_tokenizer(path)


def _check_data(path: Path, envs: list[str]) -> None:
    """Every row of the user's data (any format trajectories.formats reads) has messages and is
    an episode, and every env of the audit has episodes in it (`InputError`s naming file:line)."""
    from trajectories.formats import read_episodes, read_rows
    from trajectories.messages import EpisodeError, check_messages

    if not path.is_file():
        raise InputError(f"{path}: no such data file")
    for lineno, row in read_rows(path):
        try:
            check_messages(row)
        except EpisodeError as err:
            raise InputError(f"{path}:{lineno}: {err}") from None
    counts = Counter(episode.env for episode in read_episodes(path))
    if not counts:
        raise InputError(f"{path}: no episodes")
    for env in envs:
        if not counts[env]:
            raise InputError(f"{path} has no {env} episodes; use --env {', '.join(sorted(counts))}")


def _model_ref_exists(ref: str) -> bool:
    """A local directory with a config.json, or something shaped like a hub id (org/name)."""
    path = Path(ref)
    if path.exists():
        return (path / "config.json").is_file()
    return ref.count("/") == 1 and not ref.startswith((".", "/", "~"))
