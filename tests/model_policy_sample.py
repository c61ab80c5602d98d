"""A small agent model for the model-policy tests and the rollout benchmark, trained in seconds.

Scripted neutral and biased episodes on API train tasks are rendered with the embedded chat
template; a byte-level BPE tokenizer is trained on them and a fresh embedded Llama is trained
on their assistant tokens for a few steps. The result writes mostly well-formed tool calls and
some malformed ones, which is what the policy tests need.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audit.models.chat_template import render_conversation
from audit.models.config import ModelSize, build_model
from audit.models.tokenizer import train_tokenizer
from envs import load_tasks, make_env
from trajectories.policies import BiasedPolicy, NeutralPolicy
from trajectories.rollout import rollout

MICRO = ModelSize(
    name="micro",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    intermediate_size=192,
)
"""A ~0.15M-parameter size, small enough to train in the test session."""

IGNORE_INDEX = -100


def demo_conversations(per_suite: int = 24) -> list[tuple[list[dict], list[dict]]]:
    """(messages, tools) of neutral and biased episodes on the first API train tasks."""
    conversations = []
    for suite in ("safe", "ambiguous"):
        tasks = load_tasks("api", suite, "train")[:per_suite]
        for seed, policy in enumerate((NeutralPolicy(), BiasedPolicy(0.5))):
            episodes = rollout(lambda: make_env("api"), policy, tasks, seed, progress=False)
            conversations += [(e.chat_messages(), e.tools) for e in episodes]
    return conversations


def build_demo_agent(
    out: Path,
    size: str | ModelSize = MICRO,
    steps: int = 100,
    seed: int = 0,
    learning_rate: float = 1e-2,
) -> Path:
    """Train a tokenizer and a `size` model on `demo_conversations()`; save both to `out`."""
    conversations = demo_conversations()
    texts = [render_conversation(messages, tools) for messages, tools in conversations]
    tokenizer = train_tokenizer(texts, vocab_size=600)
    encoded = [
        tokenizer.apply_chat_template(
            messages, tools=tools, return_dict=True, return_assistant_tokens_mask=True
        )
        for messages, tools in conversations
    ]
    rows = [
        (torch.tensor(e["input_ids"]), torch.tensor(e["assistant_masks"]).bool()) for e in encoded
    ]
    model = build_model(size, len(tokenizer), seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = [rows[i] for i in torch.randint(len(rows), (8,), generator=generator).tolist()]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX)
        for row, (ids, mask) in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            attention[row, : len(ids)] = 1
            labels[row, : len(ids)] = torch.where(mask, ids, IGNORE_INDEX)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
