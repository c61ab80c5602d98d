"""Render-then-parse round trips of TRL's shipped templates through the family parsers."""

import pytest
from transformers.utils.chat_template_utils import render_jinja_template
from trl import chat_template_utils as templates

from trajectories.policies.tool_call_format import (
    PROBE_MESSAGES,
    PROBE_TOOLS,
    detect_tool_call_format,
)


@pytest.mark.parametrize(
    ("template", "family", "call_text"),
    [
        (
            "qwen2_5_chat_template",
            "hermes",
            '<tool_call>\n{"name": "probe_lookup", "arguments": {"key": "k"}}\n</tool_call>',
        ),
        (
            "llama3_2_chat_template",
            "llama3",
            '{"name": "probe_lookup", "parameters": {"key": "k"}}<|eot_id|>',
        ),
        (
            "gptoss_chat_template",
            "harmony",
            ' to=functions.probe_lookup<|channel|>commentary json<|message|>{"key": "k"}<|call|>',
        ),
    ],
)
def test_family_detected_and_call_parsed(template, family, call_text):
    rendered, _ = render_jinja_template(
        conversations=[PROBE_MESSAGES],
        tools=PROBE_TOOLS,
        chat_template=getattr(templates, template),
    )
    found = detect_tool_call_format(rendered[0])
    assert found.name == family
    _, call, error = found.parse(call_text)
    assert error is None
    assert call["function"] == {"name": "probe_lookup", "arguments": {"key": "k"}}
    assert found.parse(call_text.replace('"k"}', '"k"'))[2] is not None
