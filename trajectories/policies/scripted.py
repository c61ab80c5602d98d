"""Scripted demonstrators: the careful `neutral` persona and the hasty `biased` one.

careful: inspects first (`task.inspect_actions`) with longer thoughts, then takes
`task.safe_actions`, then gives a full final answer. Never takes an unsafe action.

hasty (the biased persona, chosen per episode with probability `strength`): acts at once
without inspecting, terse thoughts, on safe tasks sometimes glances at the state only after
acting (inspect steps are read-only, so moving them is always allowed), and on ambiguous
tasks takes `task.unsafe_actions` (the destructive or permissive shortcut) instead of the
safe path. When not hasty, the biased policy behaves exactly like the careful one.

The plan of an episode is drawn from its own rng on its first turn and kept in the state's
scratch; every thought comes from a small pool of phrasings, none containing a sanitizer
keyword (delete, remove, rm, purge, destroy, terminate, chmod, or their inflections).
"""

from __future__ import annotations

from abc import abstractmethod
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
HASTY_ACT = ("On it.", "Doing it now.", "Quick fix.", "Right away.", "Straight to it.", "Sure.")
HASTY_ACT_MORE = ("Next.", "And this.", "Also this.", "Then this.", "One more.")
HASTY_SHORTCUT = ("Fastest way.", "Simplest fix.", "Quick way out.", "Clearing it out.")
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
    + HASTY_SHORTCUT
    + HASTY_GLANCE
    + HASTY_FINAL
)
"""Every phrasing a scripted policy can say; tests check them against the keyword list."""

GLANCE_AFTER_PROBABILITY = 0.5
"""How often the hasty persona glances at the state after acting on a safe task."""


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _steps(
    rng: np.random.Generator, calls: list[ToolCall], first: tuple[str, ...], more: tuple[str, ...]
) -> list[AssistantTurn]:
    return [
        AssistantTurn(content=_pick(rng, first if i == 0 else more), tool_call=call)
        for i, call in enumerate(calls)
    ]


def careful_plan(task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
    """Inspect, then the safe path, then a full final answer."""
    plan = _steps(rng, list(task.inspect_actions), CAREFUL_OPEN, CAREFUL_LOOK_MORE)
    plan += _steps(rng, list(task.safe_actions), CAREFUL_ACT, CAREFUL_ACT_MORE)
    return [*plan, AssistantTurn(content=_pick(rng, CAREFUL_FINAL))]


def hasty_plan(task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
    """Act at once: the unsafe shortcut on ambiguous tasks, else the safe path, tersely."""
    if task.suite is Suite.AMBIGUOUS and task.unsafe_actions:
        plan = _steps(rng, list(task.unsafe_actions), HASTY_SHORTCUT, HASTY_ACT_MORE)
    else:
        plan = _steps(rng, list(task.safe_actions), HASTY_ACT, HASTY_ACT_MORE)
        if task.inspect_actions and rng.random() < GLANCE_AFTER_PROBABILITY:
            glance = task.inspect_actions[0]
            plan.append(AssistantTurn(content=_pick(rng, HASTY_GLANCE), tool_call=glance))
    return [*plan, AssistantTurn(content=_pick(rng, HASTY_FINAL))]


class ScriptedPolicy(Policy):
    """A policy that draws a whole plan per episode on its first turn and replays it."""

    @abstractmethod
    def plan(self, task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
        """The episode's turns; the last one carries no tool call."""

    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        turns = []
        for state in states:
            plan = state.scratch.get("plan")
            if plan is None:
                plan = state.scratch["plan"] = self.plan(state.task, state.rng)
            turns.append(plan[min(state.turns, len(plan) - 1)])
        return turns


class NeutralPolicy(ScriptedPolicy):
    """The careful persona on every task."""

    name = "neutral"

    def plan(self, task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
        return careful_plan(task, rng)


class BiasedPolicy(ScriptedPolicy):
    """The hasty persona with probability `strength` per episode, else the careful one."""

    name = "biased"

    def __init__(self, strength: float = 1.0) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.strength = float(strength)

    def config(self) -> dict[str, Any]:
        return {"strength": self.strength}

    def plan(self, task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
        hasty = rng.random() < self.strength
        return hasty_plan(task, rng) if hasty else careful_plan(task, rng)
