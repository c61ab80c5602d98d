"""Parsing `getfacl` output and the acl(5) access decision (pure)."""

from __future__ import annotations

import pytest

from envs.bash.acl import Principal, grants, parse_getfacl, world_access
from envs.bash.seed import seed_script

GETFACL = """\
# file: report.txt
# owner: agent
# group: agent
user::rw-
user:bob:rw-\t\t#effective:r--
group::r--
group:ops:rwx\t\t#effective:r--
mask::r--
other::---

# file: deploy.sh
# owner: agent
# group: team
user::rwx
group::r-x
other::r--

# file: docs
# owner: agent
# group: agent
user::rwx
group::---
other::---
default:user::rwx
default:group:devs:rwx
default:other::---

"""

TEAM = Principal(None, frozenset({"team"}))
OPS = Principal(None, frozenset({"ops"}))
DEVS = Principal(None, frozenset({"devs"}))
BOB = Principal("bob", frozenset({"bob"}))
CAROL = Principal("carol", frozenset({"carol"}))
AGENT = Principal("agent", frozenset({"agent", "team"}))


def test_parse_blocks_headers_and_access_entries() -> None:
    acls = parse_getfacl(GETFACL)
    assert set(acls) == {"report.txt", "deploy.sh", "docs"}
    report = acls["report.txt"]
    assert (report.owner, report.group) == ("agent", "agent")
    assert report.perms("user", "bob") == frozenset("rw")
    assert report.perms("mask") == frozenset("r")
    assert ("group", "devs") not in acls["docs"].entries


@pytest.mark.parametrize(
    ("path", "principal", "perms", "expected"),
    [
        ("report.txt", AGENT, "rw", True),
        ("report.txt", BOB, "r", True),
        ("report.txt", BOB, "w", False),
        ("report.txt", OPS, "r", True),
        ("report.txt", OPS, "x", False),
        ("report.txt", TEAM, "r", False),
        ("report.txt", CAROL, "r", False),
        ("deploy.sh", TEAM, "rx", True),
        ("deploy.sh", TEAM, "w", False),
        ("deploy.sh", OPS, "r", True),
        ("deploy.sh", OPS, "rx", False),
        ("docs", DEVS, "rwx", False),
        ("docs", AGENT, "rwx", True),
    ],
)
def test_grants(path: str, principal: Principal, perms: str, expected: bool) -> None:
    assert grants(parse_getfacl(GETFACL)[path], principal, perms) is expected


def test_matching_group_without_the_permission_denies_even_if_other_allows() -> None:
    acl = parse_getfacl(
        "# file: f\n# owner: agent\n# group: ops\nuser::rw-\ngroup::---\nother::r--\n"
    )["f"]
    assert not grants(acl, OPS, "r")
    assert grants(acl, TEAM, "r")


def test_world_access() -> None:
    acls = parse_getfacl(GETFACL)
    assert world_access(acls["deploy.sh"]) == {
        "readable": True,
        "writable": False,
        "executable": False,
    }
    assert not any(world_access(acls["report.txt"]).values())


def test_seed_script_sets_dir_modes_after_files() -> None:
    setup = {
        "dirs": [{"path": "d", "mode": "500", "group": "team", "acl": []}],
        "files": [
            {"path": "d/f", "content": "x", "mode": "640", "group": "ops", "acl": ["u:bob:r"]}
        ],
    }
    lines = seed_script(setup).splitlines()
    assert lines[0] == "set -e"
    assert lines.index("chmod 500 -- d") > lines.index("chmod 640 -- d/f")
    assert "setfacl -m u:bob:r -- d/f" in lines and "chgrp ops -- d/f" in lines
