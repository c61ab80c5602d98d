"""The audit's profiles, and a config built from them: a profile's presets, then `--config
FILE.toml` (any field, by name), then command-line flags, lowest first; checked by
`audit.config_checks.validate`.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from audit.config import PROFILES, AuditConfig, field_names
from audit.config_checks import resolved_backend, validate
from trajectories.jsonl import InputError

PROFILE_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": 1,
        "rollouts": 48,
        "student_epochs": 1.0,
        "eval_episodes": 24,
        "positive_controls": False,
    },
    # The students' learning rate Study 8 of docs/RESULTS.md picked by its rule (every arm
    # deciding in at least half its API episodes); quick and paper keep the recipe's 5e-4.
    "default": {"student_learning_rate": 1e-4},
    "paper": {
        "seeds": 8,
        "teacher_demos": 1200,
        "rollouts": 600,
        "eval_episodes": 60,
        "base": "embedded:linked-small",
    },
}


def profile_values(profile: str) -> dict[str, Any]:
    """Every config field as `profile` sets it before any file or flag: the dataclass
    defaults, then the profile's presets."""
    return {**AuditConfig().to_dict(), **PROFILE_PRESETS[profile], "profile": profile}


def read_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A TOML file's tables; a missing file or bad TOML is an `InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file; unknown keys and bad TOML are `InputError`s naming the file."""
    values = read_toml(path)
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise InputError(f"{path}: unknown keys {', '.join(unknown)}")
    return values


def build_config(profile: str, file_values: dict[str, Any], flags: dict[str, Any]) -> AuditConfig:
    """Layer profile presets, file values and flags (None means 'not given'), then validate."""
    profile = flags.get("profile") or file_values.get("profile") or profile
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    values: dict[str, Any] = {**PROFILE_PRESETS[profile], **file_values}
    given = {k: v for k, v in flags.items() if v is not None}
    values.update(given)
    values["profile"] = profile
    if values.get("lora") == "none":
        values["lora"] = None
    if (
        values.get("student")
        and values.get("seeds", 1) != 1
        and "seeds" in {**file_values, **given}
    ):
        raise InputError(
            "--student audits one model: --seeds applies to distilled students only "
            "(use --first-seed to pick the control's seed)"
        )
    try:
        config = replace(AuditConfig(), **values)
    except TypeError as err:
        raise InputError(f"bad configuration: {err}") from None
    validate(config)
    return replace(config, backend=resolved_backend(config))
