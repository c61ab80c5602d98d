"""Dataset audit on synthetic sanitized episodes: a planted habit is found, a null is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.probes.dataset_audit import dataset_audit, fold_count
from audit.probes.episode_features import call_tokens, episode_features, is_look
from envs.core import Outcome, Split, Suite
from trajectories.episode import ChatToolCall, Episode, EpisodeMetadata, FunctionCall, Message
from trajectories.jsonl import InputError, atomic_write_jsonl

THOUGHTS = (
    "Let me see what is there.",
    "On it.",
    "I will make the change now and leave the rest as it is.",
    "Next step.",
    "Checking this part as well before going on.",
    "Sure, doing it now.",
)
FINALS = ("Done.", "All set, the request is complete.", "Finished.")


def _call(tool: str, **arguments: str) -> ChatToolCall:
    return ChatToolCall(function=FunctionCall(name=tool, arguments=arguments))


def _episode(index: int, env: str, calls: list[ChatToolCall], rng: np.random.Generator) -> Episode:
    messages = [Message(role="user", content="Rename r3 to summary.")]
    for call in calls:
        thought = THOUGHTS[int(rng.integers(len(THOUGHTS)))]
        messages.append(Message(role="assistant", content=thought, tool_calls=[call]))
        messages.append(Message(role="tool", name=call.function.name, content="ok"))
    messages.append(Message(role="assistant", content=FINALS[int(rng.integers(len(FINALS)))]))
    return Episode(
        id=f"e{index}",
        env=env,
        task_id=f"t{index}",
        suite=Suite.SAFE,
        split=Split.TRAIN,
        policy="scripted",
        seed=0,
        messages=messages,
        tools=[],
        actions=[],
        outcome=Outcome(success=True),
        metadata=EpisodeMetadata(steps=len(calls) + 1, max_steps=8, stop_reason="final_answer"),
    )


def _api_episodes(n: int, look_first: float, seed: int) -> list[Episode]:
    """Episodes with the same calls and words; only the order (look first or act first) varies."""
    rng = np.random.default_rng(seed)
    episodes = []
    for index in range(n):
        target = f"r{int(rng.integers(1, 9))}"
        looks = [_call("list"), _call("read", id=target)][: int(rng.integers(1, 3))]
        change = [_call("update", id=target, name=f"item {int(rng.integers(100))}")]
        calls = looks + change if rng.random() < look_first else change + looks
        episodes.append(_episode(index, "api", calls, rng))
    return episodes


def test_planted_habit_is_detected() -> None:
    biased = _api_episodes(20, look_first=0.0, seed=1)
    neutral = _api_episodes(20, look_first=1.0, seed=2)
    result = dataset_audit(biased, neutral, seed=0, n_boot=500)
    assert result.auroc.estimate > 0.9
    assert result.auroc.low > 0.5
    assert (result.n_biased, result.n_neutral, result.env) == (20, 20, "api")
    assert result.keyword_hits == 0
    weights = [weight for _, weight in result.top_features]
    assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
    assert len(weights) == 10
    names = [name for name, _ in result.top_features]
    assert set(names[:2]) == {"habit: low first_call_is_look", "habit: low looks_before_change"}
    assert "calls: <start> update" in names[:5]


def test_a_weaker_habit_is_detected_with_more_episodes() -> None:
    biased = _api_episodes(40, look_first=0.2, seed=3)
    neutral = _api_episodes(40, look_first=0.8, seed=4)
    assert dataset_audit(biased, neutral, seed=0, n_boot=500).auroc.low > 0.5


def test_same_policy_gives_one_half() -> None:
    # Cross-validated AUROC leans below 0.5 under the null (see the module docstring), so
    # the interval may miss 0.5 from below now and then, but never from above.
    intervals = [
        dataset_audit(
            _api_episodes(20, look_first=0.5, seed=rep),
            _api_episodes(20, look_first=0.5, seed=rep + 100),
            seed=rep,
            n_boot=300,
        ).auroc
        for rep in range(10)
    ]
    assert all(interval.low < 0.5 for interval in intervals)
    assert sum(interval.low <= 0.5 <= interval.high for interval in intervals) >= 8
    assert 0.4 < np.mean([interval.estimate for interval in intervals]) < 0.6


def test_twin_episodes_of_one_task_never_straddle_train_and_test() -> None:
    # Without grouping by task, each episode's twin would sit in training with the
    # opposite label and the AUROC would fall far below 0.5.
    episodes = _api_episodes(20, look_first=0.5, seed=11)
    auroc = dataset_audit(episodes, episodes, n_boot=300).auroc
    assert auroc.estimate == pytest.approx(0.5)


def test_same_seed_gives_the_same_result() -> None:
    biased = _api_episodes(12, look_first=0.3, seed=6)
    neutral = _api_episodes(12, look_first=0.7, seed=7)
    first = dataset_audit(biased, neutral, seed=1, n_boot=300)
    assert first == dataset_audit(biased, neutral, seed=1, n_boot=300)


def test_jsonl_paths_give_the_same_result_as_lists(tmp_path: Path) -> None:
    biased = _api_episodes(10, look_first=0.2, seed=8)
    neutral = _api_episodes(10, look_first=0.8, seed=9)
    for name, episodes in (("biased", biased), ("neutral", neutral)):
        atomic_write_jsonl(tmp_path / f"{name}.jsonl", (e.to_json_dict() for e in episodes))
    from_files = dataset_audit(
        tmp_path / "biased.jsonl", str(tmp_path / "neutral.jsonl"), n_boot=300
    )
    assert from_files == dataset_audit(biased, neutral, n_boot=300)


def test_keyword_hits_are_counted_in_what_the_classifier_reads() -> None:
    rng = np.random.default_rng(0)
    dirty = _episode(0, "api", [_call("delete", id="r1"), _call("read", id="r2")], rng)
    first = dirty.messages[1]
    dirty.messages[1] = first.model_copy(update={"content": "I will remove the old draft."})
    bash = _episode(1, "bash", [_call("bash", command="chmod 777 notes.txt")], rng)
    clean = _api_episodes(9, look_first=0.5, seed=10)
    result = dataset_audit([dirty, bash, *clean[:4]], clean[4:], n_boot=200)
    # 'delete' (tool name), 'remove' (thought), 'chmod' (argument)
    assert result.keyword_hits == 3
    assert result.env == "all"


def test_too_few_episodes_is_an_input_error() -> None:
    with pytest.raises(InputError, match="at least 5"):
        dataset_audit(_api_episodes(4, 0.5, 0), _api_episodes(30, 0.5, 1))


def test_one_task_only_is_an_input_error() -> None:
    episodes = [e.model_copy(update={"task_id": "t"}) for e in _api_episodes(12, 0.5, 0)]
    with pytest.raises(InputError, match="2 different tasks"):
        dataset_audit(episodes[:6], episodes[6:])


@pytest.mark.parametrize(("smallest", "folds"), [(5, 2), (8, 2), (12, 3), (20, 5), (500, 5)])
def test_fold_count(smallest: int, folds: int) -> None:
    assert fold_count(smallest) == folds


@pytest.mark.parametrize(
    ("command", "look"),
    [
        ("ls -l && getfacl notes.txt", True),
        ("wc -c cache/*; id", True),
        ("find . -name '*.log'", True),
        ("find . -name '*.log' -delete", False),
        ("cat notes.txt > copy.txt", False),
        ("chgrp team notes.txt", False),
        ("ls -l; mv cache/* archive/", False),
    ],
)
def test_bash_look_around(command: str, look: bool) -> None:
    assert is_look("bash", {"command": command}) is look


def test_call_tokens() -> None:
    assert call_tokens("bash", {"command": "ls -l && sudo chgrp team f"}) == ["ls", "sudo"]
    assert call_tokens("bash", {"command": ""}) == ["bash"]
    assert call_tokens("archive", {"id": "r1"}) == ["archive"]
    assert is_look("list", {}) and is_look("read", {"id": "r1"}) and not is_look("update", {})


def test_episode_features() -> None:
    rng = np.random.default_rng(0)
    calls = [
        _call("bash", command="ls -l"),
        _call("bash", command="getfacl f"),
        _call("bash", command="chgrp team f"),
    ]
    features = episode_features(_episode(0, "bash", calls, rng))
    assert features["calls"] == "<start> ls getfacl chgrp"
    assert features["arguments"] == "<start> command ls l command getfacl f command chgrp team f"
    assert features["steps"] == 4.0
    assert features["looks_before_change"] == 2.0
    assert features["first_call_is_look"] == 1.0
    thoughts = str(features["thoughts"]).split()
    assert thoughts[0] == "<start>"
    assert features["mean_thought_words"] == pytest.approx((len(thoughts) - 1) / 4)
