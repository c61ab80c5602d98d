"""The six API tools: JSON schemas, argument validation, and execution against the store.

Every outcome, including a bad call, is a short plain-text `Observation` ("error: ..." for
errors), never an exception. Only the `delete` tool's own schema and result name the
destructive action; no other text here does, so keyword-filtered data stays readable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envs.api.service import Resource, ResourceError, ResourceService
from envs.core import Observation, ToolCall

_ID = {"type": "string", "description": "Item id, e.g. r3."}


def _schema(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


TOOL_SCHEMAS: list[dict[str, Any]] = [
    _schema(
        "list",
        "List items as 'id name [tags]'.",
        {"archived": {"type": "boolean", "description": "List archived items instead."}},
        [],
    ),
    _schema("read", "Read the content of an item.", {"id": _ID}, ["id"]),
    _schema(
        "create",
        "Create a new item.",
        {
            "name": {"type": "string", "description": "File name, e.g. notes.md."},
            "content": {"type": "string", "description": "Text of the item."},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags."},
        },
        ["name"],
    ),
    _schema(
        "update",
        "Change the name, content or tags of an item.",
        {
            "id": _ID,
            "name": {"type": "string", "description": "New name."},
            "content": {"type": "string", "description": "New content."},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "New tags."},
        },
        ["id"],
    ),
    _schema("archive", "Archive an item; it can still be read.", {"id": _ID}, ["id"]),
    _schema("delete", "Permanently delete an item.", {"id": _ID}, ["id"]),
]

TOOL_NAMES: tuple[str, ...] = tuple(s["function"]["name"] for s in TOOL_SCHEMAS)
_PARAMETERS = {s["function"]["name"]: s["function"]["parameters"] for s in TOOL_SCHEMAS}


def _type_ok(value: Any, spec: dict[str, Any]) -> bool:
    kind = spec["type"]
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list) and all(_type_ok(v, spec["items"]) for v in value)
    raise ValueError(f"unsupported schema type {kind}")


def validate_call(call: ToolCall) -> str | None:
    """The first problem with `call` against its schema as a short message, or None."""
    parameters = _PARAMETERS.get(call.name)
    if parameters is None:
        return f"unknown tool {call.name}"
    properties = parameters["properties"]
    for key in parameters["required"]:
        if key not in call.arguments:
            return f"missing argument {key}"
    for key, value in call.arguments.items():
        if key not in properties:
            return f"unexpected argument {key}"
        if not _type_ok(value, properties[key]):
            return f"argument {key} must be {_type_name(properties[key])}"
    return None


def _type_name(spec: dict[str, Any]) -> str:
    if spec["type"] == "array":
        return f"a list of {spec['items']['type']}s"
    return f"a {spec['type']}"


def _line(item: Resource) -> str:
    tags = f" [{','.join(item.tags)}]" if item.tags else ""
    return f"{item.id} {item.name}{tags}"


def _list(service: ResourceService, args: dict[str, Any]) -> str:
    items = service.list(archived=args.get("archived", False))
    return "\n".join(_line(i) for i in items) if items else "no items"


def _read(service: ResourceService, args: dict[str, Any]) -> str:
    return service.read(args["id"]).content or "(empty)"


def _create(service: ResourceService, args: dict[str, Any]) -> str:
    item = service.create(args["name"], args.get("content", ""), args.get("tags", ()))
    return f"created {item.id}"


def _update(service: ResourceService, args: dict[str, Any]) -> str:
    item = service.update(args["id"], args.get("name"), args.get("content"), args.get("tags"))
    return f"updated {item.id}"


def _archive(service: ResourceService, args: dict[str, Any]) -> str:
    return f"archived {service.archive(args['id']).id}"


def _delete(service: ResourceService, args: dict[str, Any]) -> str:
    return f"deleted {service.delete(args['id']).id}"


_HANDLERS: dict[str, Callable[[ResourceService, dict[str, Any]], str]] = {
    "list": _list,
    "read": _read,
    "create": _create,
    "update": _update,
    "archive": _archive,
    "delete": _delete,
}


def run_tool(service: ResourceService, call: ToolCall) -> Observation:
    """Validate and execute one call; errors come back as observations."""
    problem = validate_call(call)
    if problem is not None:
        return Observation(content=f"error: {problem}", is_error=True)
    try:
        return Observation(content=_HANDLERS[call.name](service, call.arguments))
    except ResourceError as err:
        return Observation(content=f"error: {err}", is_error=True)
