"""The embedded chat template and its rendering; re-exports the control tokens and parser.

Rendered form (no newlines between turns; the header lists one tool per line)::

    <|bos|><|tools|>list(tag?:string)
    read(id:string)<|end|><|user|>Tidy the drafts.<|end|><|assistant|>Look first.
    <|call|>{"name":"list","arguments":{"tag":"drafts"}}<|end|><|tool|>r1 draft.md<|end|>
    <|assistant|>Done.<|end|>

The assistant's text, calls and `<|end|>` are inside `{% generation %}` blocks, so
`return_assistant_tokens_mask=True` (TRL's `assistant_only_loss`) masks exactly what the model
writes. Tool-call arguments and tool parameters whose value is null are not rendered, because
`datasets` pads every row's dicts with null for the keys other rows have. Arguments given as a
JSON string are written verbatim. The control tokens and `parse_assistant_output` live in
`trajectories.policies.tool_call_format` (standard library only), so the model policy can parse
without importing `audit`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from trajectories.policies.tool_call_format import (
    ASSISTANT,
    BOS,
    CALL,
    END,
    PAD,
    SPECIAL_TOKENS,
    SYSTEM,
    TOOL,
    TOOLS,
    USER,
    parse_assistant_output,
)

__all__ = [
    "ASSISTANT",
    "BOS",
    "CALL",
    "CHAT_TEMPLATE",
    "END",
    "PAD",
    "SPECIAL_TOKENS",
    "SYSTEM",
    "TOOL",
    "TOOLS",
    "USER",
    "parse_assistant_output",
    "render_conversation",
    "render_tool_call",
]

CHAT_TEMPLATE: str = (
    resources.files(__package__).joinpath("chat_template.jinja").read_text(encoding="utf-8")
)


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
