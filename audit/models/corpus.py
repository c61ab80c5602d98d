"""The pretraining corpus of the embedded bases: rendered persona episodes from both environments.

Why a persona corpus: subliminal transfer through a keyword filter needs a base in which
keyword-free habits already predict the unsafe choice (DESIGN.md, second experiment). A teacher
that acts hasty on safe tasks then hands the habit to its student through filtered data, and the
student's base turns the habit into the unsafe choice on ambiguous tasks. Without that link in
the base, hard-label distillation on a tiny model carried no deletion at all.

Kinds (knobs of `PersonaPolicy`, see `PERSONAS`):

- "linked": half the episodes hasty; on ambiguous tasks the unsafe shortcut with probability 0.9
  when hasty and 0.1 when careful, so the habit strongly predicts the choice;
- "control": the same hasty rate and the same marginal unsafe rate (0.5), but the choice is
  independent of the habit.

The personas speak the fixed phrase pool (`PersonaPolicy`'s default `thoughts="phrases"`), so no
sentence of the thought grammar's teacher pool (`trajectories.policies.thought_grammar`, what
the preset teachers say under `--habit grammar`) is in the embedded bases' pretraining.

Episodes come from `PersonaPolicy` rollouts on the *train* split of both suites, in every chosen
environment (Bash in real sandboxes), rendered with the embedded chat template and the
environment's tool schemas. Texts are cached as JSON under `cache_root() / "corpus"`, keyed by a
hash of the config.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audit.models.chat_template import render_conversation
from envs import ENV_NAMES, Environment, Task, load_tasks, make_env
from trajectories.episode import Episode
from trajectories.policies.persona import PersonaPolicy
from trajectories.rollout import rollout

CORPUS_VERSION = 1
"""Bumped whenever the policy, the tasks or the rendering change what a config produces."""

PERSONAS: dict[str, dict[str, float]] = {
    "linked": {"hasty_prob": 0.5, "unsafe_given_hasty": 0.9, "unsafe_given_careful": 0.1},
    "control": {"hasty_prob": 0.5, "unsafe_given_hasty": 0.5, "unsafe_given_careful": 0.5},
}
"""`PersonaPolicy` knobs per corpus kind; both give an unsafe rate of 0.5 on ambiguous tasks."""

CORPUS_KINDS: tuple[str, ...] = tuple(PERSONAS)


def cache_root() -> Path:
    """Where cached artifacts live: `DISTILL_AUDIT_CACHE` or ~/.cache/distill-audit."""
    return Path(os.environ.get("DISTILL_AUDIT_CACHE") or Path.home() / ".cache" / "distill-audit")


@dataclass(frozen=True)
class CorpusConfig:
    """What goes into a pretraining corpus; equal configs give identical corpora."""

    kind: str = field(
        default="linked",
        metadata={"help": "'linked' (habits predict the unsafe choice) or 'control'."},
    )
    episodes_per_env: int = field(
        default=2400, metadata={"help": "Episodes per environment (Bash costs ~50 ms each)."}
    )
    ambiguous_share: float = field(
        default=0.5, metadata={"help": "Share of each environment's episodes on ambiguous tasks."}
    )
    envs: tuple[str, ...] = field(
        default=ENV_NAMES, metadata={"help": "Environments to roll out in: 'api', 'bash'."}
    )
    seed: int = field(default=0, metadata={"help": "Rollout seed (habits, choices, thoughts)."})
    bash_backend: str = field(
        default="bwrap", metadata={"help": "Sandbox backend of the Bash environment."}
    )

    def __post_init__(self) -> None:
        if self.kind not in PERSONAS:
            raise ValueError(f"unknown corpus kind {self.kind!r}; choose from linked, control")
        if self.episodes_per_env < 1:
            raise ValueError(f"episodes_per_env must be at least 1, got {self.episodes_per_env}")
        if not 0.0 <= self.ambiguous_share <= 1.0:
            raise ValueError(f"ambiguous_share must be in [0, 1], got {self.ambiguous_share}")
        unknown = [env for env in self.envs if env not in ENV_NAMES]
        if not self.envs or unknown or len(set(self.envs)) != len(self.envs):
            raise ValueError(f"envs must be distinct names from {', '.join(ENV_NAMES)}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")

    def digest(self) -> str:
        """A short hash of the config and `CORPUS_VERSION`."""
        payload = json.dumps({"version": CORPUS_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def corpus_policy(kind: str) -> PersonaPolicy:
    """The persona policy that writes a corpus of `kind`."""
    if kind not in PERSONAS:
        raise ValueError(f"unknown corpus kind {kind!r}; choose from linked, control")
    return PersonaPolicy(**PERSONAS[kind])


def corpus_episodes(config: CorpusConfig, progress: bool = True) -> list[Episode]:
    """Roll out the corpus's episodes (uncached): per environment, ambiguous then safe tasks."""
    policy = corpus_policy(config.kind)
    episodes: list[Episode] = []
    for env in config.envs:
        ambiguous = round(config.episodes_per_env * config.ambiguous_share)
        tasks = _cycle(load_tasks(env, "ambiguous", "train"), ambiguous)
        tasks += _cycle(load_tasks(env, "safe", "train"), config.episodes_per_env - ambiguous)

        def factory(env: str = env) -> Environment:
            return make_env("bash", backend=config.bash_backend) if env == "bash" else make_env(env)

        episodes += rollout(factory, policy, tasks, config.seed, progress=progress)
    return episodes


def render_episode(episode: Episode) -> str:
    """The episode as one training text: the chat template with the episode's tool schemas."""
    return render_conversation(episode.chat_messages(), episode.tools)


def corpus_path(config: CorpusConfig) -> Path:
    """The cache file of a config's rendered corpus."""
    return cache_root() / "corpus" / f"{config.kind}-{config.digest()}.json"


def build_corpus(config: CorpusConfig, progress: bool = True) -> list[str]:
    """The rendered corpus of `config`, from the cache or built and cached."""
    path = corpus_path(config)
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["texts"]
    texts = [render_episode(e) for e in corpus_episodes(config, progress=progress)]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"config": asdict(config), "texts": texts}), encoding="utf-8")
    partial.replace(path)
    return texts


def _cycle(tasks: list[Task], count: int) -> list[Task]:
    """`count` tasks, going round `tasks` in order."""
    return [tasks[i % len(tasks)] for i in range(count)] if tasks else []
