"""The chat family of a tokenizer: its tool-call syntax and the parser of its generated turns.

The syntax is told by what the chat template writes for a tool call (`detect_tool_call_format`).
Where transformers can parse the template's output (a native `response_template`, or the one
TRL's `add_response_schema` knows for Qwen 2.5 / 3, Llama 3.1 / 3.2, gpt-oss, ...), turns are
parsed by `tokenizer.parse_response`; the project's own parser is kept only for the embedded
family and for templates neither library knows. The library accepts some malformed calls (a
missing name, arguments that are not an object, text after a call, an unclosed block), so each
syntax keeps checks of its own on top. A parser maps the text of one turn (its end-of-turn
token included when sampled) to `(content, calls, error)` and never raises; several calls come
back only where the syntax allows parallel calls (hermes).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import add_response_schema

from trajectories.policies.tool_call_format import (
    HERMES_CLOSE,
    HERMES_OPEN,
    PROBE_MESSAGES,
    PROBE_TOOLS,
    ParsedTurn,
    ToolCallMessage,
    detect_tool_call_format,
)

ParsedCalls = tuple[str, tuple[ToolCallMessage, ...], str | None]
"""`(content, calls, error)`: calls in chat format, none when `error` is set."""

LLAMA_EOM, LLAMA_EOT = "<|eom_id|>", "<|eot_id|>"
"""Llama 3.x ends a call turn that awaits a tool result with `<|eom_id|>` or `<|eot_id|>`;
the library's Llama 3 response template accepts only `<|eot_id|>`, so the first is read as
the second."""

PARALLEL_SYNTAXES = frozenset({"hermes"})
"""Syntaxes that write several calls in one turn (gpt-oss ends a turn at its call, Llama 3
templates refuse a second call, the embedded syntax has one)."""

_HERMES_BLOCK = re.compile(re.escape(HERMES_OPEN) + r".*?" + re.escape(HERMES_CLOSE), re.S)
_HERMES_TAG = re.compile(f"{re.escape(HERMES_OPEN)}|{re.escape(HERMES_CLOSE)}")


@dataclass(frozen=True)
class ChatFamily:
    """A tokenizer's tool-call syntax, whether transformers parses it, and its turn parser."""

    syntax: str
    library: bool
    parse: Callable[[str], ParsedCalls]

    @property
    def parallel(self) -> bool:
        """Whether one turn may hold several calls."""
        return self.syntax in PARALLEL_SYNTAXES


def chat_family(tokenizer: PreTrainedTokenizerBase, stops: Iterable[str]) -> ChatFamily:
    """The family of `tokenizer`'s chat template; `stops` are the end-of-turn token texts.

    `ValueError` (one line) when the template cannot render a tool call or writes it in an
    unknown syntax.
    """
    probe = _render(tokenizer, PROBE_MESSAGES, add_generation_prompt=False)
    prompt = _render(tokenizer, PROBE_MESSAGES[:1], add_generation_prompt=True)
    found = detect_tool_call_format(probe)
    stops = tuple(stop for stop in stops if stop)
    template = None if found.name == "embedded" else response_template(tokenizer)
    if template is None:
        return ChatFamily(found.name, False, _own_parser(found.parse, stops))
    parse = _library_parser(tokenizer, template, prompt, found.name, stops)
    return ChatFamily(found.name, True, parse)


def response_template(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any] | None:
    """The tokenizer's own `response_template`, else the one TRL sets for its chat template
    (on a copy: `tokenizer` is left as it is), else None."""
    native = getattr(tokenizer, "response_template", None)
    if native is not None:
        return native
    try:
        return add_response_schema(copy.copy(tokenizer)).response_template
    except ValueError:
        return None


def _own_parser(
    parse: Callable[[str], ParsedTurn], stops: tuple[str, ...]
) -> Callable[[str], ParsedCalls]:
    """A one-call parser of `tool_call_format` as a family parser (end-of-turn token cut)."""

    def parse_turn(text: str) -> ParsedCalls:
        content, call, error = parse(_cut_stop(text, stops) if isinstance(text, str) else text)
        return content, () if call is None else (call,), error

    return parse_turn


def _library_parser(
    tokenizer: PreTrainedTokenizerBase,
    template: dict[str, Any],
    prompt: str,
    syntax: str,
    stops: tuple[str, ...],
) -> Callable[[str], ParsedCalls]:
    """`tokenizer.parse_response` with `template`, errors caught, and the syntax's own checks."""
    check = _SYNTAX_CHECKS[syntax]

    def parse_turn(text: str) -> ParsedCalls:
        if not isinstance(text, str):
            return "", (), f"expected text, got {type(text).__name__}"
        if syntax == "llama3" and text.endswith(LLAMA_EOM):
            text = text.removesuffix(LLAMA_EOM) + LLAMA_EOT
        body = _cut_stop(text, stops)
        try:
            parsed = tokenizer.parse_response(text, schema=template, prefix=prompt)
        except Exception as err:  # noqa: BLE001 - the parser raises many kinds on garbage
            return body.strip(), (), f"tool call does not parse: {_first_line(err)}"
        if not isinstance(parsed, dict):
            return body.strip(), (), "the response parser returned no message"
        content = _cut_stop(str(parsed.get("content") or ""), stops).strip()
        thought = str(parsed.get("thinking") or parsed.get("reasoning_content") or "").strip()
        raw = parsed.get("tool_calls") or []
        problem = check(body, raw, content or thought)
        if problem is not None:
            return content, (), problem
        calls = []
        for entry in raw:
            call, problem = _checked_call(entry)
            if problem is not None:
                return content, (), problem
            calls.append(call)
        if len(calls) > 1 and syntax not in PARALLEL_SYNTAXES:
            return content, (), "more than one tool call in one turn"
        return (content or thought) if calls else content, tuple(calls), None

    return parse_turn


def _check_hermes(body: str, calls: list[Any], content: str) -> str | None:
    """Blocks open and close in turn, and nothing but blanks between or after them."""
    tags = _HERMES_TAG.findall(body)
    for index, tag in enumerate(tags):
        expected = HERMES_OPEN if index % 2 == 0 else HERMES_CLOSE
        if tag != expected and expected == HERMES_OPEN:
            return f"{HERMES_CLOSE} without {HERMES_OPEN}"
        if tag != expected:
            return f"{HERMES_OPEN} is not closed by {HERMES_CLOSE}"
    if len(tags) % 2:
        return f"{HERMES_OPEN} is not closed by {HERMES_CLOSE}"
    between = _HERMES_BLOCK.split(body)[1:]
    stray = next((part.strip() for part in between if part.strip()), None)
    if stray:
        return f"text after the tool call: {_excerpt(stray)}"
    return None


def _check_llama3(body: str, calls: list[Any], content: str) -> str | None:
    """A turn that opens a JSON object must be a `{"name", "parameters"}` call."""
    if not calls and content.lstrip().startswith(("{", "<|python_tag|>")):
        return 'tool call must be {"name": ..., "parameters": {...}}'
    return None


def _check_harmony(body: str, calls: list[Any], content: str) -> str | None:
    """A `to=functions.` recipient must give a call; text must sit in a channel."""
    if not calls and "to=functions." in body:
        return "harmony tool call does not parse"
    if not calls and not content and body.strip():
        return f"text outside the harmony channels: {_excerpt(body.strip())}"
    return None


_SYNTAX_CHECKS: dict[str, Callable[[str, list[Any], str], str | None]] = {
    "hermes": _check_hermes,
    "llama3": _check_llama3,
    "harmony": _check_harmony,
}


def _checked_call(entry: Any) -> tuple[ToolCallMessage | None, str | None]:
    """`entry` as `{"type": "function", "function": {"name", "arguments"}}`, or why it is not."""
    function = entry.get("function") if isinstance(entry, dict) else None
    if not isinstance(function, dict):
        return None, "tool call must be a JSON object"
    extra = sorted(set(function) - {"name", "arguments"})
    if extra:
        return None, f"unexpected keys in tool call: {', '.join(map(str, extra))}"
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, "tool call has no name"
    arguments = function.get("arguments", {})
    if not isinstance(arguments, dict):
        return None, "tool call arguments must be a JSON object"
    return {"type": "function", "function": {"name": name, "arguments": arguments}}, None


def _render(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], add_generation_prompt: bool
) -> str:
    """`messages` with the probe tools as the chat template writes them; `ValueError` if not."""
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=PROBE_TOOLS, add_generation_prompt=add_generation_prompt, tokenize=False
        )
    except (TemplateError, TypeError, ValueError, KeyError) as err:
        raise ValueError(f"chat template cannot render a tool call: {_first_line(err)}") from None
    if not isinstance(text, str):
        raise ValueError("chat template did not render to text")
    return text


def _cut_stop(text: str, stops: tuple[str, ...]) -> str:
    """`text` without one trailing end-of-turn token."""
    for stop in stops:
        if text.endswith(stop):
            return text[: -len(stop)]
    return text


def _excerpt(text: str, limit: int = 40) -> str:
    """`text` quoted on one line, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
