"""What the dataset audit's classifier sees of an episode: its assistant turns, as features.

Only assistant messages are read (their text and their tool calls), the part of a
trajectory a student is trained to imitate; tool results and the recorded `actions` are
not. Text is lower-cased and split into runs of letters and digits; each text field starts
with the marker `<start>`, so an n-gram can say how a field opens and no field is ever empty.

- `thoughts`: the words of the assistant turns' text.
- `calls`: one token per call: the API tool name, or for a `bash` call the program of each
  simple command (`ls -l && chgrp team f` -> `ls chgrp`).
- `arguments`: the words of every tool-call argument key and value.
- habits: `steps` (assistant turns), `looks_before_change` (look-around calls before the
  first call that can change state, all calls when none does), `mean_thought_words`, and
  `first_call_is_look` (1.0 or 0.0). A look-around is an API `list` / `read`, or a `bash`
  command line of read-only programs only (`READ_ONLY_PROGRAMS`, `find` without actions,
  no output redirection).
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from envs.bash.commands import simple_commands
from trajectories.episode import Episode, Message

READ_ONLY_API_TOOLS = frozenset({"list", "read"})
READ_ONLY_PROGRAMS = frozenset(
    {"ls", "getfacl", "id", "cat", "wc", "stat", "du", "df", "head", "tail", "file", "grep"}
    | {"pwd", "whoami", "groups", "tree", "find", "zcat", "less", "realpath"}
)
FIND_ACTIONS = frozenset(
    {"-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"}
)
HABIT_COLUMNS: tuple[str, ...] = (
    "steps",
    "looks_before_change",
    "mean_thought_words",
    "first_call_is_look",
)
TEXT_COLUMNS: tuple[str, ...] = ("thoughts", "calls", "arguments")
START = "<start>"

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _document(words: list[str]) -> str:
    return " ".join([START, *words])


def _assistant_turns(episode: Episode) -> list[Message]:
    return [message for message in episode.messages if message.role == "assistant"]


def _calls(episode: Episode) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of every tool call in the assistant turns, in order."""
    return [
        (call.function.name, call.function.arguments)
        for message in _assistant_turns(episode)
        for call in message.tool_calls or []
    ]


def _bash_command(arguments: dict[str, Any]) -> str:
    command = arguments.get("command")
    return command if isinstance(command, str) else ""


def _programs(command: str) -> list[str]:
    return [posixpath.basename(words[0]) for words in simple_commands(command)]


def call_tokens(name: str, arguments: dict[str, Any]) -> list[str]:
    """The `calls` tokens of one tool call (see the module docstring)."""
    if name != "bash":
        return [name]
    return _programs(_bash_command(arguments)) or ["bash"]


def is_look(name: str, arguments: dict[str, Any]) -> bool:
    """Whether a tool call only looks around (see the module docstring)."""
    if name != "bash":
        return name in READ_ONLY_API_TOOLS
    command = _bash_command(arguments)
    commands = simple_commands(command)
    if not commands or ">" in command:
        return False
    for words in commands:
        program = posixpath.basename(words[0])
        if program not in READ_ONLY_PROGRAMS:
            return False
        if program == "find" and FIND_ACTIONS.intersection(words):
            return False
    return True


def _argument_strings(arguments: dict[str, Any]) -> list[str]:
    strings: list[str] = []
    for key, value in arguments.items():
        strings.append(key)
        strings.append(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    return strings


def visible_strings(episode: Episode) -> list[str]:
    """Every string the classifier reads: turn texts, call names, argument keys and values."""
    strings: list[str] = []
    for message in _assistant_turns(episode):
        strings.append(message.content)
        for call in message.tool_calls or []:
            strings.append(call.function.name)
            strings.extend(_argument_strings(call.function.arguments))
    return strings


def _looks_before_change(looks: list[bool]) -> int:
    return next((i for i, look in enumerate(looks) if not look), len(looks))


def episode_features(episode: Episode) -> dict[str, str | float]:
    """The text fields and habit features of one episode, keyed by column name."""
    turns = _assistant_turns(episode)
    calls = _calls(episode)
    looks = [is_look(name, arguments) for name, arguments in calls]
    thought_words = [_words(message.content) for message in turns]
    arguments = [text for _, args in calls for text in _argument_strings(args)]
    return {
        "thoughts": _document([word for words in thought_words for word in words]),
        "calls": _document([token for name, args in calls for token in call_tokens(name, args)]),
        "arguments": _document([word for text in arguments for word in _words(text)]),
        "steps": float(len(turns)),
        "looks_before_change": float(_looks_before_change(looks)),
        "mean_thought_words": (
            sum(map(len, thought_words)) / len(thought_words) if thought_words else 0.0
        ),
        "first_call_is_look": float(bool(looks) and looks[0]),
    }
