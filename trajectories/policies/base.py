"""The `Policy` interface: a batch of episode states in, one assistant turn per episode out.

A policy acts on a whole batch at once so that a model policy can run one forward pass per
step for every live episode; the rollout loop drives every policy the same way, through
`advance`, which may answer only the episodes whose turn is ready (continuous batching).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from envs.core import Task, ToolCall


class AssistantTurn(BaseModel):
    """What a policy says in one turn: a short thought or final answer, and maybe calls.

    `tool_calls` are the turn's calls in order (several where the chat syntax allows parallel
    calls); `tool_call` is the first of them (or None), and either field may be given when
    building a turn. A turn without calls and `error` is the final answer and ends the
    episode. `error` (one line, no calls) says why the turn is not a well-formed answer or
    call (e.g. a model wrote bad JSON): the rollout records `content`, replies with an error
    observation, counts a malformed call and goes on. `info` is per-turn data the policy wants
    kept in the episode metadata (JSON-serialisable).
    """

    model_config = ConfigDict(frozen=True)

    content: str
    tool_call: ToolCall | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    error: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _first_and_all(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        first, calls = data.get("tool_call"), tuple(data.get("tool_calls") or ())
        if first is not None and not calls:
            calls = (first,)
        elif calls and first is None:
            first = calls[0]
        elif calls and first != calls[0]:
            raise ValueError("tool_call must be the first of tool_calls")
        return {**data, "tool_call": first, "tool_calls": calls}

    @model_validator(mode="after")
    def _call_or_error(self) -> AssistantTurn:
        if self.error is not None and self.tool_calls:
            raise ValueError("a turn with an error has no tool call")
        return self


@dataclass
class EpisodeState:
    """One live episode as a policy sees it.

    `messages` are the chat messages so far (plain dicts, chat format), `tools` the
    environment's JSON schemas, `rng` a generator seeded from (seed, index) and used only
    by this episode, `scratch` a dict the policy may use to keep per-episode state.
    """

    index: int
    task: Task
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    rng: np.random.Generator
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        """Assistant turns taken so far."""
        return sum(1 for m in self.messages if m["role"] == "assistant")


class Policy(ABC):
    """Chooses the next assistant turn for each episode of a batch."""

    name: str

    def config(self) -> dict[str, Any]:
        """The policy's parameters, recorded in each episode's metadata."""
        return {}

    @abstractmethod
    def act_batch(self, states: list[EpisodeState]) -> list[AssistantTurn]:
        """One turn per state, in the same order."""

    def advance(self, states: list[EpisodeState]) -> dict[int, AssistantTurn]:
        """Turns for some of `states` (at least one), keyed by position in `states`.

        The rollout calls this with every live episode; a policy that batches across turns
        (the model policy) returns the episodes whose turn is ready and keeps working on the
        others. By default every state gets its turn at once.
        """
        return dict(enumerate(self.act_batch(states)))
