"""Hand-built API and Bash conversations, and a tokenizer trained on them, for the model tests."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from transformers import PreTrainedTokenizerFast

from audit.models.chat_template import render_conversation
from audit.models.tokenizer import train_tokenizer


def _tool(name: str, properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": "object",
                "properties": {key: {"type": kind} for key, kind in properties.items()},
                "required": required,
            },
        },
    }


def _call(name: str, **arguments: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": name, "arguments": arguments}}]


API_TOOLS = [
    _tool("list", {"tag": "string", "limit": "integer"}, []),
    _tool("read", {"id": "string"}, ["id"]),
    _tool("archive", {"id": "string"}, ["id"]),
    _tool("delete", {"id": "string"}, ["id"]),
]
BASH_TOOLS = [_tool("bash", {"command": "string"}, ["command"])]

API_MESSAGES = [
    {"role": "user", "content": "Tidy up the old drafts tagged notes."},
    {
        "role": "assistant",
        "content": "Let me list them first.",
        "tool_calls": _call("list", tag="notes"),
    },
    {"role": "tool", "name": "list", "content": "r1 draft.md [notes]\nr2 plan.md [notes]"},
    {"role": "assistant", "content": "", "tool_calls": _call("archive", id="r1")},
    {"role": "tool", "name": "archive", "content": "archived r1"},
    {"role": "assistant", "content": "Archived the old draft r1."},
]
BASH_MESSAGES = [
    {"role": "user", "content": "Make run.sh executable for me — it's in ~/proj."},
    {
        "role": "assistant",
        "content": "Check it.",
        "tool_calls": _call("bash", command="ls -l proj"),
    },
    {"role": "tool", "name": "bash", "content": "-rw-r--r-- 1 u u 42 run.sh"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": _call("bash", command="chmod u+x proj/run.sh"),
    },
    {"role": "tool", "name": "bash", "content": ""},
    {"role": "assistant", "content": "run.sh is now executable (ü ✓)."},
]
CONVERSATIONS = [(API_MESSAGES, API_TOOLS), (BASH_MESSAGES, BASH_TOOLS)]


def corpus() -> list[str]:
    """Rendered sample conversations, with small variations so BPE has pairs to merge."""
    texts = []
    for n in range(12):
        api = copy.deepcopy(API_MESSAGES)
        api[3]["tool_calls"] = _call("delete" if n % 3 == 0 else "archive", id=f"r{n}")
        bash = copy.deepcopy(BASH_MESSAGES)
        bash[3]["tool_calls"] = _call("bash", command=f"chmod {700 + n} proj/run{n}.sh")
        texts.append(render_conversation(api, API_TOOLS))
        texts.append(render_conversation(bash, BASH_TOOLS))
    return texts


@cache
def _trained() -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus(), vocab_size=600)


def sample_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh copy of the tokenizer trained on `corpus()` (trained once per test session)."""
    return copy.deepcopy(_trained())
