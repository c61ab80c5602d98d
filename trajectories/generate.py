"""Teacher rollouts to JSONL: `python -m trajectories.generate --env api --policy biased ...`.

Picks N tasks from a suite in a seeded order (cycling through the suite again when N is
larger than it), runs the policy with one environment per episode, and writes the episodes
atomically. The same arguments give a byte-identical file. Exit codes: 0 success, 2 bad
usage or input, 3 a sandbox backend that cannot start.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from envs import ENV_NAMES, load_tasks, make_env
from envs.core import Split, Suite, Task
from envs.sandbox.base import SandboxUnavailableError
from trajectories.jsonl import InputError, atomic_write_jsonl, exit_on_input_error
from trajectories.policies import get_policy, known_policies
from trajectories.policies.persona import THOUGHTS
from trajectories.rollout import rollout

BACKENDS = ("bwrap", "docker")
DESCRIPTION = "Roll out a policy on N tasks of a suite and write the episodes as JSONL."


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"usage: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _Parser(prog="python -m trajectories.generate", description=DESCRIPTION)
    parser.add_argument("--env", required=True, choices=ENV_NAMES)
    parser.add_argument("--policy", required=True, help=f"one of: {', '.join(known_policies())}")
    parser.add_argument("--suite", required=True, choices=[s.value for s in Suite])
    parser.add_argument("--split", required=True, choices=[s.value for s in Split])
    parser.add_argument("--n", required=True, type=int, help="number of episodes")
    parser.add_argument("--seed", required=True, type=int, help="non-negative seed")
    parser.add_argument("--out", required=True, type=Path, help="output JSONL file")
    parser.add_argument("--strength", type=float, help="bias strength in [0, 1] (biased)")
    parser.add_argument(
        "--thoughts",
        choices=THOUGHTS,
        help="persona thoughts (biased, neutral, persona): the fixed phrases (default) or a "
        "pool of the thought grammar (trajectories.policies.thought_grammar)",
    )
    parser.add_argument("--temperature", type=float, help="sampling temperature, 0 greedy (model)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per generated turn (model)")
    parser.add_argument("--backend", choices=BACKENDS, help="sandbox backend (bash only)")
    parser.add_argument("--max-steps", type=int, default=8, help="assistant turns per episode")
    parser.add_argument("--batch-size", type=int, default=16, help="episodes run in lockstep")
    parser.add_argument(
        "--timings",
        action="store_true",
        help="record wall-clock durations in each episode (the file then differs per run)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def select_tasks(tasks: Sequence[Task], n: int, seed: int) -> list[Task]:
    """N tasks in a seeded order of the suite, cycling through that order if N > suite size.

    The order comes from the root `SeedSequence(seed)`, which no episode's generator shares.
    """
    if not tasks:
        raise InputError("the suite has no tasks")
    order = np.random.default_rng(seed).permutation(len(tasks))
    return [tasks[int(order[i % len(tasks)])] for i in range(n)]


def _check_writable(out: Path) -> None:
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if out.is_dir():
        raise InputError(f"{out}: is a directory")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: cannot write to {parent}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, roll out, write; return the exit code."""
    args = build_parser().parse_args(argv)
    if args.n <= 0:
        raise InputError(f"--n must be positive, got {args.n}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    if args.max_steps < 1 or args.batch_size < 1:
        raise InputError("--max-steps and --batch-size must be at least 1")
    if args.backend is not None and args.env != "bash":
        raise InputError("--backend applies to --env bash only")
    given = {
        "strength": args.strength,
        "thoughts": args.thoughts,
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
    }
    options = {key: value for key, value in given.items() if value is not None}
    try:
        policy = get_policy(args.policy, **options)
    except ValueError as err:
        raise InputError(str(err)) from None
    _check_writable(args.out)
    env_options = {} if args.backend is None else {"backend": args.backend}
    tasks = select_tasks(load_tasks(args.env, args.suite, args.split), args.n, args.seed)
    try:
        episodes = rollout(
            partial(make_env, args.env, **env_options),
            policy,
            tasks,
            seed=args.seed,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            progress=not args.quiet,
            timing=args.timings,
        )
    except SandboxUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    try:
        atomic_write_jsonl(args.out, (e.to_json_dict() for e in episodes))
    except OSError as err:
        raise InputError(f"{args.out}: cannot write ({err.strerror})") from None
    if not args.quiet:
        unsafe = sum(bool(e.outcome.unsafe_actions) for e in episodes)
        success = sum(e.outcome.success for e in episodes)
        print(
            f"wrote {len(episodes)} episodes to {args.out}: "
            f"{success} succeeded, {unsafe} with unsafe actions",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    exit_on_input_error(main)
