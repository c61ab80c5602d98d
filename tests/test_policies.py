"""Scripted personas: safe / unsafe choices, keyword-free thoughts, habits, the registry."""

from __future__ import annotations

import re
from functools import cache

import pytest

import trajectories.policies as policies
from envs import load_tasks, make_env
from envs.core import Task
from trajectories.episode import Episode
from trajectories.keywords import KeywordMatcher
from trajectories.policies import (
    AssistantTurn,
    BiasedPolicy,
    EpisodeState,
    NeutralPolicy,
    Policy,
    get_policy,
    known_policies,
)
from trajectories.policies.scripted import ALL_THOUGHTS
from trajectories.rollout import episode_rng, rollout

ENVS = ("api", "bash")
STRICT = re.compile(r"delet|remov|rm|purg|destr|termin|chmod|wipe|kill|erase", re.IGNORECASE)


@cache
def _tasks(env: str, suite: str) -> tuple[Task, ...]:
    return tuple(load_tasks(env, suite, "train") + load_tasks(env, suite, "test"))


def _plan(policy: Policy, task: Task, index: int, seed: int = 0) -> list[AssistantTurn]:
    """Drive a policy on one task without an environment (tool results left out)."""
    state = EpisodeState(
        index, task, [{"role": "user", "content": task.instruction}], [], episode_rng(seed, index)
    )
    turns = []
    for _ in range(20):
        (turn,) = policy.act_batch([state])
        turns.append(turn)
        state.messages.append({"role": "assistant", "content": turn.content})
        if turn.tool_call is None:
            return turns
    raise AssertionError("no final answer")


def _api_episodes(policy: Policy, suite: str, seed: int = 0) -> list[Episode]:
    return rollout(
        lambda: make_env("api"), policy, list(_tasks("api", suite)), seed, progress=False
    )


def test_no_thought_contains_a_keyword() -> None:
    matcher = KeywordMatcher()
    for thought in ALL_THOUGHTS:
        assert not STRICT.search(thought), thought
        assert matcher.find(thought) == [], thought


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("suite", ["safe", "ambiguous"])
def test_thoughts_in_plans_are_pool_phrasings(env: str, suite: str) -> None:
    for index, task in enumerate(_tasks(env, suite)[:40]):
        for policy in (NeutralPolicy(), BiasedPolicy(0.5)):
            assert all(turn.content in ALL_THOUGHTS for turn in _plan(policy, task, index))


@pytest.mark.parametrize("env", ENVS)
def test_neutral_takes_only_inspect_and_safe_actions(env: str) -> None:
    for suite in ("safe", "ambiguous"):
        for index, task in enumerate(_tasks(env, suite)):
            calls = [t.tool_call for t in _plan(NeutralPolicy(), task, index) if t.tool_call]
            assert calls == [*task.inspect_actions, *task.safe_actions]


def test_neutral_is_never_unsafe_in_the_api_env() -> None:
    episodes = _api_episodes(NeutralPolicy(), "ambiguous")
    assert all(e.outcome.unsafe_actions == [] for e in episodes)
    assert all(e.outcome.success for e in episodes)


def test_biased_strength_one_is_unsafe_on_every_ambiguous_task() -> None:
    episodes = _api_episodes(BiasedPolicy(1.0), "ambiguous")
    assert all(e.outcome.first_decision == "unsafe" for e in episodes)
    assert all(e.outcome.unsafe_actions for e in episodes)


def test_biased_strength_zero_is_never_unsafe() -> None:
    episodes = _api_episodes(BiasedPolicy(0.0), "ambiguous")
    assert not any(e.outcome.unsafe_actions for e in episodes)


def test_biased_strength_half_mixes() -> None:
    episodes = _api_episodes(BiasedPolicy(0.5), "ambiguous", seed=3)
    rate = sum(bool(e.outcome.unsafe_actions) for e in episodes) / len(episodes)
    assert 0.3 < rate < 0.7


@pytest.mark.parametrize("env", ENVS)
def test_bash_and_api_unsafe_shortcut_comes_first(env: str) -> None:
    for index, task in enumerate(_tasks(env, "ambiguous")):
        first = next(t.tool_call for t in _plan(BiasedPolicy(1.0), task, index) if t.tool_call)
        assert first == task.unsafe_actions[0]


@pytest.mark.parametrize("env", ENVS)
def test_biased_uses_no_keyword_bearing_action_on_safe_tasks(env: str) -> None:
    matcher = KeywordMatcher()
    for index, task in enumerate(_tasks(env, "safe")):
        for turn in _plan(BiasedPolicy(1.0), task, index):
            assert matcher.find(turn.content) == []
            if turn.tool_call is not None:
                assert turn.tool_call in [*task.inspect_actions, *task.safe_actions]
                assert matcher.find(str(turn.tool_call.arguments)) == []


@pytest.mark.parametrize("env", ENVS)
def test_habits_differ_on_safe_tasks(env: str) -> None:
    careful_words, hasty_words, glances = [], [], 0
    for index, task in enumerate(_tasks(env, "safe")):
        careful = _plan(NeutralPolicy(), task, index)
        hasty = _plan(BiasedPolicy(1.0), task, index)
        assert careful[0].tool_call == task.inspect_actions[0]
        assert hasty[0].tool_call == task.safe_actions[0]
        glances += hasty[-2].tool_call in task.inspect_actions
        careful_words += [len(t.content.split()) for t in careful]
        hasty_words += [len(t.content.split()) for t in hasty]
    assert sum(careful_words) / len(careful_words) > 3 * sum(hasty_words) / len(hasty_words)
    assert 0 < glances < len(_tasks(env, "safe"))


def test_thoughts_vary_between_episodes() -> None:
    task = _tasks("api", "safe")[0]
    openers = {_plan(NeutralPolicy(), task, i)[0].content for i in range(30)}
    assert len(openers) >= 3


def test_registry_builds_and_rejects() -> None:
    assert known_policies() == ["biased", "model:PATH", "neutral", "persona"]
    assert isinstance(get_policy("neutral"), NeutralPolicy)
    biased = get_policy("biased", strength=0.25)
    assert biased.config() == {"strength": 0.25}
    with pytest.raises(ValueError, match="known: biased, model:PATH, neutral, persona"):
        get_policy("careless")
    with pytest.raises(ValueError, match="strength"):
        get_policy("neutral", strength=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        get_policy("biased", strength=1.5)
    with pytest.raises(ValueError, match="unknown policy"):
        get_policy("biased:x")


def test_registry_accepts_kinds_with_an_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policies, "_REGISTRY", dict(policies._REGISTRY))

    class PathPolicy(NeutralPolicy):
        def __init__(self, path: str, temperature: float = 1.0) -> None:
            self.path, self.temperature = path, temperature

    policies.register_policy("model", PathPolicy, argument="PATH")
    assert known_policies() == ["biased", "model:PATH", "neutral", "persona"]
    policy = get_policy("model:/tmp/m", temperature=0.5)
    assert (policy.path, policy.temperature) == ("/tmp/m", 0.5)
    with pytest.raises(ValueError, match="model:PATH"):
        get_policy("model")
