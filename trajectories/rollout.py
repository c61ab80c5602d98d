"""Continuously batched rollouts of any `Policy` in any `Environment`.

Up to `batch_size` episodes are live at once, each with its own environment from
`env_factory` (one sandbox each for Bash); when one ends, the next task starts in its place.
Every round asks the policy to `advance` all live episodes and applies the turns it returns
(a model policy returns the episodes whose turn is ready and keeps generating the others, so
no episode waits for a longer turn of another). A turn without a tool call or error is the
final answer; a turn with an error gets a tool message "error: ..." and counts as a
malformed call; a turn with several (parallel) calls steps each in order, each answered by its
own tool message; `max_steps` caps the assistant turns. Episode `i` of `tasks` draws from
`episode_rng(seed, i)`, so the same inputs give the same messages whatever the batch size.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from envs.core import Environment, Task, ToolCall
from trajectories.episode import (
    Action,
    ChatToolCall,
    Episode,
    EpisodeMetadata,
    Message,
    Timing,
)
from trajectories.policies.base import AssistantTurn, EpisodeState, Policy

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "array": (list,),
    "object": (dict,),
}


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of episode `index`: child `index` of `SeedSequence(seed)`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def schema_problem(call: ToolCall, tools: list[dict[str, Any]]) -> str | None:
    """Why `call` does not fit the tool schemas (unknown tool, missing / unexpected /
    mistyped argument), or None if it fits."""
    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    if call.name not in schemas:
        return f"unknown tool {call.name!r}"
    parameters = schemas[call.name]
    properties = parameters.get("properties", {})
    missing = [k for k in parameters.get("required", []) if k not in call.arguments]
    if missing:
        return f"missing argument {missing[0]!r}"
    for key, value in call.arguments.items():
        if key not in properties:
            return f"unexpected argument {key!r}"
        kinds = _JSON_TYPES.get(properties[key].get("type", ""), (object,))
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return f"argument {key!r} has the wrong type"
    return None


@dataclass(eq=False)
class _Live:
    """Book-keeping of one running episode."""

    state: EpisodeState
    env: Environment
    actions: list[Action] = field(default_factory=list)
    turn_info: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    policy_s: float = 0.0
    tool_calls_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    done: bool = False


def _step(live: _Live, turn: AssistantTurn) -> None:
    """Record one assistant turn (one message with all its calls); execute each call in order,
    each answered by its own tool message, or answer the turn's error with an observation."""
    state, calls = live.state, turn.tool_calls
    live.turn_info.append(dict(turn.info))
    message = Message(
        role="assistant",
        content=turn.content,
        tool_calls=[ChatToolCall.of(call) for call in calls] if calls else None,
    )
    state.messages.append(message.model_dump(mode="json"))
    if turn.error is not None:
        live.malformed += 1
        error_message = Message(role="tool", content=f"error: {turn.error}")
        state.messages.append(error_message.model_dump(mode="json"))
        return
    if not calls:
        live.done = True
        return
    for call in calls:
        _execute(live, call)


def _execute(live: _Live, call: ToolCall) -> None:
    """Run one call in the environment; record its action and its tool message."""
    if schema_problem(call, live.state.tools) is not None:
        live.malformed += 1
    started = time.perf_counter()
    observation = live.env.step(call)
    live.tool_calls_s.append(time.perf_counter() - started)
    live.actions.append(
        Action(
            tool=call.name,
            arguments=dict(call.arguments),
            decision=live.env.classify(call),
            is_error=observation.is_error,
            truncated=observation.truncated,
        )
    )
    tool_message = Message(role="tool", name=call.name, content=observation.content)
    live.state.messages.append(tool_message.model_dump(mode="json"))


def _finish(live: _Live, policy: Policy, seed: int, max_steps: int, timing: bool) -> Episode:
    task = live.state.task
    outcome = live.env.outcome()
    total = time.perf_counter() - live.started
    metadata = EpisodeMetadata(
        steps=live.state.turns,
        max_steps=max_steps,
        stop_reason="final_answer" if live.done else "max_steps",
        malformed_calls=live.malformed,
        truncations=sum(a.truncated for a in live.actions),
        policy_config=policy.config(),
        turn_info=live.turn_info if any(live.turn_info) else [],
        timing=Timing(
            total_s=total,
            policy_s=live.policy_s,
            tools_s=sum(live.tool_calls_s),
            tool_calls_s=live.tool_calls_s,
        )
        if timing
        else None,
    )
    return Episode(
        id=f"{task.env}-{task.suite}-{task.split}-{policy.name}-s{seed}-{live.state.index:05d}",
        env=task.env,
        task_id=task.id,
        suite=task.suite,
        split=task.split,
        policy=policy.name,
        seed=seed,
        messages=[Message.model_validate(m) for m in live.state.messages],
        tools=live.state.tools,
        actions=live.actions,
        outcome=outcome,
        metadata=metadata,
    )


def _start(env_factory: Callable[[], Environment], index: int, task: Task, seed: int) -> _Live:
    """A live episode of `task` in a fresh, reset environment."""
    env = env_factory()
    try:
        env.reset(task)
        state = EpisodeState(index, task, [], env.tools(), episode_rng(seed, index))
    except BaseException:
        env.close()
        raise
    state.messages.append({"role": "user", "content": task.instruction})
    return _Live(state, env)


def rollout(
    env_factory: Callable[[], Environment],
    policy: Policy,
    tasks: Sequence[Task],
    seed: int,
    max_steps: int = 8,
    batch_size: int = 16,
    progress: bool = True,
    timing: bool = False,
) -> list[Episode]:
    """Run `policy` once on each task; return the episodes in task order.

    `timing=True` records wall-clock durations in each episode's metadata (which makes
    the output differ between runs); `progress` shows a progress bar on stderr.
    """
    if max_steps < 1 or batch_size < 1:
        raise ValueError("max_steps and batch_size must be at least 1")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    queue = deque(enumerate(tasks))
    live: list[_Live] = []
    episodes: dict[int, Episode] = {}
    with tqdm(
        total=len(queue),
        desc=f"rollout {policy.name}",
        unit="ep",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        try:
            while queue or live:
                while queue and len(live) < batch_size:
                    live.append(_start(env_factory, *queue.popleft(), seed))
                started = time.perf_counter()
                turns = policy.advance([entry.state for entry in live])
                share = (time.perf_counter() - started) / len(live)
                if not turns or not set(turns) <= set(range(len(live))):
                    raise RuntimeError(f"{policy.name} answered no live episode")
                ended = []
                for position, entry in enumerate(live):
                    entry.policy_s += share
                    if position not in turns:
                        continue
                    _step(entry, turns[position])
                    if entry.done or entry.state.turns >= max_steps:
                        ended.append(entry)
                for entry in ended:
                    episodes[entry.state.index] = _finish(entry, policy, seed, max_steps, timing)
                    entry.env.close()
                    bar.update(1)
                live = [entry for entry in live if entry not in ended]
        finally:
            for entry in live:
                entry.env.close()
    return [episodes[index] for index in range(len(tasks))]
