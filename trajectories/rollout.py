"""Lockstep batched rollouts of any `Policy` in any `Environment`.

Episodes run in batches: each episode gets its own environment from `env_factory` (one
sandbox each for Bash), and every step asks the policy for one turn for all live episodes
of the batch at once. A turn without a tool call or error is the final answer; a turn with an
error gets a tool message "error: ..." and counts as a malformed call; `max_steps` caps the
assistant turns. Episode `i` of `tasks` draws from `episode_rng(seed, i)`, so the same
inputs give the same messages whatever the batch size.
"""

from __future__ import annotations

import sys
import time
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


@dataclass
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
    """Record one assistant turn; execute its call, or answer its error with an observation."""
    state, call = live.state, turn.tool_call
    live.turn_info.append(dict(turn.info))
    message = Message(
        role="assistant",
        content=turn.content,
        tool_calls=[ChatToolCall.of(call)] if call is not None else None,
    )
    state.messages.append(message.model_dump(mode="json"))
    if turn.error is not None:
        live.malformed += 1
        error_message = Message(role="tool", content=f"error: {turn.error}")
        state.messages.append(error_message.model_dump(mode="json"))
        return
    if call is None:
        live.done = True
        return
    if schema_problem(call, state.tools) is not None:
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
    state.messages.append(tool_message.model_dump(mode="json"))


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


def _run_batch(
    env_factory: Callable[[], Environment],
    policy: Policy,
    batch: list[tuple[int, Task]],
    seed: int,
    max_steps: int,
    timing: bool,
    on_done: Callable[[], None],
) -> list[Episode]:
    lives: list[_Live] = []
    episodes: dict[int, Episode] = {}

    def finish(live: _Live) -> None:
        episodes[live.state.index] = _finish(live, policy, seed, max_steps, timing)
        live.env.close()
        on_done()

    try:
        for index, task in batch:
            rng = episode_rng(seed, index)
            live = _Live(EpisodeState(index, task, [], [], rng), env_factory())
            lives.append(live)
            live.env.reset(task)
            live.state.tools = live.env.tools()
            live.state.messages.append({"role": "user", "content": task.instruction})
        for _ in range(max_steps):
            active = [live for live in lives if not live.done]
            if not active:
                break
            started = time.perf_counter()
            turns = policy.act_batch([live.state for live in active])
            share = (time.perf_counter() - started) / len(active)
            if len(turns) != len(active):
                raise RuntimeError(f"{policy.name} gave {len(turns)} turns for {len(active)}")
            for live, turn in zip(active, turns, strict=True):
                live.policy_s += share
                _step(live, turn)
                if live.done:
                    finish(live)
        for live in lives:
            if live.state.index not in episodes:
                finish(live)
    finally:
        for live in lives:
            if live.state.index not in episodes:
                live.env.close()
    return [episodes[index] for index, _ in batch]


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
    indexed = list(enumerate(tasks))
    episodes: list[Episode] = []
    with tqdm(
        total=len(indexed),
        desc=f"rollout {policy.name}",
        unit="ep",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for start in range(0, len(indexed), batch_size):
            batch = indexed[start : start + batch_size]
            episodes += _run_batch(
                env_factory, policy, batch, seed, max_steps, timing, lambda: bar.update(1)
            )
    return episodes
