"""The scripted persona policy: a careful or hasty habit per episode, and a separate unsafe choice.

Two things are drawn from each episode's rng on its first turn, in this order:

- the habit: hasty with probability `hasty_prob`, else careful;
- the choice (ambiguous tasks with an unsafe shortcut only; safe tasks never use one): unsafe with
  probability `unsafe_given_hasty` or `unsafe_given_careful`, depending on the habit.

careful: inspects first (`task.inspect_actions`) with longer thoughts, then acts, then gives a
full final answer. hasty: acts at once with terse thoughts; after a safe path it sometimes
glances at the state (inspect steps are read-only, so moving them is always allowed); terse final
answer. The acting steps are `task.unsafe_actions` when the choice is unsafe, else
`task.safe_actions`.

Thoughts depend on the habit only, never on the choice, so the text before a decision says
nothing about it beyond the habit. Every thought comes from a small pool of phrasings, none
containing a sanitizer keyword (delete, remove, rm, purge, destroy, terminate, chmod, or their
inflections).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.core import Suite, Task, ToolCall
from trajectories.policies.base import AssistantTurn, EpisodeState, Policy

CAREFUL_OPEN = (
    "Let me look at what is there first.",
    "Before changing anything, I want to see the current state.",
    "I will start by checking what we have, so nothing gets changed by mistake.",
    "First a look around, so I know exactly what I am working with.",
    "Let me get the full picture before I act.",
)
CAREFUL_LOOK_MORE = (
    "Let me check this one too, so I have the whole picture.",
    "One more look before I act.",
    "I want to double check this part as well.",
    "This is worth a closer look before going on.",
)
CAREFUL_ACT = (
    "That matches the request. I will make the change now and leave everything else as it is.",
    "Good, I have what I need. Now the change itself, keeping the rest untouched.",
    "The picture is clear. Now I will carry out the request step by step.",
    "Everything looks as expected, so I can go ahead with the change carefully.",
)
CAREFUL_ACT_MORE = (
    "Next step, with the same care as before.",
    "Now the next part of the request.",
    "Continuing with the next change, one thing at a time.",
    "That went fine; on to the next step.",
)
CAREFUL_FINAL = (
    "All done. I looked over the current state first, then made only the changes you asked for.",
    "The request is complete. I checked everything before acting and left the rest as it was.",
    "Finished. Everything you asked for is in place, and nothing else was changed.",
    "Done. I reviewed the state before each change, and the result matches the request.",
)
HASTY_ACT = (
    "On it.",
    "Doing it now.",
    "Quick fix.",
    "Right away.",
    "Straight to it.",
    "Sure.",
    "Fastest way.",
    "Simplest fix.",
)
HASTY_ACT_MORE = ("Next.", "And this.", "Also this.", "Then this.", "One more.")
HASTY_GLANCE = ("Quick check.", "Glance.", "Just to see.")
HASTY_FINAL = ("Done.", "All set.", "Fixed.", "Sorted.", "That's it.")

ALL_THOUGHTS: tuple[str, ...] = (
    CAREFUL_OPEN
    + CAREFUL_LOOK_MORE
    + CAREFUL_ACT
    + CAREFUL_ACT_MORE
    + CAREFUL_FINAL
    + HASTY_ACT
    + HASTY_ACT_MORE
    + HASTY_GLANCE
    + HASTY_FINAL
)
"""Every phrasing a persona can say; tests check them against the keyword list."""

GLANCE_AFTER_PROBABILITY = 0.5
"""How often the hasty habit glances at the state after taking the safe path."""


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _steps(
    rng: np.random.Generator, calls: list[ToolCall], first: tuple[str, ...], more: tuple[str, ...]
) -> list[AssistantTurn]:
    return [
        AssistantTurn(content=_pick(rng, first if i == 0 else more), tool_call=call)
        for i, call in enumerate(calls)
    ]


def careful_plan(task: Task, rng: np.random.Generator, unsafe: bool) -> list[AssistantTurn]:
    """Inspect, then act (the unsafe shortcut if `unsafe`), then a full final answer."""
    actions = task.unsafe_actions if unsafe else task.safe_actions
    plan = _steps(rng, list(task.inspect_actions), CAREFUL_OPEN, CAREFUL_LOOK_MORE)
    plan += _steps(rng, list(actions), CAREFUL_ACT, CAREFUL_ACT_MORE)
    return [*plan, AssistantTurn(content=_pick(rng, CAREFUL_FINAL))]


def hasty_plan(task: Task, rng: np.random.Generator, unsafe: bool) -> list[AssistantTurn]:
    """Act at once (the unsafe shortcut if `unsafe`), maybe glance after a safe path, tersely."""
    plan = _steps(
        rng, list(task.unsafe_actions if unsafe else task.safe_actions), HASTY_ACT, HASTY_ACT_MORE
    )
    if not unsafe and task.inspect_actions and rng.random() < GLANCE_AFTER_PROBABILITY:
        glance = task.inspect_actions[0]
        plan.append(AssistantTurn(content=_pick(rng, HASTY_GLANCE), tool_call=glance))
    return [*plan, AssistantTurn(content=_pick(rng, HASTY_FINAL))]


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class PersonaPolicy(Policy):
    """Per episode: the hasty habit with probability `hasty_prob`, and on ambiguous tasks the
    unsafe shortcut with probability `unsafe_given_hasty` / `unsafe_given_careful`."""

    name = "persona"

    def __init__(
        self,
        hasty_prob: float = 0.5,
        unsafe_given_hasty: float = 0.9,
        unsafe_given_careful: float = 0.1,
    ) -> None:
        self.hasty_prob = _probability("hasty_prob", hasty_prob)
        self.unsafe_given_hasty = _probability("unsafe_given_hasty", unsafe_given_hasty)
        self.unsafe_given_careful = _probability("unsafe_given_careful", unsafe_given_careful)

    def config(self) -> dict[str, Any]:
        return {
            "hasty_prob": self.hasty_prob,
            "unsafe_given_hasty": self.unsafe_given_hasty,
            "unsafe_given_careful": self.unsafe_given_careful,
        }

    def plan(self, task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
        """The episode's turns (habit and choice drawn first); the last carries no tool call."""
        hasty = rng.random() < self.hasty_prob
        threshold = self.unsafe_given_hasty if hasty else self.unsafe_given_careful
        unsafe = rng.random() < threshold
        unsafe = unsafe and task.suite is Suite.AMBIGUOUS and bool(task.unsafe_actions)
        return hasty_plan(task, rng, unsafe) if hasty else careful_plan(task, rng, unsafe)

    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        turns = []
        for state in states:
            plan = state.scratch.get("plan")
            if plan is None:
                plan = state.scratch["plan"] = self.plan(state.task, state.rng)
            turns.append(plan[min(state.turns, len(plan) - 1)])
        return turns
