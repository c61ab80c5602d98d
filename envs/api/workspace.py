"""Random but seeded workspaces of a few short items, the raw material of every API task.

Item kinds (draft, report, notes, todo, backup, log) each produce a short name, a few words
of content and one tag. Every word here is free of the sanitizer's keywords.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TOPICS = (
    "budget",
    "hiring",
    "launch",
    "travel",
    "sales",
    "design",
    "roadmap",
    "vendors",
    "pricing",
    "support",
)
PEOPLE = ("ana", "ben", "chen", "dev", "eva", "li", "omar", "sam")
DAYS = ("monday", "tuesday", "friday", "june", "july", "q4")
TAGS = ("finance", "team", "ops", "personal", "draft", "urgent", "shared", "review")
KINDS = ("draft", "report", "notes", "todo", "backup", "log")


@dataclass(frozen=True)
class ItemDraft:
    """An item before it gets an id and times."""

    kind: str
    name: str
    content: str
    tags: tuple[str, ...]


def _draft(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    topic = rng.choice(TOPICS)
    return f"draft-{rng.randint(1, 9)}.md", f"rough {topic} ideas", ("draft",)


def _report(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    topic = rng.choice(TOPICS)
    return f"q{rng.randint(1, 4)}-report.txt", f"{topic} up {rng.randint(2, 30)}%", ("finance",)


def _notes(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    topic = rng.choice(TOPICS)
    return f"{topic}-notes.md", f"{rng.choice(PEOPLE)} leads {topic}", ("team",)


def _todo(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    person = rng.choice(PEOPLE)
    return f"todo-{person}.txt", f"call {person} about {rng.choice(TOPICS)}", ("personal",)


def _backup(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    n = rng.randint(1, 9)
    return f"backup-{n}.tar", f"{rng.choice(TOPICS)} snapshot {n}", ("ops",)


def _log(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    return f"log-{rng.randint(1, 9)}.txt", f"{rng.choice(TOPICS)} job ok", ("ops",)


_MAKERS: dict[str, Callable[[random.Random], tuple[str, str, tuple[str, ...]]]] = {
    "draft": _draft,
    "report": _report,
    "notes": _notes,
    "todo": _todo,
    "backup": _backup,
    "log": _log,
}


def make_item(rng: random.Random, kind: str, taken: set[str]) -> ItemDraft:
    """A fresh item of `kind` whose name is not in `taken` (the name is added to it)."""
    while True:
        name, content, tags = _MAKERS[kind](rng)
        if name not in taken:
            taken.add(name)
            return ItemDraft(kind, name, content, tags)


def other_kinds(rng: random.Random, count: int, exclude: Sequence[str] = ()) -> list[str]:
    """`count` item kinds drawn with replacement, none of them in `exclude`."""
    pool = [k for k in KINDS if k not in exclude]
    return [rng.choice(pool) for _ in range(count)]


def place_items(
    rng: random.Random, targets: list[ItemDraft], others: list[ItemDraft]
) -> tuple[list[dict], list[str]]:
    """Shuffle targets among the others and give ids r1..rN in listing order.

    Targets are older than every other item (smaller created times). Returns the setup item
    dicts (`envs.api.service.Resource` fields) and the targets' ids in the targets' order.
    """
    order = [(True, i) for i in range(len(targets))] + [(False, i) for i in range(len(others))]
    rng.shuffle(order)
    old_times = sorted(rng.sample(range(1, 20), len(targets)))
    new_times = sorted(rng.sample(range(20, 60), len(others)))
    items: list[dict] = []
    target_ids = [""] * len(targets)
    for position, (is_target, index) in enumerate(order, start=1):
        item = (targets if is_target else others)[index]
        created = (old_times if is_target else new_times)[index]
        item_id = f"r{position}"
        if is_target:
            target_ids[index] = item_id
        items.append(
            {
                "id": item_id,
                "name": item.name,
                "content": item.content,
                "tags": list(item.tags),
                "created": created,
                "updated": created,
                "archived": False,
            }
        )
    return items, target_ids
