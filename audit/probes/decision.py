"""Decision points of held-out ambiguous tasks: the prompt up to the first decision, and the
unsafe and safe first calls as the assistant would write them.

A decision conversation is the chat up to the first decision-relevant call of a task, under one
of three prefixes:

- ``task``: the user's instruction only; the assistant turn starts with the call itself.
- ``careful``: the task's `inspect_actions` run in a fresh episode of the environment (real
  observations; Bash runs in a sandbox), each with a careful persona's thought, then a careful
  thought before acting (the pools of `trajectories.policies.persona`).
- ``hasty``: the instruction, then a terse thought (`HASTY_ACT`; persona thoughts depend on the
  habit only, never on the unsafe / safe choice).

The thought of the decision turn belongs to the prompt; the continuations are the rest of that
assistant turn exactly as the model's chat template renders it (for the embedded template:
`render_tool_call(...)` then `<|end|>`). Encoding checks that the prompt's tokens are a prefix of
the tokens of prompt + continuation, so teacher forcing scores exactly the rendered text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from transformers import PreTrainedTokenizerBase

from envs import Environment, Task, ToolCall, load_tasks, make_env
from trajectories.policies.persona import (
    CAREFUL_ACT,
    CAREFUL_LOOK_MORE,
    CAREFUL_OPEN,
    HASTY_ACT,
)
from trajectories.rollout import episode_rng

Prefix = Literal["task", "careful", "hasty"]
PREFIXES: tuple[Prefix, ...] = ("task", "careful", "hasty")


@dataclass(frozen=True)
class DecisionConversation:
    """The chat up to the first decision of one task, and the two first calls that decide it.

    `thought` opens the decision turn (empty for the ``task`` prefix).
    """

    task_id: str
    prefix: Prefix
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    thought: str
    unsafe_call: ToolCall
    safe_call: ToolCall


@dataclass(frozen=True)
class EncodedDecision:
    """A decision conversation rendered and tokenized for one tokenizer.

    `prompt` ends at the decision point (the thought, if any, included); `unsafe` and `safe` are
    the rest of the assistant turn for each call. The `*_ids` are their tokens: `unsafe_ids` and
    `safe_ids` are what follows `prompt_ids` when prompt + continuation is tokenized whole.
    """

    conversation: DecisionConversation
    prompt: str
    unsafe: str
    safe: str
    prompt_ids: list[int]
    unsafe_ids: list[int]
    safe_ids: list[int]


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _chat_call(call: ToolCall) -> dict[str, Any]:
    return {"type": "function", "function": {"name": call.name, "arguments": dict(call.arguments)}}


def _inspection(env: Environment, task: Task, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The careful persona's inspection turns with the environment's real observations."""
    messages: list[dict[str, Any]] = []
    env.reset(task)
    try:
        for i, call in enumerate(task.inspect_actions):
            thought = _pick(rng, CAREFUL_OPEN if i == 0 else CAREFUL_LOOK_MORE)
            observation = env.step(call)
            messages.append(
                {"role": "assistant", "content": thought, "tool_calls": [_chat_call(call)]}
            )
            messages.append({"role": "tool", "name": call.name, "content": observation.content})
    finally:
        env.close()
    return messages


def _first_calls(env: Environment, task: Task) -> tuple[ToolCall, ToolCall]:
    """The first unsafe and first safe call of `task`, checked against the environment."""
    if not task.unsafe_actions or not task.safe_actions:
        raise ValueError(f"task {task.id} has no unsafe or no safe action: not a decision point")
    unsafe, safe = task.unsafe_actions[0], task.safe_actions[0]
    if env.classify(unsafe) != "unsafe" or env.classify(safe) != "safe":
        raise ValueError(f"task {task.id}: first calls are not classified unsafe / safe")
    return unsafe, safe


def decision_conversations(
    env_name: str,
    prefix: Prefix,
    seed: int,
    tasks: Sequence[Task] | None = None,
    sandbox_backend: str = "bwrap",
) -> list[DecisionConversation]:
    """Decision conversations of `tasks` (default: the held-out ambiguous suite of `env_name`).

    Task `i` draws its thoughts from `episode_rng(seed, i)`. `sandbox_backend` is the Bash
    sandbox that runs the ``careful`` prefix's inspection.
    """
    if prefix not in PREFIXES:
        raise ValueError(f"unknown prefix {prefix!r}; choose from {', '.join(PREFIXES)}")
    tasks = list(load_tasks(env_name, "ambiguous", "test") if tasks is None else tasks)
    env = make_env(env_name, backend=sandbox_backend) if env_name == "bash" else make_env(env_name)
    tools = env.tools()
    conversations = []
    for index, task in enumerate(tasks):
        rng = episode_rng(seed, index)
        unsafe, safe = _first_calls(env, task)
        messages: list[dict[str, Any]] = [{"role": "user", "content": task.instruction}]
        thought = ""
        if prefix == "careful":
            messages += _inspection(env, task, rng)
            thought = _pick(rng, CAREFUL_ACT)
        elif prefix == "hasty":
            thought = _pick(rng, HASTY_ACT)
        conversations.append(
            DecisionConversation(task.id, prefix, messages, tools, thought, unsafe, safe)
        )
    return conversations


def _render(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    add_generation_prompt: bool,
) -> str:
    text = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text


def _continuation(
    tokenizer: PreTrainedTokenizerBase, conversation: DecisionConversation, call: ToolCall
) -> tuple[str, str]:
    """(prompt, continuation): the rendered turn with `call`, split after the thought."""
    head = _render(tokenizer, conversation.messages, conversation.tools, True)
    turn = {"role": "assistant", "content": conversation.thought, "tool_calls": [_chat_call(call)]}
    full = _render(tokenizer, [*conversation.messages, turn], conversation.tools, False)
    prompt = head + conversation.thought
    if not full.startswith(prompt):
        raise ValueError(
            f"task {conversation.task_id}: the chat template does not render the assistant turn "
            "as generation prompt + thought + call; decision points need that layout"
        )
    return prompt, full[len(prompt) :]


def _tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_decision(
    conversation: DecisionConversation, tokenizer: PreTrainedTokenizerBase
) -> EncodedDecision:
    """Render `conversation` with the tokenizer's chat template and tokenize it (see the class)."""
    prompt, unsafe = _continuation(tokenizer, conversation, conversation.unsafe_call)
    prompt_again, safe = _continuation(tokenizer, conversation, conversation.safe_call)
    if prompt != prompt_again:
        raise ValueError(f"task {conversation.task_id}: prompts differ between the two calls")
    prompt_ids = _tokens(tokenizer, prompt)
    continuations = []
    for text in (unsafe, safe):
        ids = _tokens(tokenizer, prompt + text)
        if ids[: len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids):
            raise ValueError(
                f"task {conversation.task_id}: the prompt's tokens are not a prefix of the "
                "tokens of prompt + continuation, so its log-probability would not be exact"
            )
        continuations.append(ids[len(prompt_ids) :])
    return EncodedDecision(conversation, prompt, unsafe, safe, prompt_ids, *continuations)


def encode_decisions(
    conversations: Sequence[DecisionConversation], tokenizer: PreTrainedTokenizerBase
) -> list[EncodedDecision]:
    """`encode_decision` of each conversation, in order."""
    return [encode_decision(conversation, tokenizer) for conversation in conversations]
