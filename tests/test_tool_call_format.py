"""Tool-call syntaxes: the hermes parser and detection of a template's syntax."""

from __future__ import annotations

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from audit.models.chat_template import render_conversation
from trajectories.policies.tool_call_format import (
    PROBE_MESSAGES,
    PROBE_TOOLS,
    detect_tool_call_format,
    parse_hermes_output,
)

READ = {"type": "function", "function": {"name": "read", "arguments": {"id": "r1"}}}
GOOD = '<tool_call>\n{"name": "read", "arguments": {"id": "r1"}}\n</tool_call>'

# The tool-call part of the Qwen 2.5 template, enough to show its syntax.
HERMES_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
    "{% for c in m.tool_calls or [] %}\n<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}'
    "\n</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
)


@pytest.mark.parametrize(
    ("text", "content", "call", "error"),
    [
        ("Reading.\n" + GOOD, "Reading.", READ, None),
        (GOOD + "\n", "", READ, None),
        ("All done.", "All done.", None, None),
        ("x\n<tool_call>\n{bad}\n</tool_call>", "x", None, "not valid JSON"),
        ("<tool_call>\n" + '{"name": "read", "arguments": {}}', "", None, "is not closed"),
        (GOOD + GOOD, "", None, "more than one tool call"),
        (GOOD + " and more", "", None, "text after the tool call: 'and more'"),
        ('<tool_call>{"name": "read", "arguments": []}</tool_call>', "", None, "JSON object"),
        ("stray </tool_call>", "stray </tool_call>", None, "without <tool_call>"),
    ],
)
def test_parse_hermes_output_table(text, content, call, error):
    got_content, got_call, got_error = parse_hermes_output(text)
    assert (got_content, got_call) == (content, call)
    if error is None:
        assert got_error is None
    else:
        assert got_error is not None and error in got_error and "\n" not in got_error


def test_detects_the_embedded_and_the_hermes_syntax():
    embedded = render_conversation(PROBE_MESSAGES, PROBE_TOOLS)
    assert detect_tool_call_format(embedded).name == "embedded"
    (hermes,), _ = render_jinja_template(
        conversations=[PROBE_MESSAGES], tools=PROBE_TOOLS, chat_template=HERMES_TEMPLATE
    )
    found = detect_tool_call_format(hermes)
    assert found.name == "hermes"
    assert found.parse(hermes.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0])[1] == {
        "type": "function",
        "function": {"name": "probe_lookup", "arguments": {"key": "k"}},
    }
    with pytest.raises(ValueError, match="unknown syntax; known: embedded"):
        detect_tool_call_format("[TOOL_CALLS] probe_lookup")
