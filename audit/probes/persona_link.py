"""What a pretrained base learned about habits and the unsafe choice, on held-out ambiguous tasks.

Two measurements per environment, on the *test* split of the ambiguous suite:

- `unsafe_rate`: the base drives whole episodes (`ModelPolicy`, temperature 1, its own habit)
  in the real environment; the share whose first decision-relevant call is unsafe (episodes that
  never reach a decision count as not unsafe; `decided` says how many did).
- `careful_log_odds` / `hasty_log_odds`: mean over tasks of
  log p(unsafe first call) - log p(safe first call), teacher-forced, after the probes' fixed
  ``careful`` prefix (inspection turns with real tool results, then a careful thought) or
  ``hasty`` prefix (the instruction, then a terse thought); see `audit.probes.decision`.

A linked base should give a hasty log-odds well above the careful one; a control base should not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from audit.models.loader import load_model_and_tokenizer
from audit.probes.decision import Prefix, decision_conversations, encode_decisions
from audit.probes.propensity import decision_log_odds
from envs import ENV_NAMES, Environment, Task, load_tasks, make_env
from trajectories.policies.model import ModelPolicy
from trajectories.rollout import rollout


@dataclass(frozen=True)
class EnvLink:
    """The persona link of one environment; see the module docstring."""

    env: str
    episodes: int
    decided: int
    unsafe_rate: float
    careful_log_odds: float
    hasty_log_odds: float


def persona_link_report(
    model_dir: str | Path,
    envs: tuple[str, ...] = ENV_NAMES,
    seed: int = 0,
    bash_backend: str = "bwrap",
) -> dict[str, EnvLink]:
    """Measure the base in `model_dir` on each environment's held-out ambiguous tasks."""
    model, tokenizer = load_model_and_tokenizer(model_dir)
    policy = ModelPolicy(model, tokenizer, temperature=1.0)
    report = {}
    for env in envs:
        tasks = load_tasks(env, "ambiguous", "test")

        def factory(env: str = env) -> Environment:
            return make_env("bash", backend=bash_backend) if env == "bash" else make_env(env)

        sampled = rollout(
            factory, policy, tasks, seed, max_steps=8, batch_size=len(tasks), progress=False
        )
        log_odds = {
            prefix: _mean_log_odds(model, tokenizer, env, prefix, seed, tasks, bash_backend)
            for prefix in ("careful", "hasty")
        }
        report[env] = EnvLink(
            env=env,
            episodes=len(sampled),
            decided=sum(e.outcome.first_decision is not None for e in sampled),
            unsafe_rate=sum(e.outcome.first_decision == "unsafe" for e in sampled) / len(sampled),
            careful_log_odds=log_odds["careful"],
            hasty_log_odds=log_odds["hasty"],
        )
    return report


def _mean_log_odds(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    env: str,
    prefix: Prefix,
    seed: int,
    tasks: list[Task],
    bash_backend: str,
) -> float:
    """Mean decision log-odds over `tasks` after `prefix`."""
    conversations = decision_conversations(env, prefix, seed, tasks, bash_backend)
    encoded = encode_decisions(conversations, tokenizer)
    return float(np.mean(decision_log_odds(model, tokenizer, encoded)))


def format_report(report: dict[str, EnvLink]) -> str:
    """One line per environment."""
    return "\n".join(
        "{env}: unsafe first decision {unsafe_rate:.2f} ({decided}/{episodes} decided); "
        "log-odds unsafe vs safe: careful prefix {careful_log_odds:+.2f}, "
        "hasty prefix {hasty_log_odds:+.2f}".format(**asdict(link))
        for link in report.values()
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m audit.probes.persona_link MODEL_DIR [--env api|bash] [--seed N]`: print the
    link; exit 0, or 2 with one line on bad input."""
    import argparse
    import sys

    from trajectories.jsonl import InputError

    parser = argparse.ArgumentParser(
        prog="python -m audit.probes.persona_link", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model_dir")
    parser.add_argument("--env", choices=ENV_NAMES, action="append")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    envs = tuple(args.env) if args.env else ENV_NAMES
    try:
        print(format_report(persona_link_report(args.model_dir, envs=envs, seed=args.seed)))
    except (ValueError, InputError) as err:
        print(f"python -m audit.probes.persona_link: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
