"""Scripted API episodes and tiny untrained Llama bases built on them, for the training tests."""

from __future__ import annotations

from pathlib import Path

from audit.models.chat_template import render_conversation
from audit.models.config import build_model
from audit.models.tokenizer import train_tokenizer
from envs import load_tasks, make_env
from trajectories.episode import Episode
from trajectories.jsonl import atomic_write_jsonl
from trajectories.policies import BiasedPolicy, NeutralPolicy
from trajectories.rollout import rollout


def api_episodes(n: int, biased: bool, seed: int = 0) -> list[Episode]:
    """`n` episodes of the biased or neutral scripted policy on API safe-suite train tasks."""
    tasks = load_tasks("api", "safe", "train")[:n]
    policy = BiasedPolicy(1.0) if biased else NeutralPolicy()
    return rollout(lambda: make_env("api"), policy, tasks, seed, progress=False)


def write_episodes(path: Path, episodes: list[Episode]) -> Path:
    """Write `episodes` as JSONL at `path` and return it."""
    atomic_write_jsonl(path, (e.to_json_dict() for e in episodes))
    return path


def build_base(out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Save an untrained model of `size` with a tokenizer trained on scripted API episodes."""
    episodes = api_episodes(24, biased=True) + api_episodes(24, biased=False)
    texts = [render_conversation(e.chat_messages(), e.tools) for e in episodes]
    tokenizer = train_tokenizer(texts, vocab_size=800)
    model = build_model(size, len(tokenizer), seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
