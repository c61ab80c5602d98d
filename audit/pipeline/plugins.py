"""The audit's two plug-ins, the team's filter (`--sanitizer cmd:...`) and the team's training
recipe (`--distill cmd:...`): parsed from the config, keyed, and run as the sanitize and
student stages through `trajectories.plugin.Command`.

The filter's output is what the student trains on; the project's keyword matcher then counts,
without changing anything (`Mode.KEEP`), the hits in its input and the hits left in its
output, so the report shows what the team's filter let through.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audit.pipeline.content_key import content_key
from audit.pipeline.sanitizer_spec import parse_sanitizer
from trajectories.jsonl import InputError, atomic_write_jsonl, read_jsonl
from trajectories.keywords import KeywordMatcher
from trajectories.plugin import Command, count_episodes, is_command
from trajectories.sanitize import Mode, Sanitizer, SanitizeReport, Scope, Tally, tally_report


def sanitizer_command(sanitizer: str) -> Command | None:
    """The parsed `cmd:` `--sanitizer`, or None for a built-in one; `PluginError` when bad."""
    if not is_command(sanitizer):
        return None
    return Command.parse("--sanitizer", sanitizer, required=("in", "out"))


def distill_command(distill: str) -> Command | None:
    """The parsed `cmd:` `--distill` recipe, or None for the builtin one; `PluginError` when
    bad."""
    if not is_command(distill):
        return None
    return Command.parse("--distill", distill, required=("data", "base", "out"), optional=("seed",))


def check_plugins(sanitizer: str, distill: str, method: str) -> None:
    """`InputError` unless the sanitizer is built in (`audit.pipeline.sanitizer_spec`) or a
    usable `cmd:` filter and the distill recipe builtin or a usable `cmd:` recipe (with method
    sft: it gets no teacher)."""
    parse_sanitizer(sanitizer)
    if distill != "builtin" and not is_command(distill):
        raise InputError("distill must be builtin or cmd:COMMAND")
    if method == "kd" and is_command(distill):
        raise InputError(
            "method kd needs the builtin distill recipe (a cmd: recipe gets no teacher)"
        )
    sanitizer_command(sanitizer)
    distill_command(distill)


def command_inputs(command: Command) -> dict[str, Any]:
    """Stage inputs of a plug-in: its spec and the content keys of the files it names (such
    as its script), so an edited filter or recipe recomputes every stage downstream."""
    return {
        "command": command.spec,
        "command_files": [content_key(path, "plugin") for path in command.files()],
    }


def command_sanitize(
    command: Command, input: Path, output: Path, matcher: KeywordMatcher
) -> SanitizeReport:
    """Run the team's filter from `input` to `output` and count keyword hits before and after.

    `PluginError` when it fails, writes no usable episodes, or writes more than it read.
    """
    output.unlink(missing_ok=True)
    command.run({"in": input, "out": output})
    kept = count_episodes(command, output)
    counter = Sanitizer(matcher, Mode.KEEP, Scope.ALL)
    tally = Tally()
    for _ in counter.run(input, tally):
        pass
    if kept > tally.episodes_in:
        raise command.fail(
            f"wrote {kept} episodes from {tally.episodes_in}; a filter may only drop"
        )
    report = tally_report(input, output, counter, tally)
    return report.model_copy(
        update={"kept": kept, "dropped": tally.episodes_in - kept, "redacted": 0}
    )


def command_distill(
    command: Command, data: Sequence[Path], base: Path, out: Path, seed: int, device: str
) -> Path:
    """Run the team's recipe on `data` (joined into one JSONL beside `out`) from `base` and
    return `out`; `PluginError` when it fails or `out` holds no model that loads (on `device`)."""
    joined = out.parent / "data.jsonl"
    atomic_write_jsonl(joined, (row for path in data for _, row in read_jsonl(path)))
    shutil.rmtree(out, ignore_errors=True)
    command.run({"data": joined, "base": base, "out": out, "seed": seed})
    if not (out / "config.json").is_file():
        raise command.fail(f"wrote no config.json in {out}")
    from audit.models.loader import load_model_and_tokenizer

    try:
        load_model_and_tokenizer(out, device=device)
    except InputError as err:
        raise command.fail(f"wrote a model that does not load: {err}") from None
    return out
