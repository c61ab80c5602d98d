"""Identity metadata (policy, model path, seed, seed-carrying ids) changes nothing a
classifier or trainer sees: it is stripped, and the dataset audit scores identically."""

from __future__ import annotations

import json

from audit.probes.dataset_audit import dataset_audit
from tests.test_dataset_audit import _api_episodes
from trajectories.dataset import to_dataset
from trajectories.episode import Episode
from trajectories.identity import strip_identity

MODEL_PATH = "/teams/acme/teacher-biased-v3"


def _plant(episode: Episode, seed: int) -> Episode:
    """The episode as the biased teacher's rollout would carry it: who made it, and how."""
    metadata = episode.metadata.model_copy(
        update={"policy_config": {"model": MODEL_PATH}, "turn_info": [{"sampled": 3}]}
    )
    return episode.model_copy(
        update={
            "id": f"s{seed}-{episode.id}",
            "policy": "teacher-biased",
            "seed": seed,
            "metadata": metadata,
        }
    )


def test_stripped_episode_keeps_behaviour_and_loses_identity():
    episode = _api_episodes(1, look_first=0.5, seed=3)[0]
    stripped = strip_identity(_plant(episode, 1_000_000))
    text = stripped.model_dump_json()
    for planted in (MODEL_PATH, "teacher-biased", "1000000", "sampled"):
        assert planted not in text
    assert stripped.messages == episode.messages and stripped.outcome == episode.outcome
    assert stripped.metadata.steps == episode.metadata.steps
    assert stripped.id == strip_identity(episode).id


def test_planted_identity_changes_nothing_in_the_dataset_audit():
    biased = _api_episodes(20, look_first=0.5, seed=1)
    neutral = _api_episodes(20, look_first=0.5, seed=2)
    plain = dataset_audit(biased, neutral, seed=0, n_boot=300)
    planted = dataset_audit([_plant(e, 1_000_000) for e in biased], neutral, seed=0, n_boot=300)
    assert planted.auroc == plain.auroc
    assert planted.top_features == plain.top_features


def test_trainer_rows_carry_no_identity():
    episodes = [_plant(e, 1_000_000) for e in _api_episodes(3, look_first=0.5, seed=4)]
    rows = to_dataset(episodes)
    text = json.dumps(rows.to_list())
    assert MODEL_PATH not in text and "s1000000" not in text and "teacher-biased" not in text
    assert rows.num_rows == 3
