"""Command plug-ins: the team's own program run as one stage of the audited pipeline.

A plug-in is given as `cmd:PROGRAM ARGS...`, split with `shlex`; `{name}` placeholders in
the arguments are replaced by paths (or numbers) when it runs, each as one argument (or
inside one, as in `--out={out}`), never through a shell. A command that exits non-zero, or
writes nothing usable, is a `PluginError` (exit 2): one line naming the command and the
last line of its stderr.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trajectories.jsonl import InputError, read_jsonl
from trajectories.messages import EpisodeError, check_messages

PREFIX = "cmd:"
_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")


class PluginError(InputError):
    """A plug-in command that cannot run, failed, or wrote nothing usable (one line)."""


def is_command(spec: str) -> bool:
    """Whether `spec` names a command plug-in (`cmd:...`) rather than a built-in."""
    return spec.startswith(PREFIX)


@dataclass(frozen=True)
class Command:
    """A parsed `cmd:` plug-in: the option it was given to, its spec and its argument list."""

    option: str
    spec: str
    argv: tuple[str, ...]

    @classmethod
    def parse(
        cls, option: str, spec: str, required: Sequence[str], optional: Sequence[str] = ()
    ) -> Command:
        """Split `spec` with shlex and check its placeholders and program; `PluginError`
        unless every `required` placeholder is there, no unknown one is, and the program is
        on PATH or an existing file."""
        try:
            argv = tuple(shlex.split(spec.removeprefix(PREFIX)))
        except ValueError as err:
            raise PluginError(f"{option} {spec!r}: cannot split it with shlex ({err})") from None
        if not argv:
            raise PluginError(f"{option} {spec!r}: no program after {PREFIX}")
        found = {name for arg in argv for name in _PLACEHOLDER.findall(arg)}
        missing = [f"{{{name}}}" for name in required if name not in found]
        if missing:
            raise PluginError(f"{option} {spec!r}: missing placeholder {', '.join(missing)}")
        unknown = sorted(found - set(required) - set(optional))
        if unknown:
            known = ", ".join(f"{{{name}}}" for name in (*required, *optional))
            raise PluginError(
                f"{option} {spec!r}: unknown placeholder {{{unknown[0]}}}; known: {known}"
            )
        program = argv[0]
        if shutil.which(program) is None and not Path(program).is_file():
            raise PluginError(f"{option} {spec!r}: no such program {program!r}")
        return cls(option, spec, argv)

    def files(self) -> list[Path]:
        """The program when it is given as a path, and its first argument when that is an
        existing file (the script of `python x.py`): the code a stage key should hash."""
        candidates = [self.argv[0]] if "/" in self.argv[0] else []
        candidates += [arg for arg in self.argv[1:2] if not _PLACEHOLDER.search(arg)]
        return [Path(arg) for arg in candidates if Path(arg).is_file()]

    def substitute(self, values: Mapping[str, str | Path | int]) -> list[str]:
        """The argument list with each `{name}` replaced by `values[name]`."""
        return [
            _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), arg) for arg in self.argv
        ]

    def fail(self, reason: str) -> PluginError:
        """A `PluginError` naming this command and `reason`."""
        return PluginError(f"{self.option} {self.spec!r}: {reason}")

    def run(self, values: Mapping[str, str | Path | int]) -> None:
        """Run the command with `values` substituted; `PluginError` on a non-zero exit, with
        the last line of its stderr. Its stdout is discarded."""
        try:
            result = subprocess.run(
                self.substitute(values),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as err:
            raise self.fail(f"cannot run it ({err.strerror or err})") from None
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else "no stderr"
            raise self.fail(f"exited {result.returncode}: {last}")


def count_episodes(command: Command, path: Path) -> int:
    """The number of episodes in the JSONL `command` wrote at `path`; `PluginError` when the
    file is missing, empty, not JSONL, or a line is not an episode with messages."""
    if not path.is_file():
        raise command.fail(f"wrote no file at {path}")
    count = 0
    try:
        for lineno, row in read_jsonl(path):
            try:
                check_messages(row)
            except EpisodeError as err:
                raise command.fail(f"wrote {path}:{lineno}: {err}") from None
            count += 1
    except PluginError:
        raise
    except InputError as err:
        raise command.fail(f"wrote {err}") from None
    if count == 0:
        raise command.fail(f"wrote no episodes in {path}")
    return count
