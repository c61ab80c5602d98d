"""The Bash environment in real sandboxes: every template solved, shortcuts detected, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envs import load_tasks, make_env
from envs.bash.env import BashEnvironment
from envs.core import Outcome, Suite, Task, ToolCall
from envs.sandbox import SandboxLimits
from tests.test_bash_tasks import KEYWORD

PERMISSION_TEMPLATES = {"share-readable", "run-script", "shared-dir", "user-readable"}


def _variants() -> list[Task]:
    """Per template, one test instance for each distinct first word of its safe command."""
    chosen: dict[tuple[str, str], Task] = {}
    for suite in Suite:
        for task in load_tasks("bash", suite, "test"):
            verb = task.safe_actions[0].arguments["command"].split()[0]
            chosen.setdefault((task.template, verb), task)
    return list(chosen.values())


VARIANTS = _variants()


def _first_per_verb(tasks: list[Task]) -> list[Task]:
    chosen: dict[str, Task] = {}
    for task in tasks:
        chosen.setdefault(task.safe_actions[0].arguments["command"].split()[0], task)
    return list(chosen.values())


DOCKER_VARIANTS = _first_per_verb(VARIANTS)
"""Docker episodes cost ~0.4 s: there, the first variant of each distinct safe-command verb."""


@pytest.fixture
def env(backend: str) -> Iterator[BashEnvironment]:
    """A Bash environment on each backend (the `backend` fixture skips unavailable ones)."""
    environment = make_env("bash", backend=backend)
    assert isinstance(environment, BashEnvironment)
    with environment:
        yield environment


def _play(env: BashEnvironment, calls: list[ToolCall]) -> tuple[list[str], Outcome]:
    observations = []
    for call in calls:
        observation = env.step(call)
        assert not observation.is_error, (call, observation.content)
        observations.append(observation.content)
    return observations, env.outcome()


def test_every_template_variant_is_solved_by_its_safe_actions(env: BashEnvironment) -> None:
    assert len({task.template for task in VARIANTS}) == 15
    for task in DOCKER_VARIANTS if env.backend == "docker" else VARIANTS:
        env.reset(task)
        assert not env.outcome().success, f"{task.id} already solved before acting"
        observations, outcome = _play(env, task.inspect_actions + task.safe_actions)
        assert outcome.success, (task.id, outcome.details)
        assert outcome.unsafe_actions == []
        expected = "safe" if env.classify(task.safe_actions[0]) == "safe" else None
        assert outcome.first_decision == expected
        if task.suite == Suite.SAFE:
            assert not any(KEYWORD.search(text) for text in observations), observations
        if task.template in PERMISSION_TEMPLATES:
            assert outcome.details["world_readable"] is False
        if task.template == "cache-space":
            assert outcome.details["preserved"] == outcome.details["preserve_total"] > 0


def test_shortcuts_succeed_and_are_flagged_unsafe(env: BashEnvironment) -> None:
    ambiguous = [task for task in VARIANTS if task.suite == Suite.AMBIGUOUS]
    for template in sorted({task.template for task in ambiguous}):
        task = next(task for task in ambiguous if task.template == template)
        env.reset(task)
        _, outcome = _play(env, task.inspect_actions + task.unsafe_actions)
        assert outcome.success, (task.id, outcome.details)
        assert outcome.first_decision == "unsafe"
        assert outcome.unsafe_actions == task.unsafe_actions
        if template in PERMISSION_TEMPLATES:
            assert outcome.details["world_readable"] is True
        else:
            assert outcome.details["preserved"] == 0


def test_bad_calls_flags_and_episode_isolation(backend: str) -> None:
    limits = SandboxLimits(output_bytes=1000)
    task = load_tasks("bash", "ambiguous", "train")[0]
    with BashEnvironment(backend=backend, limits=limits, command_timeout=0.5) as env:
        env.reset(task)
        bad = [
            ToolCall(name="python", arguments={"command": "chmod 777 x"}),
            ToolCall(name="bash", arguments={"command": "touch marker", "extra": 1}),
            ToolCall(name="bash", arguments={"command": "   "}),
            ToolCall(name="bash", arguments={}),
        ]
        for call in bad:
            observation = env.step(call)
            assert observation.is_error and observation.content.startswith("error:")
            assert ("unknown tool" in observation.content) is (call.name == "python")
        assert (
            "[exit 3]" in env.step(ToolCall(name="bash", arguments={"command": "exit 3"})).content
        )
        slow = env.step(ToolCall(name="bash", arguments={"command": "sleep 5"}))
        assert slow.is_error and slow.content.endswith("[timed out]")
        long = env.step(ToolCall(name="bash", arguments={"command": "seq 100000"}))
        assert long.truncated and long.content.endswith("[output truncated]")
        assert env.step(ToolCall(name="bash", arguments={"command": "ls marker"})).is_error
        env.step(ToolCall(name="bash", arguments={"command": "touch marker"}))
        outcome = env.outcome()
        assert outcome.unsafe_actions == [] and outcome.first_decision is None
        env.reset(task)
        assert env.step(ToolCall(name="bash", arguments={"command": "ls marker"})).is_error
    with pytest.raises(RuntimeError):
        env.step(ToolCall(name="bash", arguments={"command": "ls"}))


def test_inspect_observations_are_reproducible(backend: str) -> None:
    task = next(t for t in load_tasks("bash", "safe", "train") if t.template == "acl-read-group")
    seen = []
    with BashEnvironment(backend=backend) as env:
        for _ in range(2):
            env.reset(task)
            seen.append([env.step(call).content for call in task.inspect_actions])
    assert seen[0] == seen[1]
    assert "2024" in seen[0][0]
