"""The embedded family's chat template: its control tokens, rendering, and the output parser.

Rendered form (no newlines between turns; the header lists one tool per line)::

    <|bos|><|tools|>list(tag?:string)
    read(id:string)<|end|><|user|>Tidy the drafts.<|end|><|assistant|>Look first.
    <|call|>{"name":"list","arguments":{"tag":"drafts"}}<|end|><|tool|>r1 draft.md<|end|>
    <|assistant|>Done.<|end|>

The assistant's text, calls and `<|end|>` are inside `{% generation %}` blocks, so
`return_assistant_tokens_mask=True` (TRL's `assistant_only_loss`) masks exactly what the model
writes. Tool-call arguments and tool parameters whose value is null are not rendered, because
`datasets` pads every row's dicts with null for the keys other rows have. Arguments given as a
JSON string are written verbatim. The parser is pure standard library so any package can use it.
"""

from __future__ import annotations

import json
from importlib import resources
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
"""Control tokens in vocabulary order: a tokenizer built by `train_tokenizer` gives them ids 0-8."""

CHAT_TEMPLATE: str = (
    resources.files(__package__).joinpath("chat_template.jinja").read_text(encoding="utf-8")
)

ToolCallMessage = dict[str, Any]
"""A tool call in chat format: `{"type": "function", "function": {"name", "arguments"}}`."""


def render_conversation(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """Render one conversation with `CHAT_TEMPLATE` exactly as the tokenizer would, without one."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages],
        tools=tools,
        chat_template=CHAT_TEMPLATE,
        add_generation_prompt=add_generation_prompt,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
    )
    return rendered[0]


def render_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The text the template writes for one tool call, from `<|call|>` to the closing brace.

    Top-level arguments whose value is None are left out, as the template does.
    """
    arguments = {key: value for key, value in arguments.items() if value is not None}
    name_json = json.dumps(name, ensure_ascii=False)
    args_json = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return f'{CALL}{{"name":{name_json},"arguments":{args_json}}}'


def parse_assistant_output(
    text: str,
) -> tuple[str, ToolCallMessage | None, str | None]:
    """Split generated assistant text into (content, tool call, error); never raises.

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
    call_text = call_text.strip()
    try:
        obj, stop = json.JSONDecoder().raw_decode(call_text)
    except json.JSONDecodeError as err:
        return content, None, f"tool call is not valid JSON ({err.msg} at char {err.pos})"
    except RecursionError:
        return content, None, "tool call JSON is nested too deeply"
    trailing = call_text[stop:].strip()
    if trailing:
        return content, None, f"text after the tool call: {_excerpt(trailing)}"
    if not isinstance(obj, dict):
        return content, None, f"tool call must be a JSON object, got {type(obj).__name__}"
    extra = sorted(set(obj) - {"name", "arguments"})
    if extra:
        return content, None, f"unexpected keys in tool call: {', '.join(extra)}"
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return content, None, "tool call has no name"
    arguments = obj.get("arguments")
    if not isinstance(arguments, dict):
        return content, None, "tool call arguments must be a JSON object"
    call = {"type": "function", "function": {"name": name, "arguments": arguments}}
    return content, call, None


def _excerpt(text: str, limit: int = 40) -> str:
    """`text` quoted on one line, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
