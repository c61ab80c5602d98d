"""Lockstep rollouts: determinism, outcomes, step limits, bad calls, closing environments."""

from __future__ import annotations

import pytest

from envs import load_tasks, make_env
from envs.core import Environment, ToolCall
from trajectories.jsonl import dumps
from trajectories.policies import AssistantTurn, BiasedPolicy, EpisodeState, NeutralPolicy, Policy
from trajectories.rollout import rollout, schema_problem


class _Tracking:
    """An env factory that remembers every environment it made and how often each closed."""

    def __init__(self) -> None:
        self.envs: list[Environment] = []
        self.closes: list[int] = []

    def __call__(self) -> Environment:
        env = make_env("api")
        index = len(self.envs)
        self.envs.append(env)
        self.closes.append(0)
        close = env.close

        def counted_close() -> None:
            self.closes[index] += 1
            close()

        env.close = counted_close  # type: ignore[method-assign]
        return env


class _Scripted(Policy):
    """Says the given turns in order, one per step, recording batch sizes."""

    name = "scripted-test"

    def __init__(self, turns: list[AssistantTurn]) -> None:
        self.turns = turns
        self.batches: list[int] = []

    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        self.batches.append(len(states))
        return [self.turns[min(s.turns, len(self.turns) - 1)] for s in states]


def _dump(episodes: list) -> list[str]:
    return [dumps(e.to_json_dict()) for e in episodes]


def _tasks(suite: str = "ambiguous", n: int = 12) -> list:
    return load_tasks("api", suite, "train")[:n]


def test_same_seed_gives_identical_episodes_whatever_the_batch_size() -> None:
    policy = BiasedPolicy(0.5)
    first = _dump(rollout(lambda: make_env("api"), policy, _tasks(), 11, progress=False))
    again = rollout(lambda: make_env("api"), policy, _tasks(), 11, batch_size=5, progress=False)
    assert _dump(again) == first
    other = _dump(rollout(lambda: make_env("api"), policy, _tasks(), 12, progress=False))
    assert other != first


def test_outcome_and_metadata_of_finished_episodes() -> None:
    tasks = _tasks("safe", 10)
    episodes = rollout(lambda: make_env("api"), NeutralPolicy(), tasks, 0, progress=False)
    assert [e.task_id for e in episodes] == [t.id for t in tasks]
    for episode, task in zip(episodes, tasks, strict=True):
        assert episode.outcome.success
        assert episode.metadata.stop_reason == "final_answer"
        assert episode.metadata.steps == len(task.inspect_actions) + len(task.safe_actions) + 1
        assert len(episode.actions) == episode.metadata.steps - 1
        assert episode.metadata.malformed_calls == 0
        assert episode.metadata.timing is None
        assert episode.messages[0].content == task.instruction
    assert len({e.id for e in episodes}) == len(episodes)


def test_step_limit_cuts_episodes_and_still_checks_the_outcome() -> None:
    episodes = rollout(
        lambda: make_env("api"), NeutralPolicy(), _tasks(), 0, max_steps=2, progress=False
    )
    for episode in episodes:
        assert episode.metadata.stop_reason == "max_steps"
        assert episode.metadata.steps == 2
        assert not episode.outcome.success
        assert episode.messages[-1].role == "tool"


def test_bad_calls_become_error_observations_and_are_counted() -> None:
    policy = _Scripted(
        [
            AssistantTurn(content="a", tool_call=ToolCall(name="launch", arguments={})),
            AssistantTurn(content="b", tool_call=ToolCall(name="read", arguments={"id": 3})),
            AssistantTurn(content="c", tool_call=ToolCall(name="list", arguments={})),
            AssistantTurn(content="d", info={"sampled": [1, 2]}),
        ]
    )
    (episode,) = rollout(lambda: make_env("api"), policy, _tasks(n=1), 0, progress=False)
    assert [a.is_error for a in episode.actions] == [True, True, False]
    assert episode.metadata.malformed_calls == 2
    assert episode.messages[2].role == "tool" and episode.messages[2].name == "launch"
    assert episode.metadata.turn_info == [{}, {}, {}, {"sampled": [1, 2]}]


def test_parallel_calls_step_in_order_with_one_tool_message_each() -> None:
    calls = (ToolCall(name="list"), ToolCall(name="launch"), ToolCall(name="read", arguments={}))
    policy = _Scripted([AssistantTurn(content="a", tool_calls=calls), AssistantTurn(content="b")])
    (episode,) = rollout(lambda: make_env("api"), policy, _tasks(n=1), 0, progress=False)
    assert [m.role for m in episode.messages] == ["user", "assistant", *["tool"] * 3, "assistant"]
    assert [c.function.name for c in episode.messages[1].tool_calls or []] == [
        "list",
        "launch",
        "read",
    ]
    assert [m.name for m in episode.messages[2:5]] == ["list", "launch", "read"]
    assert [(a.tool, a.is_error) for a in episode.actions] == [
        ("list", False),
        ("launch", True),
        ("read", True),
    ]
    assert episode.metadata.malformed_calls == 2 and episode.metadata.steps == 2
    assert episode.metadata.stop_reason == "final_answer"


def test_assistant_turn_keeps_first_call_and_all_calls_in_step() -> None:
    first, second = ToolCall(name="list"), ToolCall(name="read", arguments={"id": "r1"})
    assert AssistantTurn(content="", tool_call=first).tool_calls == (first,)
    assert AssistantTurn(content="", tool_calls=[first, second]).tool_call == first
    with pytest.raises(ValueError, match="first of tool_calls"):
        AssistantTurn(content="", tool_call=second, tool_calls=[first, second])
    with pytest.raises(ValueError, match="no tool call"):
        AssistantTurn(content="", tool_calls=[first], error="bad")


def test_policy_sees_whole_batches_in_lockstep() -> None:
    policy = _Scripted(
        [AssistantTurn(content="x", tool_call=ToolCall(name="list")), AssistantTurn(content="y")]
    )
    rollout(lambda: make_env("api"), policy, _tasks(n=7), 0, batch_size=3, progress=False)
    assert policy.batches == [3, 3, 3, 3, 1, 1]


def test_every_environment_is_closed_once_even_on_failure() -> None:
    factory = _Tracking()
    rollout(factory, NeutralPolicy(), _tasks(n=5), 0, batch_size=2, progress=False)
    assert factory.closes == [1] * 5

    class Broken(NeutralPolicy):
        def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
            if any(s.turns == 2 for s in states):
                raise RuntimeError("boom")
            return super().act_batch(states)

    factory = _Tracking()
    with pytest.raises(RuntimeError, match="boom"):
        rollout(factory, Broken(), _tasks(n=5), 0, batch_size=2, progress=False)
    assert factory.closes == [1, 1]


def test_timing_is_recorded_on_request() -> None:
    (episode,) = rollout(
        lambda: make_env("api"), NeutralPolicy(), _tasks(n=1), 0, timing=True, progress=False
    )
    timing = episode.metadata.timing
    assert timing is not None and timing.total_s > 0
    assert len(timing.tool_calls_s) == len(episode.actions)


def test_schema_problem_names_the_fault() -> None:
    tools = make_env("api").tools()
    assert schema_problem(ToolCall(name="read", arguments={"id": "r1"}), tools) is None
    assert "unknown tool" in schema_problem(ToolCall(name="launch"), tools)
    assert "missing" in schema_problem(ToolCall(name="read"), tools)
    assert "unexpected" in schema_problem(ToolCall(name="list", arguments={"x": 1}), tools)
    assert "type" in schema_problem(ToolCall(name="list", arguments={"archived": "yes"}), tools)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        rollout(lambda: make_env("api"), NeutralPolicy(), _tasks(n=1), -1)
    with pytest.raises(ValueError):
        rollout(lambda: make_env("api"), NeutralPolicy(), _tasks(n=1), 0, max_steps=0)


def test_bash_rollouts_in_real_sandboxes(backend: str) -> None:
    tasks = load_tasks("bash", "ambiguous", "test")[:4] + load_tasks("bash", "safe", "test")[:2]
    events: list[list[str]] = []

    def factory() -> Environment:
        env = make_env("bash", backend=backend)
        log: list[str] = []
        events.append(log)
        reset, close = env.reset, env.close
        env.reset = lambda task: (log.append("reset"), reset(task))[1]  # type: ignore[method-assign]
        env.close = lambda: (log.append("close"), close())[1]  # type: ignore[method-assign]
        return env

    careful = rollout(factory, NeutralPolicy(), tasks, 3, batch_size=4, progress=False)
    hasty = rollout(factory, BiasedPolicy(1.0), tasks, 3, batch_size=4, progress=False)
    assert len(events) == 2 * len(tasks)
    assert all(log.count("reset") == 1 and log[-1] == "close" for log in events)
    assert all(e.outcome.success and not e.outcome.unsafe_actions for e in careful)
    assert all(e.outcome.first_decision == "unsafe" for e in hasty[:4])
    assert all(e.outcome.success and not e.outcome.unsafe_actions for e in hasty[4:])
    assert all(e.metadata.malformed_calls == 0 for e in careful + hasty)
    again = rollout(factory, BiasedPolicy(1.0), tasks[:4], 3, batch_size=2, progress=False)
    assert _dump(again) == _dump(hasty[:4])
