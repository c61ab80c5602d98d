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
nothing about it beyond the habit. None contains a sanitizer keyword (delete, remove, rm, purge,
destroy, terminate, chmod, or their inflections). Where they come from is the `thoughts` knob:

- "phrases" (the default): a small fixed pool per slot (`PHRASES`, about 40 strings), the
  pool the embedded bases are pretrained on (`audit.models.corpus`); careful inspects with
  every `task.inspect_actions` in order.
- "grammar-teacher" / "grammar-pretrain": a pool of `trajectories.policies.thought_grammar`
  (hundreds to thousands of sentences per slot; the two pools share none, and neither shares
  one with `PHRASES`), and the habits differ in structure too: careful takes 1 to all of the
  inspect steps before acting (`careful_looks`: the count uniform, the first step kept first,
  the read-only rest in an rng-chosen order); hasty still acts first (0 looks).

With the default every draw is what it always was, so existing episodes, corpora and stage
keys are unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.core import Suite, Task, ToolCall
from trajectories.policies.base import AssistantTurn, EpisodeState, Policy
from trajectories.policies.thought_grammar import pools

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

PHRASES: dict[str, tuple[str, ...]] = {
    "careful_open": CAREFUL_OPEN,
    "careful_look_more": CAREFUL_LOOK_MORE,
    "careful_act": CAREFUL_ACT,
    "careful_act_more": CAREFUL_ACT_MORE,
    "careful_final": CAREFUL_FINAL,
    "hasty_act": HASTY_ACT,
    "hasty_act_more": HASTY_ACT_MORE,
    "hasty_glance": HASTY_GLANCE,
    "hasty_final": HASTY_FINAL,
}
"""The fixed phrase pool of each thought slot (`thought_grammar.SLOTS`)."""

ALL_THOUGHTS: tuple[str, ...] = tuple(p for pool in PHRASES.values() for p in pool)
"""Every fixed phrasing a persona can say; tests check them against the keyword list."""

THOUGHTS: tuple[str, ...] = ("phrases", "grammar-teacher", "grammar-pretrain")
"""Values of the `thoughts` knob: the fixed phrases, or a pool of the thought grammar."""

GLANCE_AFTER_PROBABILITY = 0.5
"""How often the hasty habit glances at the state after taking the safe path."""


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def thought_pools(thoughts: str) -> dict[str, tuple[str, ...]]:
    """The sentences each slot draws from under the `thoughts` knob (see the module doc)."""
    if thoughts not in THOUGHTS:
        raise ValueError(f"thoughts must be one of {', '.join(THOUGHTS)}, got {thoughts!r}")
    return PHRASES if thoughts == "phrases" else pools(thoughts.removeprefix("grammar-"))


def careful_looks(task: Task, rng: np.random.Generator) -> list[ToolCall]:
    """The grammar habit's looks before acting: 1 to all of `task.inspect_actions` (uniform
    count), the first (the look-around that shows what is there: API `list`, Bash `ls`) kept
    first, the other read-only steps in an rng-chosen order; none if the task has none."""
    inspect = list(task.inspect_actions)
    if not inspect:
        return []
    count = int(rng.integers(1, len(inspect) + 1))
    order = rng.permutation(len(inspect) - 1)[: count - 1]
    return [inspect[0], *(inspect[1 + int(i)] for i in order)]


def _steps(
    rng: np.random.Generator, calls: list[ToolCall], first: tuple[str, ...], more: tuple[str, ...]
) -> list[AssistantTurn]:
    return [
        AssistantTurn(content=_pick(rng, first if i == 0 else more), tool_call=call)
        for i, call in enumerate(calls)
    ]


def careful_plan(
    task: Task, rng: np.random.Generator, unsafe: bool, thoughts: str = "phrases"
) -> list[AssistantTurn]:
    """Inspect (every step, or `careful_looks` in grammar mode), then act (the unsafe shortcut
    if `unsafe`), then a full final answer."""
    pool = thought_pools(thoughts)
    looks = list(task.inspect_actions) if thoughts == "phrases" else careful_looks(task, rng)
    actions = task.unsafe_actions if unsafe else task.safe_actions
    plan = _steps(rng, looks, pool["careful_open"], pool["careful_look_more"])
    plan += _steps(rng, list(actions), pool["careful_act"], pool["careful_act_more"])
    return [*plan, AssistantTurn(content=_pick(rng, pool["careful_final"]))]


def hasty_plan(
    task: Task, rng: np.random.Generator, unsafe: bool, thoughts: str = "phrases"
) -> list[AssistantTurn]:
    """Act at once (the unsafe shortcut if `unsafe`), maybe glance after a safe path, tersely."""
    pool = thought_pools(thoughts)
    actions = task.unsafe_actions if unsafe else task.safe_actions
    plan = _steps(rng, list(actions), pool["hasty_act"], pool["hasty_act_more"])
    if not unsafe and task.inspect_actions and rng.random() < GLANCE_AFTER_PROBABILITY:
        glance = task.inspect_actions[0]
        plan.append(AssistantTurn(content=_pick(rng, pool["hasty_glance"]), tool_call=glance))
    return [*plan, AssistantTurn(content=_pick(rng, pool["hasty_final"]))]


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class PersonaPolicy(Policy):
    """Per episode: the hasty habit with probability `hasty_prob`, and on ambiguous tasks the
    unsafe shortcut with probability `unsafe_given_hasty` / `unsafe_given_careful`; `thoughts`
    picks the thought pools and the habits' structure (module doc)."""

    name = "persona"

    def __init__(
        self,
        hasty_prob: float = 0.5,
        unsafe_given_hasty: float = 0.9,
        unsafe_given_careful: float = 0.1,
        thoughts: str = "phrases",
    ) -> None:
        thought_pools(thoughts)
        self.thoughts = thoughts
        self.hasty_prob = _probability("hasty_prob", hasty_prob)
        self.unsafe_given_hasty = _probability("unsafe_given_hasty", unsafe_given_hasty)
        self.unsafe_given_careful = _probability("unsafe_given_careful", unsafe_given_careful)

    def config(self) -> dict[str, Any]:
        return {
            "hasty_prob": self.hasty_prob,
            "unsafe_given_hasty": self.unsafe_given_hasty,
            "unsafe_given_careful": self.unsafe_given_careful,
            **self.thoughts_config(),
        }

    def thoughts_config(self) -> dict[str, str]:
        """`{"thoughts": ...}` where not the default, so default configs stay what they were."""
        return {} if self.thoughts == "phrases" else {"thoughts": self.thoughts}

    def plan(self, task: Task, rng: np.random.Generator) -> list[AssistantTurn]:
        """The episode's turns (habit and choice drawn first); the last carries no tool call."""
        hasty = rng.random() < self.hasty_prob
        threshold = self.unsafe_given_hasty if hasty else self.unsafe_given_careful
        unsafe = rng.random() < threshold
        unsafe = unsafe and task.suite is Suite.AMBIGUOUS and bool(task.unsafe_actions)
        plan = hasty_plan if hasty else careful_plan
        return plan(task, rng, unsafe, self.thoughts)

    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        turns = []
        for state in states:
            plan = state.scratch.get("plan")
            if plan is None:
                plan = state.scratch["plan"] = self.plan(state.task, state.rng)
            turns.append(plan[min(state.turns, len(plan) - 1)])
        return turns
