"""Assistant turns per second of the model policy, batched vs one episode at a time.

    python -m benchmarks.rollout_throughput [--model DIR] [--n 64] [--batch-size 32]

Rolls the same API tasks out twice with the same seed, once with up to `--batch-size` live
episodes (continuous batching) and once one episode at a time, and prints one JSON object with
steps (assistant turns), seconds and steps/s of each run, their ratio, and whether both runs
wrote the same episodes. Without `--model` it first trains the embedded "tiny" size for 300
steps on scripted API episodes (one to two minutes on 2 cores) so that the model writes tool
calls of realistic length.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from envs import load_tasks, make_env
from tests.model_policy_sample import build_demo_agent
from trajectories.episode import Episode
from trajectories.policies.model import ModelPolicy, load_model_policy
from trajectories.rollout import rollout


def _run(policy: ModelPolicy, n: int, batch_size: int, seed: int) -> tuple[list[Episode], dict]:
    tasks = load_tasks("api", "safe", "test")[:n]
    started = time.perf_counter()
    episodes = rollout(
        lambda: make_env("api"),
        policy,
        tasks,
        seed,
        max_steps=6,
        batch_size=batch_size,
        progress=False,
    )
    seconds = time.perf_counter() - started
    steps = sum(e.metadata.steps for e in episodes)
    tokens = sum(t.get("sampled_tokens", 0) for e in episodes for t in e.metadata.turn_info)
    figures = {
        "batch_size": batch_size,
        "episodes": len(episodes),
        "steps": steps,
        "sampled_tokens": tokens,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 2),
    }
    return episodes, figures


def measure(model_dir: Path, n: int, batch_size: int, seed: int) -> dict:
    """Both runs on `model_dir` (after a short warm-up) and their steps/s ratio."""
    policy = load_model_policy(str(model_dir))
    _run(policy, 2, 2, seed)
    batched_episodes, batched = _run(policy, n, batch_size, seed)
    single_episodes, single = _run(policy, n, 1, seed)
    same = [e.messages for e in batched_episodes] == [e.messages for e in single_episodes]
    return {
        "model": str(model_dir),
        "parameters": sum(p.numel() for p in policy.model.parameters()),
        "device": str(policy.model.device),
        "torch_threads": torch.get_num_threads(),
        "batched": batched,
        "one_at_a_time": single,
        "ratio": round(batched["steps_per_s"] / single["steps_per_s"], 2),
        "same_episodes": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a saved model (default: train a demo one)")
    parser.add_argument("--n", type=int, default=64, help="episodes per run")
    parser.add_argument("--batch-size", type=int, default=32, help="live episodes at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (at most 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = build_demo_agent(
                Path(tmp) / "agent", size="tiny", steps=300, learning_rate=5e-3
            )
        print(json.dumps(measure(model_dir, args.n, args.batch_size, args.seed), indent=2))


if __name__ == "__main__":
    main()
