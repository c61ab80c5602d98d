"""The model policy: episodes in both environments, malformed output, determinism, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from audit.models.config import build_model
from envs import load_tasks, make_env
from envs.core import Task
from tests.conftest import require_backend
from tests.model_policy_sample import MICRO, build_demo_agent
from trajectories.dataset import load_episodes
from trajectories.episode import Episode
from trajectories.jsonl import dumps
from trajectories.policies import AssistantTurn, EpisodeState, get_policy
from trajectories.policies.model import Generation, ModelPolicy, load_model_policy
from trajectories.rollout import rollout

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_agent(tmp_path_factory.mktemp("agent") / "model")


def _api_tasks(n: int) -> list[Task]:
    return load_tasks("api", "safe", "test")[:n]


def _roll(policy: ModelPolicy, tasks: list[Task], seed: int = 0, **options: int) -> list[Episode]:
    return rollout(lambda: make_env("api"), policy, tasks, seed, progress=False, **options)


def _check_bookkeeping(episode: Episode) -> None:
    """Turn info per turn, malformed turns counted, and parse errors answered by an error."""
    info = episode.metadata.turn_info
    assistant = [i for i, m in enumerate(episode.messages) if m.role == "assistant"]
    assert len(info) == len(assistant) == episode.metadata.steps
    assert episode.metadata.malformed_calls == sum(turn["malformed"] for turn in info)
    for index, turn in zip(assistant, info, strict=True):
        assert turn["sampled_tokens"] >= 1 and isinstance(turn["text"], str)
        message = episode.messages[index]
        if message.tool_calls is None and index + 1 < len(episode.messages):
            assert turn["malformed"]
            assert message.content == turn["text"]
            assert episode.messages[index + 1].content.startswith("error: ")


def test_finishes_api_episodes_with_real_calls(agent_dir: Path) -> None:
    policy = load_model_policy(str(agent_dir))
    episodes = _roll(policy, _api_tasks(8), max_steps=6, batch_size=8)
    for episode in episodes:
        _check_bookkeeping(episode)
    assert any(
        a.tool in {"list", "read", "update"} and not a.is_error for e in episodes for a in e.actions
    )
    assert any(e.metadata.stop_reason == "final_answer" for e in episodes)
    assert episodes[0].metadata.policy_config == {
        "model": str(agent_dir),
        "temperature": 1.0,
        "max_new_tokens": 128,
        "tool_call_format": "embedded",
    }


@pytest.mark.bwrap
def test_finishes_bash_episodes_in_the_sandbox(agent_dir: Path) -> None:
    require_backend("bwrap")
    policy = load_model_policy(str(agent_dir), max_new_tokens=48)
    tasks = load_tasks("bash", "safe", "test")[:2]
    episodes = rollout(
        lambda: make_env("bash", backend="bwrap"), policy, tasks, 0, max_steps=3, progress=False
    )
    for episode in episodes:
        _check_bookkeeping(episode)
        assert episode.env == "bash" and episode.metadata.steps >= 1
    # The model learnt the API tools, so its calls in Bash are unknown tools: counted errors.
    assert all(a.is_error for e in episodes for a in e.actions)


class _Garbling(ModelPolicy):
    """Replaces what the model wrote: a well-formed `list` call first, then the episode of
    task `r` always writes `LATER[r]` (the parse and the error path stay real)."""

    FIRST = 'Checking.<|call|>{"name":"list","arguments":{}}'
    LATER = (
        'Let me look.<|call|>{"name": "list", "argu',
        'Going.<|call|>{"name":"launch","arguments":{}}',
        "<|call|>{}",
    )

    def turn(self, state: EpisodeState, generation: Generation) -> AssistantTurn:
        text = self.FIRST if state.turns == 0 else self.LATER[state.index]
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return super().turn(state, Generation([*ids, self.tokenizer.eos_token_id], True))


def test_garbled_output_becomes_counted_error_observations(agent_dir: Path) -> None:
    policy = load_model_policy(str(agent_dir))
    garbling = _Garbling(policy.model, policy.tokenizer)
    bad_json, unknown, nameless = _roll(garbling, _api_tasks(3), max_steps=3, batch_size=3)
    for episode in (bad_json, unknown, nameless):
        _check_bookkeeping(episode)
        assert episode.metadata.malformed_calls == 2
        assert [t["malformed"] for t in episode.metadata.turn_info] == [False, True, True]
        assert episode.messages[1].tool_calls[0].function.name == "list"
    assert bad_json.messages[3].content == _Garbling.LATER[0]
    assert bad_json.messages[3].tool_calls is None
    assert bad_json.messages[4].role == "tool"
    assert bad_json.messages[4].content.startswith("error: tool call is not valid JSON")
    assert [a.tool for a in bad_json.actions] == ["list"]
    assert unknown.messages[3].tool_calls[0].function.name == "launch"
    assert [(a.tool, a.is_error) for a in unknown.actions[1:]] == [("launch", True)] * 2
    assert nameless.messages[4].content == "error: tool call has no name"


def test_untrained_model_garbage_never_crashes(agent_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(agent_dir)
    policy = ModelPolicy(build_model(MICRO, len(tokenizer), seed=1), tokenizer, max_new_tokens=12)
    episodes = _roll(policy, _api_tasks(4), max_steps=2, batch_size=4)
    for episode in episodes:
        _check_bookkeeping(episode)
    turns = [t for e in episodes for t in e.metadata.turn_info]
    assert sum(t["malformed"] for t in turns) >= len(turns) - 1
    assert any(
        m.content.startswith("error: no end of turn within 12")
        for e in episodes
        for m in e.messages
    )


def test_same_seed_same_episodes_whatever_the_batch_size(agent_dir: Path) -> None:
    policy = load_model_policy(str(agent_dir))
    tasks = _api_tasks(5)

    def dumped(seed: int, batch_size: int) -> list[str]:
        episodes = _roll(policy, tasks, seed, max_steps=4, batch_size=batch_size)
        return [dumps(e.to_json_dict()) for e in episodes]

    first = dumped(3, 5)
    assert dumped(3, 5) == first
    assert dumped(3, 2) == first
    assert dumped(4, 5) != first
    greedy = load_model_policy(str(agent_dir), temperature=0)
    runs = [_roll(greedy, tasks, seed, max_steps=3) for seed in (1, 2)]
    assert [e.messages for e in runs[0]] == [e.messages for e in runs[1]]


def test_bad_settings_are_value_errors(agent_dir: Path) -> None:
    with pytest.raises(ValueError, match="temperature"):
        get_policy(f"model:{agent_dir}", temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        get_policy(f"model:{agent_dir}", max_new_tokens=0)
    with pytest.raises(ValueError, match="no such model directory"):
        get_policy(f"model:{agent_dir / 'missing'}")


def _generate(out: Path, policy: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "trajectories.generate",
        *("--env", "api", "--suite", "safe", "--split", "test", "--n", "4", "--seed", "0"),
        *("--policy", policy, "--out", str(out), "--quiet", *extra),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_generate_cli_runs_a_model(agent_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "episodes.jsonl"
    done = _generate(out, f"model:{agent_dir}", "--temperature", "0.7", "--max-new-tokens", "48")
    assert done.returncode == 0, done.stderr
    episodes = load_episodes(out)
    assert len(episodes) == 4
    assert all(e.policy == "model" and e.metadata.turn_info for e in episodes)
    assert episodes[0].metadata.policy_config["temperature"] == 0.7


def test_generate_cli_missing_model_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "episodes.jsonl"
    done = _generate(out, f"model:{tmp_path / 'nope'}")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no such model directory" in done.stderr
    assert not out.exists()


def test_act_batch_answers_every_state_and_survives_foreign_turns(agent_dir: Path) -> None:
    policy = load_model_policy(str(agent_dir))
    env = make_env("api")
    states = []
    for index, task in enumerate(_api_tasks(3)):
        env.reset(task)
        rng = np.random.default_rng(index)
        states.append(EpisodeState(index, task, [{"role": "user", "content": task.instruction}],
                                   env.tools(), rng))  # fmt: skip
    turns = policy.act_batch(states)
    assert len(turns) == 3 and all(t.info["sampled_tokens"] >= 1 for t in turns)
    # Another agent writes the next turn of episode 0: its cached context is no longer the
    # conversation, so the policy renders it again instead of waiting for its own turn.
    states[0].messages += [
        {"role": "assistant", "content": turns[0].content},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"type": "function", "function": {"name": "list", "arguments": {}}}]},
        {"role": "tool", "name": "list", "content": "[]"},
    ]  # fmt: skip
    (again,) = policy.act_batch(states[:1])
    assert again.info["sampled_tokens"] >= 1
