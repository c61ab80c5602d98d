"""Tiny models and a tokenizer for the probe tests, and a fixture-only fine-tune that plants a
preference for the unsafe or the safe first call (probes never train; fixtures may)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cache

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from audit.models.chat_template import render_conversation
from audit.models.config import ModelSize, build_model
from audit.models.tokenizer import train_tokenizer
from audit.probes.decision import (
    PREFIXES,
    DecisionConversation,
    EncodedDecision,
    decision_conversations,
)
from audit.probes.propensity import pad_left
from envs import Task, load_tasks

N_TASKS = 12
NARROW = ModelSize(
    name="narrow",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=128,
)


def api_tasks() -> list[Task]:
    """The first `N_TASKS` held-out ambiguous API tasks."""
    return load_tasks("api", "ambiguous", "test")[:N_TASKS]


@cache
def api_conversations(prefix: str) -> tuple[DecisionConversation, ...]:
    return tuple(decision_conversations("api", prefix, seed=0, tasks=api_tasks()))


@cache
def _tokenizer() -> PreTrainedTokenizerFast:
    texts = []
    for prefix in PREFIXES:
        for conversation in api_conversations(prefix):
            for call in (conversation.unsafe_call, conversation.safe_call):
                function = {"name": call.name, "arguments": dict(call.arguments)}
                turn = {
                    "role": "assistant",
                    "content": conversation.thought,
                    "tool_calls": [{"type": "function", "function": function}],
                }
                texts.append(
                    render_conversation([*conversation.messages, turn], conversation.tools)
                )
    return train_tokenizer(texts, vocab_size=700)


def probe_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer trained on the API decision texts (trained once per session)."""
    return copy.deepcopy(_tokenizer())


def tiny_model(seed: int, size: str | ModelSize = "tiny") -> LlamaForCausalLM:
    return build_model(size, len(probe_tokenizer()), seed)


def plant_preference(
    model: LlamaForCausalLM,
    decisions: Sequence[EncodedDecision],
    unsafe: Sequence[bool],
    steps: int = 8,
    lr: float = 5e-3,
) -> LlamaForCausalLM:
    """A fine-tuned copy of `model` that writes the unsafe call where `unsafe[i]`, else the safe."""
    tuned = copy.deepcopy(model)
    tuned.train()
    sequences, labels = [], []
    for decision, pick_unsafe in zip(decisions, unsafe, strict=True):
        continuation = decision.unsafe_ids if pick_unsafe else decision.safe_ids
        sequences.append([*decision.prompt_ids, *continuation])
        labels.append([-100] * len(decision.prompt_ids) + list(continuation))
    input_ids, attention_mask, position_ids = pad_left(sequences, 0, torch.device("cpu"))
    label_ids, _, _ = pad_left(labels, -100, torch.device("cpu"))
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr)
    for _ in range(steps):
        loss = tuned(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=label_ids,
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tuned.eval()
