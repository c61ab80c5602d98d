"""The embedded chat template's rendering and the assistant output parser."""

from __future__ import annotations

import pytest
from datasets import Dataset
from jinja2 import TemplateError

from audit.models.chat_template import (
    END,
    PAD,
    parse_assistant_output,
    render_conversation,
    render_tool_call,
)
from tests.models_sample import API_MESSAGES, API_TOOLS, BASH_MESSAGES, BASH_TOOLS, CONVERSATIONS


def test_render_api_conversation_exactly():
    expected = (
        "<|bos|><|tools|>list(tag?:string,limit?:integer)\nread(id:string)\narchive(id:string)\n"
        "delete(id:string)<|end|>"
        "<|user|>Tidy up the old drafts tagged notes.<|end|>"
        '<|assistant|>Let me list them first.<|call|>{"name":"list","arguments":{"tag":"notes"}}'
        "<|end|>"
        "<|tool|>r1 draft.md [notes]\nr2 plan.md [notes]<|end|>"
        '<|assistant|><|call|>{"name":"archive","arguments":{"id":"r1"}}<|end|>'
        "<|tool|>archived r1<|end|>"
        "<|assistant|>Archived the old draft r1.<|end|>"
    )
    assert render_conversation(API_MESSAGES, API_TOOLS) == expected


def test_render_tools_header_types_and_no_descriptions():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "find",
                "description": "A long description that must not be rendered.",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "n": {"type": ["integer", "null"]}},
                    "required": ["q"],
                },
            },
        },
        {"type": "function", "function": {"name": "ping", "description": "No parameters."}},
        {"type": "function", "function": {"name": "any", "parameters": {"properties": {"x": {}}}}},
    ]
    rendered = render_conversation([{"role": "user", "content": "hi"}], tools)
    assert rendered == (
        "<|bos|><|tools|>find(q:string,n?:integer|null)\nping()\nany(x?:any)<|end|><|user|>hi<|end|>"
    )


def test_render_without_tools_has_no_header_and_system_turn():
    messages = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "hi"}]
    assert render_conversation(messages) == "<|bos|><|system|>Be careful.<|end|><|user|>hi<|end|>"


def test_tool_call_arguments_sorted_compact_and_string_arguments_verbatim():
    call = {"type": "function", "function": {"name": "list", "arguments": {"z": 1, "a": [1, "é"]}}}
    text_call = {"type": "function", "function": {"name": "read", "arguments": '{"id": "r1"}'}}
    messages = [
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "name": "list", "content": "t"},
        {"role": "assistant", "content": "", "tool_calls": [text_call]},
    ]
    rendered = render_conversation(messages)
    assert '<|assistant|><|call|>{"name":"list","arguments":{"a":[1,"é"],"z":1}}<|end|>' in rendered
    assert '<|call|>{"name":"read","arguments":{"id": "r1"}}<|end|>' in rendered
    assert render_tool_call("list", {"z": 1, "a": [1, "é"]}) in rendered


def test_rendering_ignores_the_nulls_datasets_adds():
    rows = [{"messages": m, "tools": t} for m, t in CONVERSATIONS]
    stored = Dataset.from_list(rows)
    assert stored[0]["messages"][1]["tool_calls"][0]["function"]["arguments"]["command"] is None
    assert stored[1]["tools"][0]["function"]["parameters"]["properties"]["tag"] is None
    for row, stored_row in zip(rows, stored, strict=True):
        assert render_conversation(stored_row["messages"], stored_row["tools"]) == (
            render_conversation(row["messages"], row["tools"])
        )
    with_null = render_tool_call("read", {"id": "r1", "tag": None})
    assert with_null == render_tool_call("read", {"id": "r1"})


def test_generation_prompt_opens_an_assistant_turn():
    messages = BASH_MESSAGES[:3]
    plain = render_conversation(messages, BASH_TOOLS)
    prompted = render_conversation(messages, BASH_TOOLS, add_generation_prompt=True)
    assert plain.endswith("<|tool|>-rw-r--r-- 1 u u 42 run.sh<|end|>")
    assert prompted == plain + "<|assistant|>"


def test_unknown_role_is_a_template_error():
    with pytest.raises(TemplateError, match="unsupported role: narrator"):
        render_conversation([{"role": "narrator", "content": "x"}])


def test_rendered_assistant_turns_parse_back_to_the_messages():
    for messages, tools in ((API_MESSAGES, API_TOOLS), (BASH_MESSAGES, BASH_TOOLS)):
        rendered = render_conversation(messages, tools)
        turns = [t.split(END)[0] for t in rendered.split("<|assistant|>")[1:]]
        assistants = [m for m in messages if m["role"] == "assistant"]
        assert len(turns) == len(assistants)
        for turn, message in zip(turns, assistants, strict=True):
            content, call, error = parse_assistant_output(turn + END)
            assert error is None
            assert content == (message["content"] or "")
            assert call == (message["tool_calls"][0] if "tool_calls" in message else None)


GOOD = '{"name":"archive","arguments":{"id":"r1"}}'
ARCHIVE = {"type": "function", "function": {"name": "archive", "arguments": {"id": "r1"}}}
LIST = {"type": "function", "function": {"name": "list", "arguments": {}}}


@pytest.mark.parametrize(
    ("text", "content", "call", "error"),
    [
        ("Archive it.<|call|>" + GOOD + "<|end|>", "Archive it.", ARCHIVE, None),
        ("<|call|>" + GOOD, "", ARCHIVE, None),
        ("<|call|> " + GOOD + "\n<|end|><|pad|><|pad|>", "", ARCHIVE, None),
        ("<|call|>" + GOOD + "<|end|>garbage after the turn", "", ARCHIVE, None),
        ('<|call|>{"name":"list","arguments":{}}', "", LIST, None),
        ("All done.<|end|>", "All done.", None, None),
        ("All done.", "All done.", None, None),
        ("", "", None, None),
        ("x<|call|>{name: archive}<|end|>", "x", None, "not valid JSON"),
        ('<|call|>{"name":"archive","arguments":{"id":"r1"}', "", None, "not valid JSON"),
        ("<|call|>", "", None, "not valid JSON"),
        ("<|call|>" + GOOD + " and more", "", None, "text after the tool call: 'and more'"),
        ("<|call|>" + GOOD + "<|call|>" + GOOD, "", None, "more than one tool call"),
        ('<|call|>{"arguments":{"id":"r1"}}', "", None, "no name"),
        ('<|call|>{"name":"","arguments":{}}', "", None, "no name"),
        ('<|call|>{"name":7,"arguments":{}}', "", None, "no name"),
        ('<|call|>{"name":"read"}', "", None, "arguments must be a JSON object"),
        ('<|call|>{"name":"read","arguments":"r1"}', "", None, "arguments must be a JSON object"),
        (
            '<|call|>{"name":"read","arguments":{},"id":1}',
            "",
            None,
            "unexpected keys in tool call: id",
        ),
        ('<|call|>["read"]', "", None, "must be a JSON object, got list"),
        (
            "}{ ]] \x00 zz<|tool|>r1",
            "}{ ]] \x00 zz<|tool|>r1",
            None,
            "stray control token <|tool|>",
        ),
        ("hi <|user|> there", "hi <|user|> there", None, "stray control token <|user|>"),
        ("<|call|>" + "[" * 100_000, "", None, "nested too deeply"),
    ],
)
def test_parse_assistant_output_table(text, content, call, error):
    got_content, got_call, got_error = parse_assistant_output(text)
    assert got_content == content
    assert got_call == call
    if error is None:
        assert got_error is None
    else:
        assert got_error is not None and error in got_error
        assert "\n" not in got_error


def test_parse_never_raises_on_non_text():
    assert parse_assistant_output(None) == ("", None, "expected text, got NoneType")


def test_parse_padding_only_after_end_is_not_content():
    content, call, error = parse_assistant_output("ok" + END + PAD * 3)
    assert (content, call, error) == ("ok", None, None)
