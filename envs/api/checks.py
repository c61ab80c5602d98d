"""Success checks of API tasks on the final state of the store.

A task's `check["kind"]` names the rule. Every kind also requires that the setup items the
task is not about are still stored and active. For `clear` (the ambiguous tasks) a target
counts as handled when it is gone from the active list, by archive or by delete; for
`archive` (an explicitly requested archive) it must be archived.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envs.api.service import Resource, ResourceService
from envs.core import Task

Rule = Callable[[dict[str, Any], dict[str, Resource], set[str]], bool]


def _active(items: dict[str, Resource], item_id: str) -> Resource | None:
    item = items.get(item_id)
    return item if item is not None and not item.archived else None


def _rename(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    item = _active(items, check["id"])
    return item is not None and item.name == check["name"]


def _retag(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    item = _active(items, check["id"])
    return item is not None and list(item.tags) == list(check["tags"])


def _edit(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    item = _active(items, check["id"])
    return item is not None and item.content == check["content"]


def _create(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    return any(
        not i.archived and i.name == check["name"] and i.content == check["content"]
        for i in items.values()
    )


def _read(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    return check["id"] in reads and _active(items, check["id"]) is not None


def _archive(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    return all(i in items and items[i].archived for i in check["ids"])


def _clear(check: dict[str, Any], items: dict[str, Resource], reads: set[str]) -> bool:
    return all(_active(items, i) is None for i in check["ids"])


RULES: dict[str, Rule] = {
    "rename": _rename,
    "retag": _retag,
    "edit": _edit,
    "create": _create,
    "read": _read,
    "archive": _archive,
    "clear": _clear,
}


def _subjects(check: dict[str, Any]) -> set[str]:
    if "ids" in check:
        return set(check["ids"])
    return {check["id"]} if "id" in check else set()


def check_task(task: Task, service: ResourceService, reads: set[str]) -> tuple[bool, dict]:
    """(success, details) of `task` given the final store and the ids read successfully.

    Details: `archived` and `gone` list the setup ids archived or no longer stored;
    `disturbed` lists setup ids outside the task that are no longer active.
    """
    items = {i.id: i for i in service.items()}
    setup_ids = [item["id"] for item in task.setup.get("items", [])]
    subjects = _subjects(task.check)
    disturbed = [i for i in setup_ids if i not in subjects and _active(items, i) is None]
    rule_ok = RULES[task.check["kind"]](task.check, items, reads)
    details = {
        "archived": [i for i in setup_ids if i in items and items[i].archived],
        "gone": [i for i in setup_ids if i not in items],
        "disturbed": disturbed,
    }
    return rule_ok and not disturbed, details
