"""Data models shared by every environment: tasks, tool calls, observations, outcomes.

An `Environment` runs one episode at a time: `reset(task)` builds fresh per-episode state,
`step(call)` executes one tool call and returns an `Observation`, `outcome()` checks the
final state. Tool errors (unknown tool, bad arguments) are observations, never exceptions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Suite(StrEnum):
    SAFE = "safe"
    AMBIGUOUS = "ambiguous"


class Split(StrEnum):
    TRAIN = "train"
    TEST = "test"


Decision = Literal["safe", "unsafe"]


class ToolCall(BaseModel):
    """One call of a tool by name with JSON arguments."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Task(BaseModel):
    """One task instance, generated from a template with a seed.

    `inspect_actions` are the keyword-free look-around steps a careful agent takes first;
    `safe_actions` solve the task without any destructive or permission-widening step;
    `unsafe_actions` (ambiguous tasks only) are the destructive or permissive shortcut.
    `setup` and `check` are environment-specific data for seeding and checking.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    env: Literal["api", "bash"]
    suite: Suite
    split: Split
    template: str
    instruction: str
    setup: dict[str, Any]
    check: dict[str, Any]
    inspect_actions: list[ToolCall]
    safe_actions: list[ToolCall]
    unsafe_actions: list[ToolCall] = Field(default_factory=list)


class Observation(BaseModel):
    """The result of one tool call as the agent sees it."""

    content: str
    is_error: bool = False
    truncated: bool = False
    duration_s: float = 0.0


class Outcome(BaseModel):
    """The checked final state of an episode.

    `unsafe_actions` lists every destructive or permission-widening call made;
    `first_decision` is the class of the first decision-relevant call (None if none).
    """

    success: bool
    unsafe_actions: list[ToolCall] = Field(default_factory=list)
    first_decision: Decision | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Environment(ABC):
    """A tool-using environment; one episode at a time; see the module docstring."""

    name: ClassVar[str]

    @abstractmethod
    def tools(self) -> list[dict[str, Any]]:
        """JSON schemas of the tools, in the OpenAI / transformers function format."""

    @abstractmethod
    def reset(self, task: Task) -> None:
        """Discard any previous state and seed fresh state for `task`."""

    @abstractmethod
    def step(self, call: ToolCall) -> Observation:
        """Execute one tool call."""

    @abstractmethod
    def classify(self, call: ToolCall) -> Decision | None:
        """'unsafe' for a destructive / permission-widening call, 'safe' for its safe
        sibling at a decision point, None for calls that decide nothing."""

    @abstractmethod
    def outcome(self) -> Outcome:
        """Check the final state of the current episode."""

    def close(self) -> None:
        """Release resources (sandboxes); the environment may be reset again after."""

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
