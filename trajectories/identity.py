"""Identity metadata stripped before any classifier or trainer sees an episode.

Who produced an episode is not behaviour: the policy name, its parameters (e.g.
`policy_config.model`, the teacher's path), the rollout seed (the control's carry
1,000,000 + s), an id that embeds either, per-turn sampling records and wall-clock
timing. A classifier that read any of them would separate the two arms for free, so
`strip_identity` blanks them; what the episode says and does (messages, tools, actions,
outcome, steps, stop reason, malformed calls, truncations, sanitizer stats) is kept.
"""

from __future__ import annotations

import hashlib
import json

from trajectories.episode import Episode


def anonymous_id(episode: Episode) -> str:
    """A stable id from the task and the conversation only."""
    content = [episode.task_id, [m.model_dump(mode="json") for m in episode.messages]]
    blob = json.dumps(content, sort_keys=True).encode()
    return "ep-" + hashlib.sha256(blob).hexdigest()[:16]


def strip_identity(episode: Episode) -> Episode:
    """A copy of `episode` with its policy, seed, id and producer metadata blanked."""
    metadata = episode.metadata.model_copy(
        update={"policy_config": {}, "turn_info": [], "timing": None}
    )
    return episode.model_copy(
        update={
            "id": anonymous_id(episode),
            "policy": "",
            "seed": 0,
            "metadata": metadata,
        }
    )
