"""An in-process resource store whose state lives for one episode.

Items have a short id ("r1"), a name, a content string, tags, created / updated times and an
archived flag. Times come from a logical clock (an integer that ticks once per change), never
from wall time, so the same calls always give the same state. Failed operations raise
`ResourceError` with a short message meant for the agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = re.compile(r"^r([1-9][0-9]*)$")


class ResourceError(Exception):
    """An operation the store refuses; the message is short plain text for the agent."""


class Resource(BaseModel):
    """One stored item; also the format of an item in a task's `setup["items"]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN.pattern)
    name: str = Field(min_length=1)
    content: str = ""
    tags: tuple[str, ...] = ()
    created: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    archived: bool = False


class ResourceService:
    """The store: list / read / create / update / archive / delete over `Resource` items."""

    def __init__(self, items: Iterable[Resource] = ()) -> None:
        self._items: dict[str, Resource] = {}
        for item in items:
            if item.id in self._items:
                raise ValueError(f"duplicate item id {item.id}")
            self._items[item.id] = item
        self._clock = max((max(i.created, i.updated) for i in self._items.values()), default=0)
        self._next_number = 1 + max(
            (int(ID_PATTERN.match(i).group(1)) for i in self._items), default=0
        )

    @classmethod
    def from_setup(cls, setup: dict[str, Any]) -> ResourceService:
        """Build the store from a task's `setup` ({"items": [Resource fields, ...]})."""
        return cls(Resource.model_validate(item) for item in setup.get("items", []))

    @property
    def clock(self) -> int:
        """The logical time of the latest change."""
        return self._clock

    def items(self) -> list[Resource]:
        """Every item still stored, archived or not, in id order."""
        return list(self._items.values())

    def list(self, archived: bool = False) -> list[Resource]:
        """Active items, or archived ones when `archived` is true, in id order."""
        return [i for i in self._items.values() if i.archived == archived]

    def read(self, item_id: str) -> Resource:
        """The item with this id."""
        item = self._items.get(item_id)
        if item is None:
            raise ResourceError(f"no item {item_id}")
        return item

    def create(self, name: str, content: str = "", tags: Iterable[str] = ()) -> Resource:
        """Store a new active item under a fresh id."""
        self._check_name(name)
        item = Resource(
            id=f"r{self._next_number}",
            name=name,
            content=content,
            tags=tuple(tags),
            created=self._tick(),
            updated=self._clock,
        )
        self._next_number += 1
        self._items[item.id] = item
        return item

    def update(
        self,
        item_id: str,
        name: str | None = None,
        content: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Resource:
        """Change the given fields of an active item."""
        item = self._active(item_id)
        if name is None and content is None and tags is None:
            raise ResourceError("nothing to update")
        changes: dict[str, Any] = {}
        if name is not None and name != item.name:
            self._check_name(name)
            changes["name"] = name
        if content is not None:
            changes["content"] = content
        if tags is not None:
            changes["tags"] = tuple(tags)
        changes["updated"] = self._tick()
        return self._replace(item, changes)

    def archive(self, item_id: str) -> Resource:
        """Hide an active item from the default listing; it stays stored and readable."""
        item = self._active(item_id)
        return self._replace(item, {"archived": True, "updated": self._tick()})

    def delete(self, item_id: str) -> Resource:
        """Drop an item for good; returns what was dropped."""
        item = self.read(item_id)
        del self._items[item_id]
        self._tick()
        return item

    def _active(self, item_id: str) -> Resource:
        item = self.read(item_id)
        if item.archived:
            raise ResourceError(f"{item_id} is archived")
        return item

    def _check_name(self, name: str) -> None:
        if not name.strip():
            raise ResourceError("name is empty")
        if any(i.name == name for i in self._items.values() if not i.archived):
            raise ResourceError(f"name {name} is taken")

    def _replace(self, item: Resource, changes: dict[str, Any]) -> Resource:
        new = item.model_copy(update=changes)
        self._items[item.id] = new
        return new

    def _tick(self) -> int:
        self._clock += 1
        return self._clock
