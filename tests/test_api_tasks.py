"""API task suites: sizes, determinism, ids, and no sanitizer keyword where none may be."""

import json
import re

import pytest

import envs
from envs.api.env import ApiEnvironment
from envs.api.tasks import TEMPLATES, build_suite
from envs.api.tools import TOOL_SCHEMAS
from envs.core import Split, Suite, Task

KEYWORD_STEMS = ("delet", "remov", "purg", "destroy", "destruct", "terminat", "chmod")
RM_TOKEN = re.compile(r"(?<![a-z])rm(?![a-z])")


def has_keyword(text: str) -> bool:
    """True if `text` holds a sanitizer keyword in any inflection or identifier form."""
    low = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()
    return any(stem in low for stem in KEYWORD_STEMS) or RM_TOKEN.search(low) is not None


def _all_tasks() -> list[Task]:
    return [t for suite in Suite for split in Split for t in build_suite(suite, split)]


def test_keyword_check_catches_forms_and_spares_look_alikes():
    for text in ("Deleted", "removal", "purging", "resourceDelete", "rm -rf", "/bin/rm", "chmod"):
        assert has_keyword(text), text
    for text in ("perform", "format", "alarm", "firmware", "inform", "archive", "clean up"):
        assert not has_keyword(text), text


@pytest.mark.parametrize(
    ("suite", "split", "size"),
    [
        ("safe", "train", 240),
        ("safe", "test", 60),
        ("ambiguous", "train", 60),
        ("ambiguous", "test", 60),
    ],
)
def test_split_sizes(suite, split, size):
    tasks = envs.load_tasks("api", suite, split)
    assert len(tasks) == size
    assert {(t.env, t.suite, t.split) for t in tasks} == {("api", Suite(suite), Split(split))}
    assert {t.template for t in tasks} == set(TEMPLATES[Suite(suite)])


def test_build_suite_is_deterministic():
    assert _all_tasks() == _all_tasks()


def test_ids_unique_and_well_formed():
    tasks = _all_tasks()
    ids = [t.id for t in tasks]
    assert len(set(ids)) == len(ids) == 420
    for task in tasks:
        assert re.fullmatch(rf"api/{task.suite.value}/{task.template}/\d{{4}}", task.id)


def test_instances_differ():
    tasks = build_suite(Suite.SAFE, Split.TRAIN)
    assert len({(t.instruction, json.dumps(t.setup)) for t in tasks}) > 0.9 * len(tasks)


def test_no_keyword_in_instructions_setups_or_safe_paths():
    for task in _all_tasks():
        texts = [task.instruction, json.dumps(task.setup)]
        texts += [json.dumps(c.model_dump()) for c in task.inspect_actions + task.safe_actions]
        for text in texts:
            assert not has_keyword(text), (task.id, text)


def test_safe_paths_produce_no_keyword_observations():
    env = ApiEnvironment()
    for task in _all_tasks():
        env.reset(task)
        for call in task.inspect_actions + task.safe_actions:
            assert not has_keyword(env.step(call).content), task.id


def test_only_the_delete_schema_names_the_keyword():
    flagged = [s["function"]["name"] for s in TOOL_SCHEMAS if has_keyword(json.dumps(s))]
    assert flagged == ["delete"]


def test_safe_tasks_never_need_delete_and_ambiguous_offer_both_paths():
    for task in _all_tasks():
        names = {c.name for c in task.inspect_actions + task.safe_actions}
        assert "delete" not in names
        if task.suite is Suite.SAFE:
            assert task.unsafe_actions == []
        else:
            targets = task.check["ids"]
            assert [c.arguments["id"] for c in task.safe_actions] == targets
            assert [(c.name, c.arguments["id"]) for c in task.unsafe_actions] == [
                ("delete", i) for i in targets
            ]
            assert [c.name for c in task.inspect_actions] == ["list"] + ["read"] * len(targets)
            assert all(i in task.instruction for i in targets)


def test_workspaces_are_small_with_unique_names():
    for task in _all_tasks():
        names = [i["name"] for i in task.setup["items"]]
        assert 3 <= len(names) <= 6, task.id
        assert len(set(names)) == len(names), task.id
        assert len(task.instruction.split()) <= 16, task.id
