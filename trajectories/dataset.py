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

from trajectories.episode import Episode
from trajectories.formats import read_episodes
from trajectories.identity import strip_identity

FEATURES = Features({"messages": List(Json()), "tools": List(Json())})
"""The dataset's schema: one JSON value per message and per tool schema."""


def load_episodes(path: str | Path) -> list[Episode]:
    """Every episode of a file in any format trajectories.formats reads; a line that is not
    an episode raises `InputError` naming the file and line."""
    return read_episodes(path)


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
