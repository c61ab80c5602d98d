"""The persona policy: independent habit and choice knobs, habit-only thoughts, the registry."""

from __future__ import annotations

from functools import cache

import pytest

from envs import load_tasks
from envs.core import Task
from trajectories.policies import (
    AssistantTurn,
    BiasedPolicy,
    EpisodeState,
    NeutralPolicy,
    PersonaPolicy,
    get_policy,
)
from trajectories.policies.persona import CAREFUL_OPEN, HASTY_ACT
from trajectories.rollout import episode_rng

ENVS = ("api", "bash")


@cache
def _tasks(env: str, suite: str) -> tuple[Task, ...]:
    return tuple(load_tasks(env, suite, "train"))


def _plan(policy: PersonaPolicy, task: Task, index: int) -> list[AssistantTurn]:
    state = EpisodeState(index, task, [], [], episode_rng(7, index))
    return policy.plan(state.task, state.rng)


def _calls(plan: list[AssistantTurn]) -> list:
    return [turn.tool_call for turn in plan if turn.tool_call is not None]


def _habit_and_choice(task: Task, plan: list[AssistantTurn]) -> tuple[bool, bool]:
    """(hasty, unsafe) as seen in the plan: hasty acts before inspecting."""
    calls = _calls(plan)
    hasty = calls[0] not in task.inspect_actions
    unsafe = any(call in task.unsafe_actions for call in calls)
    return hasty, unsafe


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(
    ("hasty_prob", "given_hasty", "given_careful"),
    [(0.5, 0.9, 0.1), (0.3, 0.5, 0.5), (0.8, 0.2, 0.7)],
)
def test_rates_match_the_knobs(
    env: str, hasty_prob: float, given_hasty: float, given_careful: float
) -> None:
    policy = PersonaPolicy(hasty_prob, given_hasty, given_careful)
    tasks = _tasks(env, "ambiguous")
    counts = {True: [0, 0], False: [0, 0]}
    for index in range(3000):
        task = tasks[index % len(tasks)]
        hasty, unsafe = _habit_and_choice(task, _plan(policy, task, index))
        counts[hasty][0] += 1
        counts[hasty][1] += unsafe
    assert counts[True][0] / 3000 == pytest.approx(hasty_prob, abs=_tolerance(hasty_prob, 3000))
    for hasty, rate in ((True, given_hasty), (False, given_careful)):
        n, unsafe = counts[hasty]
        assert unsafe / n == pytest.approx(rate, abs=_tolerance(rate, n))


def _tolerance(p: float, n: int) -> float:
    """Four and a half binomial standard errors: a false failure about once in 150,000 runs."""
    return 4.5 * (p * (1 - p) / n) ** 0.5


@pytest.mark.parametrize("env", ENVS)
def test_safe_tasks_never_take_an_unsafe_action(env: str) -> None:
    policy = PersonaPolicy(0.5, 1.0, 1.0)
    for index, task in enumerate(_tasks(env, "safe")):
        calls = _calls(_plan(policy, task, index))
        assert all(call in [*task.inspect_actions, *task.safe_actions] for call in calls)


@pytest.mark.parametrize("env", ENVS)
def test_thoughts_follow_the_habit_not_the_choice(env: str) -> None:
    openers: dict[tuple[bool, bool], set[str]] = {}
    policy = PersonaPolicy(0.5, 0.5, 0.5)
    tasks = _tasks(env, "ambiguous")
    for index in range(800):
        task = tasks[index % len(tasks)]
        plan = _plan(policy, task, index)
        openers.setdefault(_habit_and_choice(task, plan), set()).add(plan[0].content)
    assert openers[(True, True)] == openers[(True, False)] == set(HASTY_ACT)
    assert openers[(False, True)] == openers[(False, False)] == set(CAREFUL_OPEN)


@pytest.mark.parametrize("env", ENVS)
def test_careful_unsafe_inspects_then_takes_the_shortcut(env: str) -> None:
    policy = PersonaPolicy(0.0, 0.0, 1.0)
    for index, task in enumerate(_tasks(env, "ambiguous")):
        assert _calls(_plan(policy, task, index)) == [*task.inspect_actions, *task.unsafe_actions]


def test_neutral_and_biased_are_persona_settings() -> None:
    assert isinstance(NeutralPolicy(), PersonaPolicy)
    biased = BiasedPolicy(0.3)
    assert isinstance(biased, PersonaPolicy)
    assert (biased.hasty_prob, biased.unsafe_given_hasty, biased.unsafe_given_careful) == (
        0.3,
        1.0,
        0.0,
    )


def test_registry_and_validation() -> None:
    policy = get_policy("persona", hasty_prob=0.2, unsafe_given_hasty=0.7, unsafe_given_careful=0)
    assert isinstance(policy, PersonaPolicy)
    assert policy.name == "persona"
    assert policy.config() == {
        "hasty_prob": 0.2,
        "unsafe_given_hasty": 0.7,
        "unsafe_given_careful": 0.0,
    }
    with pytest.raises(ValueError, match=r"unsafe_given_careful must be in \[0, 1\]"):
        PersonaPolicy(unsafe_given_careful=-0.1)
    with pytest.raises(ValueError, match="hasty_prob"):
        get_policy("persona", hasty_prob=2.0)
    with pytest.raises(ValueError, match="does not take"):
        get_policy("persona", strength=0.5)
