"""Episodes from JSONL, and their export as a `datasets.Dataset` for `trl.SFTTrainer`.

The dataset has two columns in TRL's conversational tool-calling format: `messages` (the
chat, tool-call arguments as dicts) and `tools` (the JSON schemas). Both are lists of
`datasets.Json` values, so every message and schema keeps exactly its own keys; a plain
Arrow struct would merge the keys of all rows and fill the gaps with nulls, which a chat
template then renders (e.g. `{"id": "r2", "name": null}` as arguments).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset, Features, Json, List
from pydantic import ValidationError

from trajectories.episode import Episode
from trajectories.identity import strip_identity
from trajectories.jsonl import InputError, read_jsonl

FEATURES = Features({"messages": List(Json()), "tools": List(Json())})
"""The dataset's schema: one JSON value per message and per tool schema."""


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "episode"
    return f"{where}: {first['msg']}"


def load_episodes(path: str | Path) -> list[Episode]:
    """Every episode of a JSONL file; a line that is not an episode raises `InputError`."""
    episodes = []
    for lineno, obj in read_jsonl(path):
        try:
            episodes.append(Episode.model_validate(obj))
        except ValidationError as err:
            raise InputError(f"{path}:{lineno}: not an episode ({_first_error(err)})") from None
    return episodes


def to_dataset(sources: Iterable[str | Path | Episode]) -> Dataset:
    """A `Dataset` with columns `messages` and `tools` from episodes and JSONL paths, each
    episode's identity metadata stripped first (trajectories.identity)."""
    episodes: list[Episode] = []
    for source in sources:
        episodes += [source] if isinstance(source, Episode) else load_episodes(source)
    episodes = [strip_identity(episode) for episode in episodes]
    return Dataset.from_dict(
        {
            "messages": [e.chat_messages() for e in episodes],
            "tools": [e.tools for e in episodes],
        },
        features=FEATURES,
    )
