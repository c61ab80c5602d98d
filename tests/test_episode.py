"""The Episode record: chat format, JSON round trip, schema strictness."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from envs import load_tasks, make_env
from envs.core import Outcome, Split, Suite
from trajectories.episode import SCHEMA_VERSION, Action, Episode, EpisodeMetadata, Message
from trajectories.jsonl import dumps
from trajectories.policies import get_policy
from trajectories.rollout import rollout


def _episodes() -> list[Episode]:
    tasks = load_tasks("api", "ambiguous", "train")[:4]
    return rollout(
        lambda: make_env("api"), get_policy("biased", strength=0.5), tasks, 7, progress=False
    )


def _minimal(**changes: object) -> dict:
    episode = Episode(
        id="e0",
        env="api",
        task_id="t0",
        suite=Suite.SAFE,
        split=Split.TRAIN,
        policy="neutral",
        seed=0,
        messages=[
            Message(role="user", content="Tag r1."),
            Message(role="assistant", content="Done."),
        ],
        tools=[],
        actions=[],
        outcome=Outcome(success=True),
        metadata=EpisodeMetadata(steps=1, max_steps=8, stop_reason="final_answer"),
    ).to_json_dict()
    episode.update(changes)
    return episode


def test_round_trip_is_lossless_and_canonical() -> None:
    for episode in _episodes():
        text = dumps(episode.to_json_dict())
        again = Episode.model_validate(json.loads(text))
        assert again == episode
        assert dumps(again.to_json_dict()) == text


def test_messages_use_the_tool_calling_chat_format() -> None:
    episode = _episodes()[0]
    messages = episode.chat_messages()
    assert messages[0] == {"role": "user", "content": messages[0]["content"]}
    assistant = messages[1]
    assert assistant["role"] == "assistant"
    assert set(assistant) == {"role", "content", "tool_calls"}
    call = assistant["tool_calls"][0]
    assert call["type"] == "function"
    assert isinstance(call["function"]["arguments"], dict)
    tool = messages[2]
    assert tool == {"role": "tool", "name": call["function"]["name"], "content": tool["content"]}
    assert messages[-1].keys() == {"role", "content"}
    assert episode.schema_version == SCHEMA_VERSION


def test_actions_carry_the_decision_of_each_call() -> None:
    for episode in _episodes():
        unsafe = [a for a in episode.actions if a.decision == "unsafe"]
        assert len(unsafe) == len(episode.outcome.unsafe_actions)
        assert all(isinstance(a, Action) for a in episode.actions)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"env": "web"}, "env"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_schema_rejects_bad_records(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Episode.model_validate(_minimal(**change))
    assert field in str(err.value)


def test_minimal_record_validates() -> None:
    episode = Episode.model_validate(_minimal())
    assert episode.metadata.timing is None
    assert episode.chat_messages()[1] == {"role": "assistant", "content": "Done."}
