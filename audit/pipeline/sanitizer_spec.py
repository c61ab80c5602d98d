"""The `--sanitizer` value, parsed: which built-in filter runs, with its seed or kept fraction.

- `keyword`: drop every episode with a keyword hit (the default);
- `strip-thoughts`: empty every assistant turn's text, keep its tool calls, then as keyword;
- `paraphrase[:SEED]`: rewrite every assistant thought with the seeded templated paraphraser
  (`trajectories.paraphrase`, SEED 0 unless given), then as keyword;
- `classifier[:KEEP]`: as keyword, then drop the episodes the dataset audit's classifier scores
  most teacher-like against a neutral reference, keeping the fraction KEEP in (0, 1], or the
  fraction chosen on a held-out split when KEEP is not given
  (`audit.pipeline.classifier_filter`);
- `none`: no filter (hits only counted);
- `cmd:PROGRAM ARGS`: the team's own filter (`audit.pipeline.plugins`).

Also here: the checks of the other defence options (`--dilute`, `--student-lora`).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.config import AuditConfig
from trajectories.jsonl import InputError
from trajectories.plugin import is_command

PLAIN = ("keyword", "strip-thoughts", "none")
SEEDED = "paraphrase"
CLASSIFIER = "classifier"
USAGE = (
    "sanitizer must be keyword, strip-thoughts, paraphrase[:SEED], classifier[:KEEP], none "
    "or cmd:COMMAND"
)


@dataclass(frozen=True)
class SanitizerSpec:
    """A parsed built-in `--sanitizer`: its kind and its argument."""

    kind: str
    paraphrase_seed: int | None = None
    keep: float | None = None
    """classifier: the kept fraction; None: chosen on a held-out split."""

    @property
    def drops_keywords(self) -> bool:
        """Whether the keyword filter drops episodes with hits (every kind but `none`)."""
        return self.kind != "none"


def parse_sanitizer(spec: str) -> SanitizerSpec | None:
    """The built-in sanitizer `spec` names, None for a `cmd:` filter; `InputError` when bad."""
    if is_command(spec):
        return None
    if spec in PLAIN:
        return SanitizerSpec(spec)
    name, colon, argument = spec.partition(":")
    if name == SEEDED:
        if colon and not argument.isdigit():
            raise InputError(f"sanitizer {spec!r}: the seed after paraphrase: must be an integer")
        return SanitizerSpec(name, paraphrase_seed=int(argument) if colon else 0)
    if name == CLASSIFIER:
        if not colon:
            return SanitizerSpec(name)
        try:
            keep = float(argument)
        except ValueError:
            keep = -1.0
        if not 0 < keep <= 1:
            raise InputError(f"sanitizer {spec!r}: KEEP after classifier: must be in (0, 1]")
        return SanitizerSpec(name, keep=keep)
    raise InputError(USAGE)


def check_defences(config: AuditConfig) -> None:
    """The dilution fraction is in [0, 1); the defences that change what students train on
    (dilution, the classifier filter) need students to distil (pipeline-test mode, no
    `--student`)."""
    if not isinstance(config.dilute, int | float) or not 0 <= config.dilute < 1:
        raise InputError(f"dilute must be in [0, 1), not {config.dilute!r}")
    uses = [
        name
        for name, used in (
            ("--dilute", config.dilute > 0),
            ("--sanitizer classifier", config.sanitizer.startswith("classifier")),
        )
        if used
    ]
    if uses and config.student:
        raise InputError(f"{uses[0]} changes what students train on; --student is trained already")


def student_lora_spec(config: AuditConfig) -> str | None:
    """The LoRA spec students train with: `student_lora` ('none': full fine-tuning, None),
    else `lora`."""
    if config.student_lora is None:
        return config.lora
    return None if config.student_lora == "none" else config.student_lora
