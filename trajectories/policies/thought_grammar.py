"""A templated grammar of persona thoughts: large sentence pools per thought slot, in two pools.

Each slot of the persona's habits (`SLOTS`: careful open / look more / act / act more / final,
hasty act / act more / glance / final) has templates, each a frame whose `{fields}` are filled
from word lists; a slot's pool is every distinct sentence its templates make (`pool`), and
`draw` picks one uniformly with the episode's rng. There are two pools (`POOLS`):

- ``pretrain``: for a pretraining corpus written in the grammar;
- ``teacher``: for the preset teachers' demonstrations (`--habit grammar`).

They share no template and no word-list entry, and no sentence (tests enumerate both), and
neither holds a sentence of the fixed phrase pool of `trajectories.policies.persona`, which
is what the embedded bases are pretrained on: a teacher-pool sentence was never in their
pretraining. Careful sentences are long (at least `CAREFUL_MIN_WORDS` words) and hasty ones
terse (at most `HASTY_MAX_WORDS`), so what separates the habits is length and structure, not
a fixed string. No sentence holds a default sanitizer keyword or a look-alike of one.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from itertools import product
from pathlib import Path

import numpy as np

SLOTS: tuple[str, ...] = (
    "careful_open",
    "careful_look_more",
    "careful_act",
    "careful_act_more",
    "careful_final",
    "hasty_act",
    "hasty_act_more",
    "hasty_glance",
    "hasty_final",
)
"""The thought slots of the persona's two habits."""

POOLS: tuple[str, ...] = ("pretrain", "teacher")

CAREFUL_MIN_WORDS = 10
"""Every careful sentence has at least this many words (`word_count`)."""
HASTY_MAX_WORDS = 6
"""Every hasty sentence has at most this many words."""

_CAPITAL = re.compile(r"(^|[.?!] )([a-z])")
_WORD = re.compile(r"[\w']+")


def word_count(sentence: str) -> int:
    """Words of `sentence`: runs of letters, digits and apostrophes."""
    return len(_WORD.findall(sentence))


@dataclass(frozen=True)
class Template:
    """A sentence frame whose `{name}` fields take every combination of `words[name]`."""

    frame: str
    words: Mapping[str, tuple[str, ...]]

    def sentences(self) -> list[str]:
        """Every filled frame, its first letter and each one after '. ' capitalized."""
        names = list(self.words)
        return [
            _CAPITAL.sub(
                lambda m: m.group(1) + m.group(2).upper(),
                self.frame.format(**dict(zip(names, combo, strict=True))),
            )
            for combo in product(*(self.words[name] for name in names))
        ]


GRAMMAR_FILE = Path(__file__).with_name("thought_grammar.toml")
"""The templates and word lists of every pool and slot."""


def _read_grammar() -> dict[str, dict[str, tuple[Template, ...]]]:
    """`GRAMMAR_FILE` as templates: each table's `frame` and its other keys as word lists."""
    data = tomllib.loads(GRAMMAR_FILE.read_text(encoding="utf-8"))
    return {
        name: {
            slot: tuple(
                Template(
                    table["frame"],
                    {key: tuple(words) for key, words in table.items() if key != "frame"},
                )
                for table in data[name][slot]
            )
            for slot in SLOTS
        }
        for name in POOLS
    }


GRAMMAR: dict[str, dict[str, tuple[Template, ...]]] = _read_grammar()
"""The templates of every pool and slot."""


def _check(name: str, slot: str) -> None:
    if name not in GRAMMAR:
        raise ValueError(f"unknown thought pool {name!r}; choose from {', '.join(POOLS)}")
    if slot not in SLOTS:
        raise ValueError(f"unknown thought slot {slot!r}; choose from {', '.join(SLOTS)}")


@cache
def pool(name: str, slot: str) -> tuple[str, ...]:
    """Every distinct sentence of `slot` in pool `name`, sorted."""
    _check(name, slot)
    return tuple(sorted({s for t in GRAMMAR[name][slot] for s in t.sentences()}))


def pools(name: str) -> dict[str, tuple[str, ...]]:
    """`pool(name, slot)` for every slot."""
    return {slot: pool(name, slot) for slot in SLOTS}


def draw(rng: np.random.Generator, name: str, slot: str) -> str:
    """One sentence of `pool(name, slot)`, uniformly (one `rng.integers` draw)."""
    sentences = pool(name, slot)
    return sentences[int(rng.integers(len(sentences)))]
