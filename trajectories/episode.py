"""The `Episode` record: one rollout of a policy on one task, as saved in JSONL.

`messages` follow the transformers / TRL tool-calling chat format: user and assistant turns
with `content`, assistant tool calls as `tool_calls: [{"type": "function", "function":
{"name", "arguments"}}]` (arguments a dict), tool results as `{"role": "tool", "name",
"content"}`. There is no system message; `tools` carries the environment's JSON schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from envs.core import Decision, Outcome, Split, Suite, ToolCall

SCHEMA_VERSION = 1


class FunctionCall(BaseModel):
    """The function part of a tool call in chat format."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ChatToolCall(BaseModel):
    """One entry of an assistant message's `tool_calls`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionCall

    @classmethod
    def of(cls, call: ToolCall) -> ChatToolCall:
        """The chat-format form of an environment tool call."""
        return cls(function=FunctionCall(name=call.name, arguments=dict(call.arguments)))


class Message(BaseModel):
    """One chat message; `tool_calls` only on assistant turns, `name` only on tool turns."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "tool"]
    content: str
    tool_calls: list[ChatToolCall] | None = None
    name: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key in ("tool_calls", "name"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Action(BaseModel):
    """One executed tool call with the environment's verdict on it."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    decision: Decision | None = None
    is_error: bool = False
    truncated: bool = False


class Timing(BaseModel):
    """Wall-clock seconds spent in an episode; recorded only on request (not reproducible)."""

    model_config = ConfigDict(extra="forbid")

    total_s: float
    policy_s: float
    tools_s: float
    tool_calls_s: list[float]


class EpisodeMetadata(BaseModel):
    """How the episode ran.

    `stop_reason` is "final_answer" when the policy answered without a tool call and
    "max_steps" when the step limit cut it off. `malformed_calls` counts calls naming an
    unknown tool or with arguments that do not fit the tool's schema, and turns the policy
    could not parse (answered by a tool message "error: ..."). `policy_config` holds
    the policy's parameters; `turn_info` holds per-turn data a policy chose to report
    (e.g. which tokens a model sampled and which were forced), one entry per assistant turn,
    and is empty when the policy reported nothing. `sanitized` is set by the keyword
    sanitizer's redact mode (e.g. {"redacted_hits": 3}).
    """

    model_config = ConfigDict(extra="forbid")

    steps: int
    max_steps: int
    stop_reason: Literal["final_answer", "max_steps"]
    malformed_calls: int = 0
    truncations: int = 0
    policy_config: dict[str, Any] = Field(default_factory=dict)
    turn_info: list[dict[str, Any]] = Field(default_factory=list)
    timing: Timing | None = None
    sanitized: dict[str, int] | None = None


class Episode(BaseModel):
    """One episode of a policy on a task; see the module docstring for the message format."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    env: Literal["api", "bash"]
    task_id: str
    suite: Suite
    split: Split
    policy: str
    seed: int
    messages: list[Message]
    tools: list[dict[str, Any]]
    actions: list[Action]
    outcome: Outcome
    metadata: EpisodeMetadata

    def to_json_dict(self) -> dict[str, Any]:
        """The plain JSON form written to JSONL."""
        return self.model_dump(mode="json")

    def chat_messages(self) -> list[dict[str, Any]]:
        """The messages as plain dicts, ready for `apply_chat_template`."""
        return [m.model_dump(mode="json") for m in self.messages]
