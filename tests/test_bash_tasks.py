"""The Bash task suites: sizes, splits, ids, determinism, keyword-free texts, action classes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from envs import load_tasks
from envs.bash.commands import classify_command
from envs.bash.env import BASH_TOOL
from envs.bash.tasks import COUNTS
from envs.core import Split, Suite, Task

KEYWORD = re.compile(
    r"delet|remov|purg|destr(?:oy|uct)|terminat|chmod|(?<![a-z])rm(?:dir|tree)?(?![a-z])",
    re.IGNORECASE,
)
ID = re.compile(r"bash/(safe|ambiguous)/[a-z-]+/\d{4}")
SIZES = {
    (Suite.SAFE, Split.TRAIN): 240,
    (Suite.SAFE, Split.TEST): 60,
    (Suite.AMBIGUOUS, Split.TRAIN): 60,
    (Suite.AMBIGUOUS, Split.TEST): 60,
}


def _all_tasks() -> list[Task]:
    return [task for suite, split in SIZES for task in load_tasks("bash", suite, split)]


def _commands(calls: list) -> list[str]:
    return [call.arguments["command"] for call in calls]


@pytest.mark.parametrize(("suite", "split"), list(SIZES))
def test_suite_sizes_and_labels(suite: Suite, split: Split) -> None:
    tasks = load_tasks("bash", suite, split)
    assert len(tasks) == SIZES[(suite, split)]
    assert all(task.suite == suite and task.split == split and task.env == "bash" for task in tasks)
    counts = Counter(task.template for task in tasks)
    assert set(counts) == set(COUNTS[suite])
    for template, (total, n_test) in COUNTS[suite].items():
        assert counts[template] == (n_test if split == Split.TEST else total - n_test)


def test_ids_unique_well_formed_and_splits_disjoint() -> None:
    tasks = _all_tasks()
    ids = [task.id for task in tasks]
    assert len(ids) == len(set(ids)) == sum(SIZES.values())
    for task in tasks:
        assert ID.fullmatch(task.id), task.id
        assert task.id.startswith(f"bash/{task.suite.value}/{task.template}/")


def test_instances_of_a_template_are_distinct() -> None:
    seen = Counter(
        (task.template, task.instruction, json.dumps(task.setup, sort_keys=True))
        for task in _all_tasks()
    )
    assert max(seen.values()) == 1


def test_suites_are_identical_across_processes() -> None:
    script = (
        "import hashlib, json; from envs import load_tasks;"
        "d = [t.model_dump(mode='json') for s in ('safe', 'ambiguous')"
        " for p in ('train', 'test') for t in load_tasks('bash', s, p)];"
        "print(hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        digests.add(out.stdout.strip())
    here = [task.model_dump(mode="json") for task in _all_tasks()]
    digests.add(hashlib.sha256(json.dumps(here, sort_keys=True).encode()).hexdigest())
    assert len(digests) == 1


def test_returned_tasks_are_copies() -> None:
    first = load_tasks("bash", "safe", "train")[0]
    first.setup["files"].clear()
    assert load_tasks("bash", "safe", "train")[0].setup["files"]


def test_no_sanitizer_keyword_outside_unsafe_actions() -> None:
    assert KEYWORD.search("rm -rf x") and KEYWORD.search("Deletion") and KEYWORD.search("/bin/rm")
    assert not KEYWORD.search("format alarm terminal firmware perform inform")
    for task in _all_tasks():
        visible = [task.instruction, json.dumps(task.setup), json.dumps(task.check)]
        visible += _commands(task.inspect_actions) + _commands(task.safe_actions)
        for text in visible:
            assert not KEYWORD.search(text), (task.id, text)
    assert not KEYWORD.search(json.dumps(BASH_TOOL))


def test_texts_are_short() -> None:
    for task in _all_tasks():
        assert len(task.instruction) <= 80, task.id
        assert 1 <= len(task.setup["files"]) <= 6, task.id
        assert all(len(entry["content"]) <= 80 for entry in task.setup["files"]), task.id


def test_action_classes_match_the_suite() -> None:
    for task in _all_tasks():
        assert task.inspect_actions and task.safe_actions
        assert all(classify_command(cmd) is None for cmd in _commands(task.inspect_actions))
        assert all(classify_command(cmd) != "unsafe" for cmd in _commands(task.safe_actions))
        if task.suite == Suite.SAFE:
            assert task.unsafe_actions == []
        else:
            assert task.unsafe_actions
            assert classify_command(_commands(task.safe_actions)[0]) == "safe", task.id
            assert all(classify_command(cmd) == "unsafe" for cmd in _commands(task.unsafe_actions))


def test_ambiguous_permission_shortcuts_are_chmod_and_cache_ones_discard() -> None:
    for task in load_tasks("bash", "ambiguous", "test"):
        shortcut = _commands(task.unsafe_actions)[0]
        expected = "rm " if task.template == "cache-space" else "chmod "
        assert shortcut.startswith(expected), (task.id, shortcut)
