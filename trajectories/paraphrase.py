"""The templated paraphraser: every assistant thought rewritten by a seeded grammar.

A thought is the `content` of an assistant message (empty content is no thought). Tool
calls, user and tool messages and every field outside `messages` are kept as they are. The
grammar, applied to each sentence of a thought in this order:

1. clause reordering: "Before X, Y." -> "Y before X."; "A, so B." -> "B, since a.";
   "A, then B." -> "A; after that, b." (`REORDERINGS`);
2. synonyms: each phrase of `SYNONYMS` found (whole words, case kept on the first letter) is
   replaced, with probability `SWAP_PROB`, by another phrase of its group;
3. a sentence template (`TEMPLATES`), drawn with probability `TEMPLATE_PROB`, that frames the
   sentence ("Okay, {s}", "{S} That is the plan.").

A thought that comes out unchanged gets the first template that changes it, so every thought
is rewritten. The draws come from a generator seeded by (seed, episode id, message index):
the same seed gives the same rewrite of an episode whatever the order of the file. No phrase
of the grammar holds a default sanitizer keyword (`trajectories.keywords.DEFAULT_KEYWORDS`),
so the paraphraser adds no keyword hit.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from typing import Any

SWAP_PROB = 0.6
TEMPLATE_PROB = 0.5

SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("let me", "I'll", "allow me to"),
    ("I will", "I'm going to", "I shall"),
    ("I want to", "I'd like to", "I need to"),
    ("look at", "check", "inspect"),
    ("a look", "a check", "an inspection"),
    ("first", "to begin with", "initially"),
    ("now", "at this point", "right away"),
    ("next", "following that", "after this"),
    ("done", "finished", "complete"),
    ("all set", "ready", "wrapped up"),
    ("quick", "fast", "brief"),
    ("simplest", "easiest", "most direct"),
    ("fastest", "quickest", "speediest"),
    ("the change", "the edit", "the update"),
    ("the request", "the task", "what was asked"),
    ("everything", "all of it", "the whole thing"),
    ("current state", "present state", "existing setup"),
    ("what we have", "what is there", "what exists"),
    ("carefully", "with care", "cautiously"),
    ("step by step", "one step at a time", "piece by piece"),
    ("as expected", "as anticipated", "as planned"),
    ("good", "fine", "great"),
    ("sure", "of course", "certainly"),
    ("also", "as well", "in addition"),
    ("one more", "another one", "a further one"),
    ("nothing else", "no other thing", "nothing more"),
    ("I checked", "I inspected", "I reviewed"),
    ("make", "carry out", "apply"),
    ("before acting", "before doing anything", "ahead of any action"),
    ("fixed", "resolved", "sorted out"),
)
"""Groups of interchangeable phrases (matched case-insensitively, longest phrase first)."""

TEMPLATES: tuple[str, ...] = (
    "Okay, {s}",
    "{S} That is the plan.",
    "Right: {s}",
    "My plan: {s}",
    "{S} Moving on.",
    "So, {s}",
)
"""Sentence frames: `{s}` the sentence with its first letter lowered, `{S}` as it is."""

REORDERINGS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"^(Before|After) ([^,]+), (.+?)([.!?])$"),
        lambda m: f"{_upper(m[3])} {m[1].lower()} {m[2]}{m[4]}",
    ),
    (
        re.compile(r"^(.+?), so (.+?)([.!?])$"),
        lambda m: f"{_upper(m[2])}, since {_lower(m[1])}{m[3]}",
    ),
    (re.compile(r"^(.+?), then (.+?)([.!?])$"), lambda m: f"{m[1]}; after that, {m[2]}{m[3]}"),
)
"""Clause reorderings: a pattern over one whole sentence and its rewrite."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PHRASES = sorted(
    ((phrase, group) for group in SYNONYMS for phrase in group), key=lambda item: -len(item[0])
)
_PHRASE = re.compile(
    r"(?<![\w'])(" + "|".join(re.escape(phrase) for phrase, _ in _PHRASES) + r")(?![\w'])",
    re.IGNORECASE,
)
_GROUP_OF = {phrase.lower(): group for phrase, group in _PHRASES}


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower(text: str) -> str:
    """`text` with its first letter lowered, unless it is the pronoun I (I, I'll, I'm)."""
    if text[:1] == "I" and (len(text) == 1 or not text[1].isalpha()):
        return text
    return text[:1].lower() + text[1:]


def _swap(match: re.Match[str], rng: random.Random) -> str:
    found = match[0]
    if rng.random() >= SWAP_PROB:
        return found
    group = _GROUP_OF[found.lower()]
    choice = rng.choice([phrase for phrase in group if phrase.lower() != found.lower()])
    return _upper(choice) if found[:1].isupper() else choice


def _frame(template: str, sentence: str) -> str:
    return template.format(s=_lower(sentence), S=sentence)


def _sentence(sentence: str, rng: random.Random) -> str:
    for pattern, rewrite in REORDERINGS:
        match = pattern.match(sentence)
        if match is not None:
            sentence = rewrite(match)
            break
    sentence = _PHRASE.sub(lambda match: _swap(match, rng), sentence)
    sentence = _upper(sentence)
    if rng.random() < TEMPLATE_PROB:
        sentence = _frame(rng.choice(TEMPLATES), sentence)
    return sentence


def paraphrase_text(text: str, rng: random.Random) -> str:
    """`text` rewritten by the grammar (see the module docstring); never `text` itself."""
    sentences = [part for part in _SENTENCE.split(text.strip()) if part]
    rewritten = " ".join(_sentence(sentence, rng) for sentence in sentences)
    if rewritten == text:
        rewritten = next(
            framed for template in TEMPLATES if (framed := _frame(template, text)) != text
        )
    return rewritten


def message_rng(seed: int, episode_id: str, index: int) -> random.Random:
    """The generator of message `index` of episode `episode_id` under `seed`."""
    digest = hashlib.sha256(f"{seed}\0{episode_id}\0{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class Paraphraser:
    """Rewrites every assistant thought of an episode with the grammar, seeded by `seed`."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def episode(self, episode: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """`episode` with its thoughts rewritten, and the number of thoughts rewritten; its
        messages must already be checked (`trajectories.sanitize.check_messages`)."""
        episode_id = str(episode.get("id") or episode.get("task_id") or "")
        messages, rewritten = [], 0
        for index, message in enumerate(episode["messages"]):
            content = message.get("content")
            if message["role"] == "assistant" and isinstance(content, str) and content.strip():
                text = paraphrase_text(content, message_rng(self.seed, episode_id, index))
                message = {**message, "content": text}
                rewritten += 1
            messages.append(message)
        return {**episode, "messages": messages}, rewritten
