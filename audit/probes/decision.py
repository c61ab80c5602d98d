"""Decision points of held-out ambiguous tasks: the prompt up to the first decision, and the
unsafe and safe first calls as the assistant would write them.

A decision conversation is the chat up to the first decision-relevant call of a task, under one
of three prefixes:

- ``task``: the user's instruction only; the assistant turn starts with the call itself.
- ``careful``: the task's `inspect_actions` run in a fresh episode of the environment (real
  observations; Bash runs in a sandbox), each with a careful persona's thought, then a careful
  thought before acting (the pools of `trajectories.policies.persona`).
- ``hasty``: the instruction, then a terse thought (the hasty act pool; persona thoughts depend
  on the habit only, never on the unsafe / safe choice).

The pools are those of the persona's `thoughts` knob (`trajectories.policies.persona
.thought_pools`): the fixed phrases by default; an audit with `--habit grammar` uses the thought
grammar's teacher pool ("grammar-teacher"), so that a prefix reads like the teacher's own habit.
The careful prefix runs every inspect step in order under either pool.

The decision point is cut from the decision turn exactly as the model's chat template renders
it. The prompt is the conversation rendered with its generation prompt, then what the template
writes before the thought (Qwen3: an empty think block; gpt-oss: the analysis channel header),
then the thought; the continuations are the rest of the turn for each call (for the embedded
template: `render_tool_call(...)` then `<|end|>`). A template that drops the thought next to a
call (Llama 3) gives a prompt that ends at the generation prompt, recorded as
`thought_rendered=False`. Encoding checks that prompt + each continuation tokenizes whole to the
same prompt tokens followed by that continuation's tokens, so teacher forcing scores exactly the
rendered text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile
from typing import Any, Literal

import numpy as np
from transformers import PreTrainedTokenizerBase

from envs import Environment, Task, ToolCall, load_tasks, make_env
from trajectories.policies.persona import thought_pools
from trajectories.rollout import episode_rng

Prefix = Literal["task", "careful", "hasty"]
PREFIXES: tuple[Prefix, ...] = ("task", "careful", "hasty")
MARK = "DECISION-POINT-MARK"
"""A stand-in thought that shows where (and whether) a chat template renders the thought."""


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

    `prompt` is the rendered text up to the decision point: the generation prompt, what the
    template writes before the thought, and the thought; `unsafe` and `safe` are the rest of the
    assistant turn for each call. `thought_rendered` is False when the template drops the
    (non-empty) thought next to a call; the prompt then ends at the generation prompt. The
    `*_ids` are their tokens: `unsafe_ids` and `safe_ids` are what follows `prompt_ids` when
    prompt + continuation is tokenized whole. `prompt_ids` are the prompt's own tokens when
    those are a prefix of both wholes, else the wholes' common tokens before the decision point
    (a tokenizer that merges the prompt's trailing blank lines only when they end the text);
    where a token of the wholes spans the decision point, the cut moves back to that token's
    start and its text opens both continuations (shared, so the log-odds are unchanged).
    """

    conversation: DecisionConversation
    prompt: str
    unsafe: str
    safe: str
    prompt_ids: list[int]
    unsafe_ids: list[int]
    safe_ids: list[int]
    thought_rendered: bool


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _chat_call(call: ToolCall) -> dict[str, Any]:
    return {"type": "function", "function": {"name": call.name, "arguments": dict(call.arguments)}}


def _inspection(
    env: Environment, task: Task, rng: np.random.Generator, pools: dict[str, tuple[str, ...]]
) -> list[dict[str, Any]]:
    """The careful persona's inspection turns with the environment's real observations."""
    messages: list[dict[str, Any]] = []
    env.reset(task)
    try:
        for i, call in enumerate(task.inspect_actions):
            thought = _pick(rng, pools["careful_open" if i == 0 else "careful_look_more"])
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
    thoughts: str = "phrases",
) -> list[DecisionConversation]:
    """Decision conversations of `tasks` (default: the held-out ambiguous suite of `env_name`).

    Task `i` draws its thoughts from `episode_rng(seed, i)`, from the pools of the persona's
    `thoughts` knob. `sandbox_backend` is the Bash sandbox that runs the ``careful`` prefix's
    inspection.
    """
    if prefix not in PREFIXES:
        raise ValueError(f"unknown prefix {prefix!r}; choose from {', '.join(PREFIXES)}")
    pools = thought_pools(thoughts)
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
            messages += _inspection(env, task, rng, pools)
            thought = _pick(rng, pools["careful_act"])
        elif prefix == "hasty":
            thought = _pick(rng, pools["hasty_act"])
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


def generation_prompt(
    tokenizer: PreTrainedTokenizerBase, conversation: DecisionConversation
) -> str:
    """The conversation rendered with its generation prompt: where the assistant's turn starts."""
    return _render(tokenizer, conversation.messages, conversation.tools, True)


def _turn(thought: str, call: ToolCall) -> dict[str, Any]:
    return {"role": "assistant", "content": thought, "tool_calls": [_chat_call(call)]}


def _rest(
    tokenizer: PreTrainedTokenizerBase,
    conversation: DecisionConversation,
    head: str,
    turn: dict[str, Any],
) -> str:
    """The conversation rendered with `turn`, after `head` (its render with generation prompt)."""
    full = _render(tokenizer, [*conversation.messages, turn], conversation.tools, False)
    if not full.startswith(head):
        raise ValueError(
            f"task {conversation.task_id}: the chat template does not render the assistant turn "
            "after its generation prompt, so no decision point can be cut from it"
        )
    return full[len(head) :]


def _split(
    tokenizer: PreTrainedTokenizerBase, conversation: DecisionConversation
) -> tuple[str, str, str, bool]:
    """(prompt, unsafe, safe, thought_rendered): the decision turn cut at the decision point.

    A turn whose thought is `MARK` shows what the template writes before a thought (Qwen3: an
    empty think block; gpt-oss: an analysis channel header) or that it drops the thought next
    to a call (Llama 3). The rest of the turn with each call must follow the same prompt.
    """
    calls = (conversation.unsafe_call, conversation.safe_call)
    head = _render(tokenizer, conversation.messages, conversation.tools, True)
    marked = _rest(tokenizer, conversation, head, _turn(MARK, calls[0]))
    rests = [
        _rest(tokenizer, conversation, head, _turn(conversation.thought, call)) for call in calls
    ]
    before = marked[: marked.index(MARK)] if MARK in marked else None
    rendered = before is not None or not conversation.thought
    if before is None:
        bare = [_rest(tokenizer, conversation, head, _turn("", call)) for call in calls]
        if rests != bare:
            raise ValueError(
                f"task {conversation.task_id}: the chat template drops a marker thought next to "
                "a call but not this thought, so the decision point is ambiguous"
            )
        cut = ""
    elif conversation.thought or all(rest.startswith(before) for rest in rests):
        cut = before + conversation.thought
    else:
        cut = ""
    if not all(rest.startswith(cut) and len(rest) > len(cut) for rest in rests):
        raise ValueError(
            f"task {conversation.task_id}: the chat template does not render the decision turn "
            "as one prompt (generation prompt, template text, thought) followed by each call"
        )
    unsafe, safe = (rest[len(cut) :] for rest in rests)
    if unsafe == safe:
        raise ValueError(f"task {conversation.task_id}: the unsafe and safe calls render the same")
    return head + cut, unsafe, safe, rendered


def _tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _tokens_before(tokenizer: PreTrainedTokenizerBase, prompt: str, text: str) -> tuple[int, int]:
    """(n, end): the first n tokens of prompt + text end within the prompt, the last at `end`;
    (0, 0) when the next token starts before `end` (a character split between tokens)."""
    whole = tokenizer(prompt + text, add_special_tokens=False, return_offsets_mapping=True)
    spans = whole["offset_mapping"]
    n = len(list(takewhile(lambda span: span[1] <= len(prompt), spans)))
    end = spans[n - 1][1] if n else 0
    return (n, end) if n < len(spans) and spans[n][0] >= end else (0, 0)


def _token_cut(
    tokenizer: PreTrainedTokenizerBase, task_id: str, prompt: str, continuations: list[str]
) -> tuple[str, list[str], list[int], list[list[int]]]:
    """(prompt, continuations, prompt_ids, continuation_ids) cut where the tokens of each
    prompt + continuation part (see `EncodedDecision`)."""
    own = _tokens(tokenizer, prompt)
    wholes = [_tokens(tokenizer, prompt + text) for text in continuations]
    if all(whole[: len(own)] == own and len(whole) > len(own) for whole in wholes):
        return prompt, continuations, own, [whole[len(own) :] for whole in wholes]
    cuts = {(0, 0)}  # a slow tokenizer has no offsets to cut by
    if tokenizer.is_fast:
        cuts = {_tokens_before(tokenizer, prompt, text) for text in continuations}
    n, end = min(cuts)
    if len(cuts) > 1 or n == 0 or wholes[0][:n] != wholes[1][:n]:
        raise ValueError(
            f"task {task_id}: the tokens of prompt + continuation do not part at one place "
            "for both calls, so their log-probabilities would not be exact"
        )
    texts = [prompt[end:] + text for text in continuations]
    return prompt[:end], texts, wholes[0][:n], [whole[n:] for whole in wholes]


def encode_decision(
    conversation: DecisionConversation, tokenizer: PreTrainedTokenizerBase
) -> EncodedDecision:
    """Render `conversation` with the tokenizer's chat template and tokenize it (see the class)."""
    prompt, unsafe, safe, thought_rendered = _split(tokenizer, conversation)
    prompt, (unsafe, safe), prompt_ids, (unsafe_ids, safe_ids) = _token_cut(
        tokenizer, conversation.task_id, prompt, [unsafe, safe]
    )
    return EncodedDecision(
        conversation, prompt, unsafe, safe, prompt_ids, unsafe_ids, safe_ids, thought_rendered
    )


def encode_decisions(
    conversations: Sequence[DecisionConversation], tokenizer: PreTrainedTokenizerBase
) -> list[EncodedDecision]:
    """`encode_decision` of each conversation, in order."""
    return [encode_decision(conversation, tokenizer) for conversation in conversations]
