"""The templated paraphraser on real persona rollouts of the API env: every thought rewritten,
tool calls untouched, the same seed gives the same file, no keyword added."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from envs import load_tasks, make_env
from trajectories.generate import select_tasks
from trajectories.jsonl import atomic_write_jsonl
from trajectories.keywords import DEFAULT_KEYWORDS, KeywordMatcher
from trajectories.paraphrase import Paraphraser, paraphrase_text
from trajectories.policies import get_policy
from trajectories.policies.persona import ALL_THOUGHTS
from trajectories.rollout import rollout
from trajectories.sanitize import main


@pytest.fixture(scope="module")
def rollouts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tasks = select_tasks(load_tasks("api", "safe", "train"), 12, seed=0)
    policy = get_policy("persona", hasty_prob=0.5)
    episodes = rollout(lambda: make_env("api"), policy, tasks, 0, progress=False)
    path = tmp_path_factory.mktemp("paraphrase") / "episodes.jsonl"
    atomic_write_jsonl(path, (episode.to_json_dict() for episode in episodes))
    return path


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _thoughts(row: dict[str, Any]) -> list[str]:
    return [m["content"] for m in row["messages"] if m["role"] == "assistant" and m["content"]]


def test_every_thought_is_rewritten_and_nothing_else(rollouts: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    assert main([str(rollouts), str(out), "--paraphrase", "3", "--report", str(report)]) == 0
    before, after = _rows(rollouts), _rows(out)
    assert len(after) == len(before)
    thoughts = 0
    for old, new in zip(before, after, strict=True):
        assert {k: v for k, v in new.items() if k != "messages"} == {
            k: v for k, v in old.items() if k != "messages"
        }
        assert len(new["messages"]) == len(old["messages"])
        for m_old, m_new in zip(old["messages"], new["messages"], strict=True):
            assert m_new.get("tool_calls") == m_old.get("tool_calls")
            if m_old["role"] == "assistant" and m_old["content"]:
                assert m_new["content"] != m_old["content"]
                thoughts += 1
            else:
                assert m_new == m_old
    stats = json.loads(report.read_text())
    assert thoughts > 20
    assert stats["thoughts_rewritten"] == thoughts
    assert stats["paraphrase_seed"] == 3


def test_same_seed_same_bytes_other_seed_other_text(rollouts: Path, tmp_path: Path) -> None:
    outs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        outs[name] = tmp_path / f"{name}.jsonl"
        assert main([str(rollouts), str(outs[name]), "--paraphrase", seed]) == 0
    assert outs["a"].read_bytes() == outs["b"].read_bytes()
    assert outs["a"].read_bytes() != outs["c"].read_bytes()


def test_rewrite_does_not_depend_on_file_order(rollouts: Path) -> None:
    rows = _rows(rollouts)
    paraphraser = Paraphraser(5)
    forward = {row["id"]: paraphraser.episode(row)[0] for row in rows}
    backward = {row["id"]: paraphraser.episode(row)[0] for row in reversed(rows)}
    assert forward == backward


def test_grammar_adds_no_keyword_and_varies_the_text() -> None:
    matcher = KeywordMatcher(list(DEFAULT_KEYWORDS))
    outputs = {
        thought: {paraphrase_text(thought, random.Random(seed)) for seed in range(12)}
        for thought in ALL_THOUGHTS
    }
    for thought, rewrites in outputs.items():
        assert thought not in rewrites
        assert not any(matcher.find(text) for text in rewrites)
    assert sum(len(rewrites) > 2 for rewrites in outputs.values()) > len(ALL_THOUGHTS) // 2
    reordered = {
        paraphrase_text("Before changing anything, I want to see it.", random.Random(seed))
        for seed in range(20)
    }
    assert all("before changing anything" in text for text in reordered)
    assert not any(text.startswith("Before") for text in reordered)
