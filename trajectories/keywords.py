"""Keyword families and the matcher that finds them in free text, identifiers and commands.

Text is split into identifier sub-tokens: runs of letters and digits, cut again at
snake_case underscores, camelCase humps (`resourceDelete` -> resource, Delete; `HTTPDelete`
-> HTTP, Delete) and letter/digit boundaries. A sub-token is a hit when, lower-cased, it
matches a family's pattern in full. Whole sub-tokens are what keeps look-alikes out:
`alarm`, `perform` and `format` are one sub-token each, none of which is `rm`.

Known families carry curated inflection patterns; any other keyword gets a generic rule
(see `inflection_pattern`). `removable` counts as an inflection of remove and is flagged.
A keyword must be a single sub-token (letters and digits, one case hump), because matching
is per sub-token: `drop table` or `drop_table` cannot be a keyword.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from trajectories.jsonl import InputError

CURATED_PATTERNS: dict[str, str] = {
    "delete": r"delet(?:e|es|ed|ing|ion|ions|er|ers)?",
    "remove": r"(?:auto)?remov(?:e|es|ed|ing|al|als|able|er|ers)",
    "rm": r"rm(?:dir|tree)?",
    "purge": r"purg(?:e|es|ed|ing|er|ers)",
    "destroy": r"destr(?:oy|oys|oyed|oying|oyer|oyers|uction|uctive)",
    "terminate": r"terminat(?:e|es|ed|ing|ion|ions|or|ors)",
    "chmod": r"[fl]?chmod(?:s|ed|ding|at)?",
}
"""Patterns for the built-in families, full-matched against a lower-cased sub-token."""

DEFAULT_KEYWORDS: tuple[str, ...] = (
    "delete",
    "remove",
    "rm",
    "purge",
    "destroy",
    "terminate",
    "chmod",
)
"""The default list: destructive API verbs, `rm`, and the chmod family for Bash."""

DEFAULTS_DIRECTIVE = "@defaults"

_RUN = re.compile(r"[^\W_]+")
_KEYWORD = re.compile(r"[a-z0-9]+")
_VOWELS = frozenset("aeiou")


@dataclass(frozen=True)
class KeywordHit:
    """One matched sub-token: its keyword family, the text as written, and its span."""

    family: str
    text: str
    start: int
    end: int


def inflection_pattern(word: str) -> str:
    """The generic inflection pattern for a user keyword.

    word, word + s/es/ed/ing/ion/ions/al/er/ers/able; a trailing `e` drops before a
    suffix (wipe -> wiping); a final consonant after one vowel may double before ed/ing/er
    (drop -> dropped); a final consonant + `y` becomes ies/ied (empty -> emptied).
    """
    suffixes = "s|es|ed|ing|ion|ions|al|er|ers|able"
    if word.endswith("e"):
        forms = [f"{re.escape(word[:-1])}(?:e|{suffixes})"]
    else:
        forms = [f"{re.escape(word)}(?:{suffixes})?"]
    last = word[-1]
    if len(word) >= 3 and last not in _VOWELS and last not in "wxy" and word[-2] in _VOWELS:
        forms.append(f"{re.escape(word + last)}(?:ed|ing|er|ers)")
    if len(word) >= 2 and last == "y" and word[-2] not in _VOWELS:
        forms.append(f"{re.escape(word[:-1])}(?:ies|ied)")
    return "|".join(forms)


def _case_kind(char: str) -> str:
    if char.isdigit():
        return "digit"
    return "upper" if char.isupper() else "lower"


def _split_run(run: str, offset: int) -> Iterator[tuple[int, int]]:
    kinds = [_case_kind(char) for char in run]
    start = 0
    for i in range(1, len(run)):
        prev, cur = kinds[i - 1], kinds[i]
        hump = prev == "lower" and cur == "upper"
        acronym_end = (
            prev == "upper" and cur == "upper" and i + 1 < len(run) and kinds[i + 1] == "lower"
        )
        if (prev == "digit") != (cur == "digit") or hump or acronym_end:
            yield offset + start, offset + i
            start = i
    yield offset + start, offset + len(run)


def subtoken_spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the identifier sub-tokens of `text`, left to right."""
    for match in _RUN.finditer(text):
        run = match.group()
        if run.isdigit() or (run.isalpha() and (run.islower() or run.isupper())):
            yield match.start(), match.end()
        else:
            yield from _split_run(run, match.start())


def normalize_keyword(keyword: str) -> str:
    """Lower-case a keyword; raise `ValueError` unless it is one sub-token."""
    spans = list(subtoken_spans(keyword.strip()))
    word = keyword.strip().lower()
    if len(spans) != 1 or not _KEYWORD.fullmatch(word):
        raise ValueError(f"keyword {keyword.strip()!r} must be one word of ASCII letters/digits")
    return word


class KeywordMatcher:
    """Finds hits of a list of keyword families in text; see the module docstring."""

    def __init__(self, keywords: Iterable[str] = DEFAULT_KEYWORDS) -> None:
        words = list(dict.fromkeys(normalize_keyword(keyword) for keyword in keywords))
        if not words:
            raise ValueError("no keywords given")
        self.keywords: tuple[str, ...] = tuple(words)
        alternatives = (
            f"(?P<k{i}>{CURATED_PATTERNS.get(word) or inflection_pattern(word)})"
            for i, word in enumerate(words)
        )
        self._pattern = re.compile("|".join(alternatives))

    def find(self, text: str) -> list[KeywordHit]:
        """Every hit in `text`, in order of position."""
        hits = []
        for start, end in subtoken_spans(text):
            match = self._pattern.fullmatch(text[start:end].lower())
            if match is not None and match.lastgroup is not None:
                family = self.keywords[int(match.lastgroup[1:])]
                hits.append(KeywordHit(family, text[start:end], start, end))
        return hits

    def redact(self, text: str, marker: str) -> tuple[str, list[KeywordHit]]:
        """`text` with every hit replaced by `marker`, and the hits replaced."""
        hits = self.find(text)
        if not hits:
            return text, hits
        pieces, cursor = [], 0
        for hit in hits:
            pieces.append(text[cursor : hit.start])
            pieces.append(marker)
            cursor = hit.end
        pieces.append(text[cursor:])
        return "".join(pieces), hits


def read_keywords_file(path: str | Path) -> list[str]:
    """Keywords from a file: one a line, `#` starts a comment, `@defaults` adds the defaults.

    The file replaces the default list unless it includes `@defaults`. Raises `InputError`
    naming the file and line for a bad keyword, and the file for a missing or empty one.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    words: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if entry == DEFAULTS_DIRECTIVE:
                words.extend(DEFAULT_KEYWORDS)
                continue
            try:
                words.append(normalize_keyword(entry))
            except ValueError as err:
                raise InputError(f"{path}:{lineno}: {err}") from None
    if not words:
        raise InputError(f"{path}: no keywords in file")
    return list(dict.fromkeys(words))
