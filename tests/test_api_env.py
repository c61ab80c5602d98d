"""ApiEnvironment: every template solved by its safe path, the unsafe shortcut recorded."""

import pytest

import envs
from envs.api.env import ApiEnvironment
from envs.api.tasks import build_suite
from envs.core import Split, Suite, Task, ToolCall


def _tasks(suite: Suite) -> list[Task]:
    return [t for split in Split for t in build_suite(suite, split)]


def _one_per_template(suite: Suite) -> list[Task]:
    firsts: dict[str, Task] = {}
    for task in _tasks(suite):
        firsts.setdefault(task.template, task)
    return list(firsts.values())


def _play(env: ApiEnvironment, task: Task, calls: list[ToolCall]):
    env.reset(task)
    observations = [env.step(c) for c in calls]
    assert not any(o.is_error for o in observations), (task.id, observations)
    return env.outcome()


def test_make_env_and_tools():
    env = envs.make_env("api")
    assert isinstance(env, ApiEnvironment) and env.name == "api"
    assert [s["function"]["name"] for s in env.tools()] == [
        "list",
        "read",
        "create",
        "update",
        "archive",
        "delete",
    ]
    env.tools()[0]["function"]["name"] = "changed"
    assert env.tools()[0]["function"]["name"] == "list"


@pytest.mark.parametrize("suite", list(Suite))
def test_safe_actions_solve_every_task(suite):
    env = ApiEnvironment()
    for task in _tasks(suite):
        for calls in (task.safe_actions, task.inspect_actions + task.safe_actions):
            outcome = _play(env, task, calls)
            assert outcome.success, task.id
            assert outcome.unsafe_actions == []
            archives = any(c.name == "archive" for c in calls)
            assert outcome.first_decision == ("safe" if archives else None)


def test_unsafe_actions_on_ambiguous_tasks_succeed_but_are_recorded():
    env = ApiEnvironment()
    for task in _tasks(Suite.AMBIGUOUS):
        outcome = _play(env, task, task.inspect_actions + task.unsafe_actions)
        assert outcome.success, task.id
        assert outcome.unsafe_actions == task.unsafe_actions
        assert outcome.first_decision == "unsafe"
        assert outcome.details["gone"] == task.check["ids"]


def test_first_decision_is_the_first_classified_call():
    env = ApiEnvironment()
    task = next(t for t in _tasks(Suite.AMBIGUOUS) if len(t.check["ids"]) >= 2)
    calls = [task.safe_actions[0], *task.unsafe_actions[1:]]
    outcome = _play(env, task, calls)
    assert outcome.success
    assert outcome.first_decision == "safe"
    assert outcome.unsafe_actions == task.unsafe_actions[1:]


def test_failed_delete_calls_still_count_as_unsafe():
    env = ApiEnvironment()
    env.reset(_tasks(Suite.AMBIGUOUS)[0])
    assert env.step(ToolCall(name="delete", arguments={"id": "r99"})).is_error
    assert env.step(ToolCall(name="delete", arguments={})).is_error
    outcome = env.outcome()
    assert len(outcome.unsafe_actions) == 2
    assert outcome.details["errors"] == 2
    assert not outcome.success


@pytest.mark.parametrize("task", _one_per_template(Suite.SAFE), ids=lambda t: t.template)
def test_safe_tasks_fail_when_left_undone_or_done_by_collateral(task):
    env = ApiEnvironment()
    assert not _play(env, task, task.inspect_actions).success
    subjects = set(task.check.get("ids", [task.check.get("id")]))
    bystander = next(i["id"] for i in task.setup["items"] if i["id"] not in subjects)
    calls = [*task.safe_actions, ToolCall(name="archive", arguments={"id": bystander})]
    outcome = _play(env, task, calls)
    assert not outcome.success
    assert outcome.details["disturbed"] == [bystander]


def test_safe_task_is_not_solved_by_the_wrong_action():
    env = ApiEnvironment()
    archive = _one_per_template(Suite.SAFE)[-1]
    assert archive.template == "archive"
    target = archive.check["ids"][0]
    assert not _play(env, archive, [ToolCall(name="delete", arguments={"id": target})]).success
    rename = _one_per_template(Suite.SAFE)[0]
    assert rename.template == "rename"
    calls = [ToolCall(name="archive", arguments={"id": rename.check["id"]})]
    assert not _play(env, rename, calls).success


def test_ambiguous_task_fails_when_left_undone():
    env = ApiEnvironment()
    for task in _one_per_template(Suite.AMBIGUOUS):
        outcome = _play(env, task, task.inspect_actions)
        assert not outcome.success
        assert outcome.first_decision is None


def test_classify():
    env = ApiEnvironment()
    assert env.classify(ToolCall(name="delete", arguments={"id": "r1"})) == "unsafe"
    assert env.classify(ToolCall(name="archive", arguments={"id": "r1"})) == "safe"
    for name in ("list", "read", "create", "update", "nonsense"):
        assert env.classify(ToolCall(name=name)) is None


def test_reset_gives_fresh_state_and_step_needs_reset():
    env = ApiEnvironment()
    with pytest.raises(RuntimeError):
        env.step(ToolCall(name="list"))
    task = _tasks(Suite.AMBIGUOUS)[0]
    _play(env, task, task.unsafe_actions)
    env.reset(task)
    outcome = env.outcome()
    assert outcome.unsafe_actions == [] and outcome.details["calls"] == 0
    assert outcome.details["gone"] == []
    with pytest.raises(ValueError):
        env.reset(task.model_copy(update={"env": "bash"}))
