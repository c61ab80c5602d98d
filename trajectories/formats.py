"""The trajectory file formats the project reads, detected per file, as episodes.

- `episode`: the project's own JSONL (trajectories.episode), one episode-like object a line.
- `openai`: OpenAI fine-tuning JSONL, `{"messages": [...], "tools": [...]}`, assistant
  `tool_calls[].function.arguments` a JSON string, tool messages linked by `tool_call_id`.
- `sharegpt`: ShareGPT rows as LLaMA-Factory writes them, `{"conversations": [{"from", "value"}],
  "tools": "<JSON string>"}`, a `function_call` value the JSON string `{"name", "arguments"}`
  (or a list of them) and an `observation` the result of the calls before it, in order.
- `inspect`: an Inspect eval log (`.eval` or `.json`; trajectories.inspect_log).

A JSONL file's format is the one of its first non-empty line: a `conversations` row is ShareGPT;
a `messages` row is OpenAI when a tool call's arguments are a string or a message has a
`tool_call_id`, else an episode. Every line must then be of that format; any other line is an
`InputError` naming the file, the line and the format expected (the first line's).

OpenAI and ShareGPT rows become episodes as follows: system messages are dropped (episodes have
none), assistant text is its content (text parts joined), a tool message is named by the call
it answers, `tools` are the row's schemas in chat format. The environment is the one whose tools
the row offers (or, without `tools`, calls): `bash` alone is the Bash env, a subset of the API
env's tools the API env. The other fields are filled as teacher data to distil from: suite
"safe", split "train", seed 0, policy the format's name, each tool call an action with no
decision, outcome not successful (unknown).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envs import env_of_tools
from envs.api.tools import TOOL_NAMES as API_TOOLS
from envs.bash.env import TOOL_NAME as BASH_TOOL
from trajectories.episode import Episode
from trajectories.jsonl import InputError, read_jsonl


class Format(StrEnum):
    EPISODE = "episode"
    OPENAI = "openai"
    SHAREGPT = "sharegpt"
    INSPECT = "inspect"


LABELS = {
    Format.EPISODE: "episode",
    Format.OPENAI: "OpenAI fine-tuning",
    Format.SHAREGPT: "ShareGPT (LLaMA-Factory)",
    Format.INSPECT: "Inspect log",
}


class TextPart(BaseModel):
    """One text part of an OpenAI message's content list."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class OpenAIFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: str


class OpenAIToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: Literal["function"] = "function"
    function: OpenAIFunction


class OpenAIMessage(BaseModel):
    """One message of an OpenAI fine-tuning row (`weight` is accepted and ignored)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[OpenAIToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    weight: Literal[0, 1] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class OpenAIRow(BaseModel):
    """One line of OpenAI fine-tuning JSONL."""

    model_config = ConfigDict(extra="forbid")

    messages: list[OpenAIMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    parallel_tool_calls: bool | None = None


class ShareGPTTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: Literal["human", "gpt", "function_call", "observation", "system"] = Field(alias="from")
    value: str


class ShareGPTRow(BaseModel):
    """One line of ShareGPT JSONL as LLaMA-Factory writes it; `tools` is a JSON string."""

    model_config = ConfigDict(extra="forbid")

    conversations: list[ShareGPTTurn] = Field(min_length=1)
    tools: str = ""
    system: str = ""


class RowError(ValueError):
    """A row of a known format that cannot become an episode; the message is the reason."""


def is_openai(row: dict[str, Any]) -> bool:
    """Whether a `messages` row carries OpenAI's marks: string arguments or `tool_call_id`."""
    messages = row.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        if "tool_call_id" in message:
            return True
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                return True
    return False


def row_format(row: dict[str, Any]) -> Format:
    """The format one JSONL row looks like (see the module docstring)."""
    if "conversations" in row:
        return Format.SHAREGPT
    return Format.OPENAI if is_openai(row) else Format.EPISODE


def detect(path: str | Path) -> Format:
    """The format of a file: an Inspect log, else that of its first non-empty JSONL line."""
    from trajectories.inspect_log import looks_like_inspect_log

    if looks_like_inspect_log(path):
        return Format.INSPECT
    for _, row in read_jsonl(path):
        return row_format(row)
    return Format.EPISODE


def _arguments(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise RowError("tool call arguments are not a JSON object")
    return value


def _episode(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], fmt: Format, where: str
) -> dict[str, Any]:
    """The episode JSON of a converted conversation (see the module docstring)."""
    if not messages:
        raise RowError("no messages but system ones")
    calls = [c["function"] for m in messages for c in m.get("tool_calls", [])]
    functions = [t.get("function") for t in tools]
    names = {f.get("name") for f in functions if isinstance(f, dict)} or {c["name"] for c in calls}
    env = env_of_tools(names)
    if env is None:
        raise RowError(
            f"tools {sorted(map(str, names))} fit no env: bash has one tool {BASH_TOOL!r}, "
            f"api has {', '.join(API_TOOLS)}"
        )
    steps = sum(m["role"] == "assistant" for m in messages)
    last = messages[-1]
    episode = {
        "id": where,
        "env": env,
        "task_id": where,
        "suite": "safe",
        "split": "train",
        "policy": fmt.value,
        "seed": 0,
        "messages": messages,
        "tools": tools,
        "actions": [{"tool": c["name"], "arguments": c["arguments"]} for c in calls],
        "outcome": {"success": False},
        "metadata": {
            "steps": steps,
            "max_steps": steps,
            "stop_reason": "max_steps" if last.get("tool_calls") else "final_answer",
        },
    }
    try:
        return Episode.model_validate(episode).to_json_dict()
    except ValidationError as err:
        raise RowError(first_error(err)) from None


def from_openai(row: OpenAIRow, where: str) -> dict[str, Any]:
    """The episode of an OpenAI fine-tuning row."""
    messages: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in row.messages:
        if message.role in ("system", "developer"):
            continue
        entry: dict[str, Any] = {"role": message.role, "content": message.text()}
        if message.role == "assistant" and message.tool_calls:
            entry["tool_calls"] = []
            for call in message.tool_calls:
                names[call.id] = call.function.name
                function = {
                    "name": call.function.name,
                    "arguments": _arguments(call.function.arguments),
                }
                entry["tool_calls"].append({"type": "function", "function": function})
        if message.role == "tool":
            if message.tool_call_id not in names:
                raise RowError(f"tool message answers no earlier call ({message.tool_call_id!r})")
            entry["name"] = names[message.tool_call_id]
        messages.append(entry)
    return _episode(messages, row.tools, Format.OPENAI, where)


def _sharegpt_tools(text: str) -> list[dict[str, Any]]:
    tools = json.loads(text) if text.strip() else []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise RowError("tools is not a JSON list of objects")
    return [
        t if t.get("type") == "function" else {"type": "function", "function": t} for t in tools
    ]


def from_sharegpt(row: ShareGPTRow, where: str) -> dict[str, Any]:
    """The episode of a ShareGPT row."""
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    for turn in row.conversations:
        if turn.speaker == "human":
            messages.append({"role": "user", "content": turn.value})
        elif turn.speaker == "gpt":
            messages.append({"role": "assistant", "content": turn.value})
        elif turn.speaker == "function_call":
            value = json.loads(turn.value)
            calls = value if isinstance(value, list) else [value]
            if not calls or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls
            ):
                raise RowError('function_call is not {"name": ..., "arguments": ...}')
            functions = [
                {"name": c["name"], "arguments": _arguments(c.get("arguments", {}))} for c in calls
            ]
            pending += [f["name"] for f in functions]
            tool_calls = [{"type": "function", "function": f} for f in functions]
            messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
        elif turn.speaker == "observation":
            if not pending:
                raise RowError("observation without a function_call before it")
            messages.append({"role": "tool", "name": pending.pop(0), "content": turn.value})
    return _episode(messages, _sharegpt_tools(row.tools), Format.SHAREGPT, where)


def first_error(err: ValidationError) -> str:
    """The first error of a pydantic validation as `field.path: message`."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "row"
    return f"{where}: {first['msg']}"


def _convert(fmt: Format, row: dict[str, Any], where: str) -> dict[str, Any]:
    if fmt is Format.OPENAI:
        return from_openai(OpenAIRow.model_validate(row), where)
    return from_sharegpt(ShareGPTRow.model_validate(row), where)


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for every row of a file of any format: episode rows as they are, the others
    converted to episode JSON (an Inspect log's samples numbered from 1); `InputError` naming
    the file, the line and the format expected for a row of another format or a bad row."""
    fmt = detect(path)
    if fmt is Format.INSPECT:
        from trajectories.inspect_log import read_inspect_log

        for index, episode in enumerate(read_inspect_log(path), start=1):
            yield index, episode.to_json_dict()
        return
    label = LABELS[fmt]
    for lineno, row in read_jsonl(path):
        found = row_format(row)
        if (found is Format.SHAREGPT) != (fmt is Format.SHAREGPT) or (
            fmt is Format.EPISODE and found is not Format.EPISODE
        ):
            raise InputError(f"{path}:{lineno}: {LABELS[found]} format; expected {label} format")
        yield lineno, row if fmt is Format.EPISODE else _converted(fmt, row, path, lineno)


def _converted(fmt: Format, row: dict[str, Any], path: str | Path, lineno: int) -> dict[str, Any]:
    """The episode JSON of line `lineno` of `path`, a row of `fmt`; `InputError` otherwise."""
    label = LABELS[fmt]
    try:
        return _convert(fmt, row, f"{Path(path).stem}:{lineno}")
    except ValidationError as err:
        raise InputError(f"{path}:{lineno}: expected {label} format ({first_error(err)})") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}:{lineno}: expected {label} format (bad JSON string: {err.msg})"
        ) from None
    except RowError as err:
        raise InputError(f"{path}:{lineno}: expected {label} format ({err})") from None


def read_episodes(path: str | Path) -> list[Episode]:
    """Every episode of a file of any format; `InputError` naming file and line otherwise."""
    episodes = []
    for lineno, row in read_rows(path):
        try:
            episodes.append(Episode.model_validate(row))
        except ValidationError as err:
            raise InputError(f"{path}:{lineno}: not an episode ({first_error(err)})") from None
    return episodes
