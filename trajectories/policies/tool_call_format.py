"""Tool-call syntaxes of chat templates, and parsers from generated assistant text to chat format.

Standard library only, so that both `trajectories` (the model policy) and `audit` (the embedded
chat template) use the same parser. The model policy picks its parser with
`trajectories.policies.chat_family`: transformers' response parser where TRL knows the template,
these parsers for the embedded syntax and for templates it does not know. Syntaxes are told apart
by what a template writes for a tool call:

- `embedded` (the project's tiny Llama family): `thought<|call|>{"name":...,"arguments":{...}}`,
  the turn closed by `<|end|>`;
- `hermes` (Qwen 2.5 / 3, Hermes): `thought\\n<tool_call>\\n{"name":..., "arguments":...}\\n
  </tool_call>`;
- `llama3` (Llama 3.1 / 3.2): a bare `{"name":..., "parameters":{...}}`;
- `harmony` (gpt-oss): `to=functions.NAME<|channel|>commentary json<|message|>{...}<|call|>`.

A parser maps text to `(content, call, error)` and never raises: `call` is a chat-format tool call
`{"type": "function", "function": {"name", "arguments"}}` or None, `error` a one-line reason the
text is not a well-formed turn (then `call` is None).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PAD = "<|pad|>"
BOS = "<|bos|>"
END = "<|end|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
TOOL = "<|tool|>"
TOOLS = "<|tools|>"
CALL = "<|call|>"
SYSTEM = "<|system|>"

SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, END, USER, ASSISTANT, TOOL, TOOLS, CALL, SYSTEM)
"""The embedded family's control tokens, in vocabulary order (ids 0-8)."""

HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"

ToolCallMessage = dict[str, Any]
"""A tool call in chat format: `{"type": "function", "function": {"name", "arguments"}}`."""

ParsedTurn = tuple[str, ToolCallMessage | None, str | None]
"""`(content, call, error)` as every parser returns it."""


def parse_assistant_output(text: str) -> ParsedTurn:
    """Split generated text in the embedded syntax into (content, tool call, error); never raises.

    Text after the first `<|end|>` is ignored (padding, or nothing when generation stopped there).
    No `<|call|>`: a final answer, `(content, None, None)`. One well-formed call:
    `(content, call, None)`. Anything else (bad JSON, missing or non-string name, arguments not an
    object, extra keys, a second call, text after the call, a stray control token) gives
    `(content, None, error)` with a one-line error.
    """
    if not isinstance(text, str):
        return "", None, f"expected text, got {type(text).__name__}"
    turn = text.split(END, 1)[0]
    content, sep, call_text = turn.partition(CALL)
    stray = [token for token in SPECIAL_TOKENS if token not in (END, CALL) and token in turn]
    if stray:
        return content, None, f"stray control token {stray[0]} in assistant output"
    if not sep:
        return content, None, None
    if CALL in call_text:
        return content, None, "more than one tool call in one turn"
    call, error = _call_from_json(call_text)
    return content, call, error


def parse_hermes_output(text: str) -> ParsedTurn:
    """Split generated text in the hermes syntax into (content, tool call, error); never raises.

    Content is the text before `<tool_call>`, stripped. No `<tool_call>`: a final answer. One
    `<tool_call>JSON</tool_call>` block at the end: a call. Anything else (bad JSON, a second
    call, a missing `</tool_call>`, text after it) is an error.
    """
    if not isinstance(text, str):
        return "", None, f"expected text, got {type(text).__name__}"
    before, sep, rest = text.partition(HERMES_OPEN)
    content = before.strip()
    if not sep:
        if HERMES_CLOSE in before:
            return content, None, f"{HERMES_CLOSE} without {HERMES_OPEN}"
        return content, None, None
    body, closed, after = rest.partition(HERMES_CLOSE)
    if not closed:
        return content, None, f"{HERMES_OPEN} is not closed by {HERMES_CLOSE}"
    if HERMES_OPEN in body or HERMES_OPEN in after:
        return content, None, "more than one tool call in one turn"
    if after.strip():
        return content, None, f"text after the tool call: {_excerpt(after.strip())}"
    call, error = _call_from_json(body)
    return content, call, error


def parse_llama3_output(text: str) -> ParsedTurn:
    """Llama 3.x: a bare `{"name":..., "parameters":{...}}` (optionally after `<|python_tag|>`)."""
    if not isinstance(text, str):
        return "", None, f"expected text, got {type(text).__name__}"
    turn = text.split("<|eot_id|>", 1)[0].split("<|eom_id|>", 1)[0]
    body = turn.split("<|python_tag|>", 1)[-1].strip()
    if not body.startswith("{"):
        return turn.strip(), None, None
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as err:
        return "", None, f"tool call is not valid JSON ({err.msg} at char {err.pos})"
    if not isinstance(obj, dict) or "parameters" not in obj:
        return "", None, "tool call must be an object with name and parameters"
    call, error = _call_from_json(
        json.dumps({"name": obj.get("name"), "arguments": obj["parameters"]})
    )
    return "", call, error


def parse_harmony_output(text: str) -> ParsedTurn:
    """gpt-oss harmony: `to=functions.NAME<|channel|>commentary json<|message|>{...}<|call|>`."""
    if not isinstance(text, str):
        return "", None, f"expected text, got {type(text).__name__}"
    head, sep, rest = text.partition("to=functions.")
    if not sep:
        final = text.split("<|message|>")[-1]
        return final.split("<|return|>", 1)[0].split("<|end|>", 1)[0].strip(), None, None
    name, msg, args = rest.partition("<|message|>")
    name = name.split("<|channel|>", 1)[0].strip()
    if not msg:
        return "", None, "harmony tool call has no <|message|>"
    body = args.split("<|call|>", 1)[0]
    try:
        arguments = json.loads(body)
    except json.JSONDecodeError as err:
        return "", None, f"tool call is not valid JSON ({err.msg} at char {err.pos})"
    call, error = _call_from_json(json.dumps({"name": name, "arguments": arguments}))
    return "", call, error


def _call_from_json(text: str) -> tuple[ToolCallMessage | None, str | None]:
    """A chat-format call from `{"name": ..., "arguments": {...}}` and nothing after it."""
    text = text.strip()
    try:
        obj, stop = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as err:
        return None, f"tool call is not valid JSON ({err.msg} at char {err.pos})"
    except RecursionError:
        return None, "tool call JSON is nested too deeply"
    trailing = text[stop:].strip()
    if trailing:
        return None, f"text after the tool call: {_excerpt(trailing)}"
    if not isinstance(obj, dict):
        return None, f"tool call must be a JSON object, got {type(obj).__name__}"
    extra = sorted(set(obj) - {"name", "arguments"})
    if extra:
        return None, f"unexpected keys in tool call: {', '.join(extra)}"
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, "tool call has no name"
    arguments = obj.get("arguments")
    if not isinstance(arguments, dict):
        return None, "tool call arguments must be a JSON object"
    return {"type": "function", "function": {"name": name, "arguments": arguments}}, None


def _excerpt(text: str, limit: int = 40) -> str:
    """`text` quoted on one line, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class ToolCallFormat:
    """A tool-call syntax: its name, the text that shows it in a rendered call, and its parser."""

    name: str
    marker: str
    parse: Callable[[str], ParsedTurn]


TOOL_CALL_FORMATS: tuple[ToolCallFormat, ...] = (
    ToolCallFormat("embedded", CALL + '{"name":', parse_assistant_output),
    ToolCallFormat("hermes", HERMES_OPEN, parse_hermes_output),
    ToolCallFormat("harmony", " to=functions.", parse_harmony_output),
    ToolCallFormat("llama3", '<|end_header_id|>\n\n{"name": ', parse_llama3_output),
)

PROBE_TOOL = "probe_lookup"
PROBE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": PROBE_TOOL,
            "description": "Look up a key.",
            "parameters": {
                "type": "object",
                "properties": {"key": {"type": "string"}},
                "required": ["key"],
            },
        },
    }
]
PROBE_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "Look up k."},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"type": "function", "function": {"name": PROBE_TOOL, "arguments": {"key": "k"}}}
        ],
    },
    {"role": "tool", "name": PROBE_TOOL, "content": "v"},
    {"role": "assistant", "content": "It is v."},
]
"""A conversation with one tool call: render it with a chat template and pass it to
`detect_tool_call_format`."""


def detect_tool_call_format(rendered_probe: str) -> ToolCallFormat:
    """The format whose marker the rendered `PROBE_MESSAGES` show; `ValueError` if none does."""
    for candidate in TOOL_CALL_FORMATS:
        if candidate.marker in rendered_probe:
            return candidate
    known = ", ".join(f"{f.name} ({f.marker!r})" for f in TOOL_CALL_FORMATS)
    raise ValueError(f"chat template writes tool calls in an unknown syntax; known: {known}")
