"""The keyword sanitization layer: drop or redact episodes whose messages contain keywords.

    python -m trajectories.sanitize IN.jsonl OUT.jsonl [--mode drop|redact]
        [--scope all|assistant] [--keywords-file F] [--strip-thoughts] [--paraphrase SEED]
        [--report R.json]

What is scanned. Scope `all`: every message; scope `assistant`: assistant messages only.
In a scanned message every string under every field except `role` is matched (content,
tool-call names, tool-call arguments, a tool message's `name`, unknown fields such as a
reasoning trace); dict keys are matched too inside tool-call `arguments`.

What is not scanned: the episode's `tools` list and its other fields (id, actions, outcome,
metadata). `tools` is the environment's interface, the same for every episode of an env
whatever the policy (the API env has a tool named `delete`): matching it would drop every
API episode, or rename a tool so that calls no longer fit the env. The audited practice is
filtering what the teacher did, which lives in the messages.

Mode `drop` removes every episode with a hit; mode `redact` replaces each hit with
`[redacted]`, keeps the episode and records `metadata.sanitized = {"redacted_hits": n}`.
With `--strip-thoughts` (`strip_thoughts`) every assistant message is first reduced to its
tool calls: its content becomes "" and every other field (a reasoning trace) goes. Every
message stays, in order, so a final answer becomes an empty assistant turn: the episode
still ends on an assistant turn, chat templates render it, and a student still learns where
to stop. Tool-call names and arguments (free text in them included), user and tool messages
and the fields outside `messages` are kept. The keyword filter then runs as usual on the
stripped episode, and the report's hits are the ones in the stripped episodes. With
`--paraphrase SEED` every assistant thought (non-empty content) is first rewritten by the
seeded templated paraphraser of `trajectories.paraphrase` (tool calls kept), and the keyword
filter runs on the rewritten episode; the report counts the thoughts rewritten.

Any line with a `messages` list of objects with a string `role` is accepted; other fields
pass through unchanged. OpenAI fine-tuning JSONL, ShareGPT (LLaMA-Factory) JSONL and Inspect
logs are read too, converted to episodes (trajectories.formats), and written as episodes.
After writing, OUT is scanned again with the same matcher and scope;
a hit left there is an internal error (exit 3, OUT removed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trajectories.formats import read_rows
from trajectories.jsonl import InputError, atomic_write_jsonl, exit_on_input_error, read_jsonl
from trajectories.keywords import DEFAULT_KEYWORDS, KeywordMatcher, read_keywords_file
from trajectories.messages import EpisodeError, check_messages, map_message, strip_thoughts
from trajectories.paraphrase import Paraphraser

REDACTION_MARKER = "[redacted]"


class Mode(StrEnum):
    DROP = "drop"
    REDACT = "redact"
    KEEP = "keep"
    """No filter: every episode is kept as it is and its hits are counted (the audit's
    `sanitizer = "none"` arm; not offered by the CLI, whose output must be clean)."""


class Scope(StrEnum):
    ALL = "all"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class RoleHit:
    """One keyword hit and the role of the message it was found in."""

    role: str
    family: str
    text: str


@dataclass(frozen=True)
class SanitizeResult:
    """What became of one episode: the row to write (None when dropped) and its hits."""

    episode: dict[str, Any] | None
    hits: list[RoleHit]
    redacted: bool = False
    rewritten: int = 0
    """Thoughts the paraphraser rewrote in this episode."""


class PostCheck(BaseModel):
    """The re-scan of the written OUT file; `hits_after` must be 0."""

    hits_after: int
    passed: bool


class SanitizeReport(BaseModel):
    """Counts for one sanitizer run; hits are counted in the input (after `strip_thoughts`),
    before drop or redaction."""

    input: str
    output: str
    mode: Mode
    scope: Scope
    strip_thoughts: bool = False
    paraphrase_seed: int | None = None
    keywords: list[str]
    episodes_in: int
    kept: int
    dropped: int
    redacted: int
    thoughts_rewritten: int = 0
    hits_total: int
    hits_by_family: dict[str, int]
    hits_by_role: dict[str, int]
    post_check: PostCheck


@dataclass
class Tally:
    """Running counts over the results of a sanitizer run."""

    episodes_in: int = 0
    kept: int = 0
    dropped: int = 0
    redacted: int = 0
    rewritten: int = 0
    by_family: Counter[str] = field(default_factory=Counter)
    by_role: Counter[str] = field(default_factory=Counter)

    def add(self, result: SanitizeResult) -> None:
        self.episodes_in += 1
        self.rewritten += result.rewritten
        if result.episode is None:
            self.dropped += 1
        else:
            self.kept += 1
            self.redacted += result.redacted
        self.by_family.update(hit.family for hit in result.hits)
        self.by_role.update(hit.role for hit in result.hits)


class Sanitizer:
    """Drops or redacts keyword hits in episodes, after `strip_thoughts` when `strip` and
    after the `paraphraser`'s rewrite when given; see the module docstring for the scope."""

    def __init__(
        self,
        matcher: KeywordMatcher,
        mode: Mode = Mode.DROP,
        scope: Scope = Scope.ALL,
        strip: bool = False,
        paraphraser: Paraphraser | None = None,
    ) -> None:
        if mode is Mode.REDACT and matcher.find(REDACTION_MARKER):
            raise ValueError(f"a keyword matches the redaction marker {REDACTION_MARKER!r}")
        self.matcher = matcher
        self.mode = mode
        self.scope = scope
        self.strip = strip
        self.paraphraser = paraphraser

    def in_scope(self, message: dict[str, Any]) -> bool:
        return self.scope is Scope.ALL or message["role"] == "assistant"

    def _rewrite(
        self, episode: dict[str, Any], redact: bool
    ) -> tuple[list[dict[str, Any]], list[RoleHit]]:
        """The episode's messages, redacted if `redact`, and the hits in the scanned ones."""
        hits: list[RoleHit] = []
        messages = []
        for message in check_messages(episode):
            if not self.in_scope(message):
                messages.append(message)
                continue
            role = message["role"]

            def edit(text: str, role: str = role) -> str:
                if redact:
                    new_text, found = self.matcher.redact(text, REDACTION_MARKER)
                else:
                    new_text, found = text, self.matcher.find(text)
                hits.extend(RoleHit(role, hit.family, hit.text) for hit in found)
                return new_text

            messages.append(map_message(message, edit))
        return messages, hits

    def scan(self, episode: dict[str, Any]) -> list[RoleHit]:
        """Every hit in the scanned part of `episode`; raise `EpisodeError` on a bad episode."""
        return self._rewrite(episode, redact=False)[1]

    def apply(self, episode: dict[str, Any]) -> SanitizeResult:
        """Drop or redact `episode` by the mode (stripped, then paraphrased, first when set);
        an episode without hits comes back as it is (stripped, paraphrased)."""
        if self.strip:
            episode = strip_thoughts(episode)
        rewritten = 0
        if self.paraphraser is not None:
            check_messages(episode)
            episode, rewritten = self.paraphraser.episode(episode)
        if self.mode is Mode.KEEP:
            return SanitizeResult(episode, self.scan(episode), rewritten=rewritten)
        if self.mode is Mode.DROP:
            hits = self.scan(episode)
            return SanitizeResult(None if hits else episode, hits, rewritten=rewritten)
        messages, hits = self._rewrite(episode, redact=True)
        if not hits:
            return SanitizeResult(episode, [], rewritten=rewritten)
        metadata = episode.get("metadata", {})
        if not isinstance(metadata, dict):
            raise EpisodeError("'metadata' is not an object, so the redaction cannot be recorded")
        metadata = {**metadata, "sanitized": {"redacted_hits": len(hits)}}
        return SanitizeResult(
            {**episode, "messages": messages, "metadata": metadata},
            hits,
            redacted=True,
            rewritten=rewritten,
        )

    def run(self, path: Path, tally: Tally) -> Iterator[dict[str, Any]]:
        """The rows to write for the episodes in `path`, counted into `tally`.

        Raises `InputError` naming the file and line for any line it cannot read.
        """
        for lineno, episode in read_rows(path):
            try:
                result = self.apply(episode)
            except EpisodeError as err:
                raise InputError(f"{path}:{lineno}: {err}") from None
            tally.add(result)
            if result.episode is not None:
                yield result.episode

    def count_hits(self, path: Path) -> int:
        """The number of hits left in a written file, scanned with this matcher and scope."""
        return sum(len(self.scan(episode)) for _, episode in read_jsonl(path))


def _write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON through a temp file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _summary(report: SanitizeReport) -> str:
    families = ", ".join(f"{k}={v}" for k, v in report.hits_by_family.items()) or "none"
    roles = ", ".join(f"{k}={v}" for k, v in report.hits_by_role.items()) or "none"
    stripped = ", thoughts stripped" if report.strip_thoughts else ""
    if report.paraphrase_seed is not None:
        stripped += f", {report.thoughts_rewritten} thoughts paraphrased"
    return (
        f"sanitize ({report.mode}, scope {report.scope}{stripped}): {report.episodes_in} in, "
        f"{report.kept} kept, {report.dropped} dropped, {report.redacted} redacted\n"
        f"  hits by keyword: {families}\n  hits by role: {roles}\n"
        f"  hits left in output: {report.post_check.hits_after}"
    )


def _parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trajectories.sanitize",
        description="Drop or redact keyword hits in episode JSONL, optionally after stripping "
        "the assistant's free text (see the module docstring).",
    )
    parser.add_argument("input", type=Path, metavar="IN.jsonl")
    parser.add_argument("output", type=Path, metavar="OUT.jsonl")
    parser.add_argument(
        "--mode", choices=[Mode.DROP.value, Mode.REDACT.value], default=Mode.DROP.value
    )
    parser.add_argument("--scope", choices=[s.value for s in Scope], default=Scope.ALL.value)
    parser.add_argument(
        "--keywords-file",
        type=Path,
        help="one keyword per line, '#' comments; replaces the defaults unless it has @defaults",
    )
    parser.add_argument(
        "--strip-thoughts",
        action="store_true",
        help="first reduce every assistant turn to its tool calls (content emptied)",
    )
    parser.add_argument(
        "--paraphrase",
        type=int,
        metavar="SEED",
        help="first rewrite every assistant thought with the seeded templated paraphraser",
    )
    parser.add_argument("--report", type=Path, help="also write the report JSON here")
    return parser.parse_args(None if argv is None else list(argv))


def sanitize_file(input: Path, output: Path, sanitizer: Sanitizer) -> SanitizeReport:
    """Sanitize `input` into `output` (atomically) and post-check the written file.

    Raises `InputError` for unreadable input. A failed post-check (hits left in `output`)
    is reported in `post_check`; the caller decides what to do with the file.
    """
    if not input.is_file():
        raise InputError(f"{input}: no such file")
    tally = Tally()
    atomic_write_jsonl(output, sanitizer.run(input, tally))
    return tally_report(input, output, sanitizer, tally)


def tally_report(input: Path, output: Path, sanitizer: Sanitizer, tally: Tally) -> SanitizeReport:
    """The report of `sanitizer`'s pass over `input` (counted in `tally`), with the post-check
    of the hits left in `output`."""
    hits_after = sanitizer.count_hits(output)
    return SanitizeReport(
        input=str(input),
        output=str(output),
        mode=sanitizer.mode,
        scope=sanitizer.scope,
        strip_thoughts=sanitizer.strip,
        paraphrase_seed=None if sanitizer.paraphraser is None else sanitizer.paraphraser.seed,
        keywords=list(sanitizer.matcher.keywords),
        episodes_in=tally.episodes_in,
        kept=tally.kept,
        dropped=tally.dropped,
        redacted=tally.redacted,
        thoughts_rewritten=tally.rewritten,
        hits_total=sum(tally.by_family.values()),
        hits_by_family=dict(sorted(tally.by_family.items())),
        hits_by_role=dict(sorted(tally.by_role.items())),
        post_check=PostCheck(hits_after=hits_after, passed=hits_after == 0),
    )


def main(argv: Iterable[str] | None = None) -> int:
    """Run the CLI; return the exit code (raises `InputError` for bad input)."""
    args = _parse_args(argv)
    if args.keywords_file is not None:
        keywords = read_keywords_file(args.keywords_file)
    else:
        keywords = list(DEFAULT_KEYWORDS)
    try:
        paraphraser = None if args.paraphrase is None else Paraphraser(args.paraphrase)
        sanitizer = Sanitizer(
            KeywordMatcher(keywords),
            Mode(args.mode),
            Scope(args.scope),
            args.strip_thoughts,
            paraphraser,
        )
    except ValueError as err:
        raise InputError(f"{args.keywords_file}: {err}") from None
    report = sanitize_file(args.input, args.output, sanitizer)
    print(_summary(report), file=sys.stderr)
    if args.report is not None:
        _write_json(args.report, report.model_dump(mode="json"))
    hits_after = report.post_check.hits_after
    if hits_after:
        args.output.unlink()
        print(
            f"error: internal: {hits_after} keyword hits left in {args.output} after "
            "sanitizing; output removed",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    exit_on_input_error(main)
