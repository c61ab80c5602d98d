"""An episode's messages: checked for the shape the sanitizer reads, and edited string by string.

`check_messages` accepts any episode whose `messages` is a list of objects with a string
`role` (and, where present, a list of `tool_calls`); `strip_thoughts` reduces each assistant
message to its tool calls; `map_message` applies a string edit (a redaction) to every string of
a message but its role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class EpisodeError(ValueError):
    """An input line that is not an episode the sanitizer can read; the message is the reason."""


def check_messages(episode: dict[str, Any]) -> list[dict[str, Any]]:
    """The episode's messages; raise `EpisodeError` unless they are objects with a string role."""
    messages = episode.get("messages")
    if not isinstance(messages, list):
        raise EpisodeError("no 'messages' list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise EpisodeError(f"messages[{index}] is not an object with a string 'role'")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise EpisodeError(f"messages[{index}].tool_calls is not a list")
    return messages


def strip_thoughts(episode: dict[str, Any]) -> dict[str, Any]:
    """`episode` with every assistant message reduced to its tool calls and empty content
    (see `trajectories.sanitize`); raise `EpisodeError` on a bad episode."""
    messages = [
        {"role": "assistant", "content": "", **_calls(message)}
        if message["role"] == "assistant"
        else message
        for message in check_messages(episode)
    ]
    return {**episode, "messages": messages}


def _calls(message: dict[str, Any]) -> dict[str, Any]:
    """`{"tool_calls": ...}` when `message` has tool calls, else `{}`."""
    calls = message.get("tool_calls")
    return {"tool_calls": calls} if calls else {}


def _map_strings(value: Any, edit: Callable[[str], str], keys: bool) -> Any:
    """`value` with `edit` applied to every string in it (and to dict keys when `keys`)."""
    if isinstance(value, str):
        return edit(value)
    if isinstance(value, list):
        return [_map_strings(item, edit, keys) for item in value]
    if isinstance(value, dict):
        mapped: dict[str, Any] = {}
        for key, item in value.items():
            new_key = _unique_key(edit(key), mapped) if keys else key
            mapped[new_key] = _map_strings(item, edit, keys or key == "arguments")
        return mapped
    return value


def _unique_key(key: str, taken: dict[str, Any]) -> str:
    """`key`, or `key~2`, `key~3`... when redaction made two argument keys equal."""
    candidate, n = key, 1
    while candidate in taken:
        n += 1
        candidate = f"{key}~{n}"
    return candidate


def map_message(message: dict[str, Any], edit: Callable[[str], str]) -> dict[str, Any]:
    """`message` with `edit` applied to every string in it but its role (and to the keys
    inside tool-call `arguments`)."""
    return {
        key: value if key == "role" else _map_strings(value, edit, keys=False)
        for key, value in message.items()
    }
