"""What a Bash task template returns, the setup/check records it builds, and its vocabulary.

Setup records (seeded by `envs.bash.seed`):
- file: `{"path", "content", "mode", "group", "acl"}`; dir: `{"path", "mode", "group", "acl"}`;
  `mode` is an octal string, `group` a group name, `acl` a list of `setfacl -m` entries.

Check conditions (evaluated by `envs.bash.checker`), all of which must hold:
- `{"kind": "access", "path", "principal": {"kind": "user"|"group", "name"}, "perms"}`:
  the principal (a user outside the agent's groups, or a member of that one group only)
  gets `perms` (letters of "rwx") on `path`;
- `{"kind": "group", "path", "group", "recursive"}`: `path` (and, if recursive, everything
  under it) has that group;
- `{"kind": "content", "path", "text"}`: `path` is a file whose stripped text is `text`;
- `{"kind": "absent", "path"}`: nothing exists at `path`.
`check["preserve"]` lists `{"path", "content"}` records whose data the details report on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from envs.core import ToolCall

USERS = ("alice", "bob", "carol")
GROUPS = ("team", "devs", "ops")
WORDS = (
    "alpha",
    "beta",
    "blue",
    "green",
    "north",
    "south",
    "lunch",
    "budget",
    "sprint",
    "review",
    "draft",
    "plan",
    "sales",
    "q3",
    "ok",
    "done",
    "todo",
    "fix",
    "build",
    "ship",
)
FILE_STEMS = (
    "report",
    "notes",
    "plan",
    "data",
    "summary",
    "todo",
    "memo",
    "budget",
    "list",
    "draft",
)
TEXT_EXTS = (".txt", ".md", ".csv")
LOG_STEMS = ("app", "web", "db", "api", "job", "cron", "auth", "mail")
DIR_NAMES = ("docs", "src", "shared", "proj", "share", "work", "pub", "data")
CONF_STEMS = ("app", "web", "db", "site", "main", "net")
SCRIPT_STEMS = ("deploy", "build", "sync", "backup", "start", "check")


@dataclass
class TaskDraft:
    """One generated instance before it gets an id and split."""

    instruction: str
    setup: dict[str, Any]
    check: dict[str, Any]
    inspect: list[str]
    safe: list[str]
    unsafe: list[str] = field(default_factory=list)

    def signature(self) -> str:
        """A key that identifies the instance, used to keep instances of a template distinct."""
        return repr((self.instruction, self.setup))


def bash_call(command: str) -> ToolCall:
    """The `bash` tool call running `command`."""
    return ToolCall(name="bash", arguments={"command": command})


def file_entry(
    path: str, content: str, mode: str = "644", group: str = "agent", acl: list[str] | None = None
) -> dict[str, Any]:
    """A setup record for one file."""
    return {"path": path, "content": content, "mode": mode, "group": group, "acl": acl or []}


def dir_entry(
    path: str, mode: str = "755", group: str = "agent", acl: list[str] | None = None
) -> dict[str, Any]:
    """A setup record for one directory."""
    return {"path": path, "mode": mode, "group": group, "acl": acl or []}


def setup_of(files: list[dict[str, Any]], dirs: list[dict[str, Any]] | None = None) -> dict:
    """The `Task.setup` mapping."""
    return {"dirs": dirs or [], "files": files}


def access(path: str, kind: str, name: str, perms: str) -> dict[str, Any]:
    """An `access` check condition."""
    return {
        "kind": "access",
        "path": path,
        "principal": {"kind": kind, "name": name},
        "perms": perms,
    }


def phrase(rng: random.Random, n: int = 2) -> str:
    """A short content line of `n` distinct words."""
    return " ".join(rng.sample(WORDS, n))


def text_name(rng: random.Random) -> str:
    """A short text file name like `notes.txt`."""
    return rng.choice(FILE_STEMS) + rng.choice(TEXT_EXTS)


def extra_files(rng: random.Random, taken: set[str], n: int, prefix: str = "") -> list[dict]:
    """`n` bystander files with names not in `taken` (which is updated)."""
    entries = []
    while len(entries) < n:
        name = prefix + text_name(rng)
        if name in taken:
            continue
        taken.add(name)
        entries.append(file_entry(name, phrase(rng), rng.choice(("644", "640", "600"))))
    return entries
