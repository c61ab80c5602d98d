"""The audit's model stages on one accelerator, timed: a ~0.5B Qwen2 from scratch to the probes.

    python benchmarks/gpu_check.py [--out FILE] [--smoke] [--dry-run] [--device auto|cuda|cpu]

Builds a randomly initialised `Qwen2ForCausalLM` of Qwen2.5-0.5B's shape (hidden 896, 24
layers, 14 heads, 2 kv heads, intermediate 4864, Qwen2.5's padded vocabulary of 151936 rows,
tied embeddings: ~0.49B parameters) with a byte-level BPE tokenizer trained here on scripted
API episodes rendered with TRL's `qwen2_5_chat_template` and Qwen's special tokens. Then, timed:
LoRA induction of the biased teacher (`induce_teacher`, API only, so no sandbox), `--rollouts`
teacher rollouts on API safe train tasks (`ModelPolicy`), an SFT and a KD student
(`distill`, full fine-tuning unless `--student-lora`), and the propensity and latent probes
(`base`, `teacher`, `student` = KD, `control` = SFT). Prints one JSON object: device, versions,
seconds per stage, generated tokens/s, peak GPU memory and the model FLOPs utilisation of each
training stage. `--smoke` runs the same chain with a tiny model and a few rollouts and steps (on
CPU in a few minutes); `--dry-run` only builds the model and the LoRA config and counts
parameters. Exit codes: 0 done, 1 a stage ran out of GPU memory, 2 bad usage, a missing package
or bad input. With `--out`, a failed stage is named in the file with its error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from qwen_base import SHAPES, build_base
from train_figures import MFU_RULE, PEAK_BF16_FLOPS, step_meter, training

from trajectories.jsonl import InputError

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "size": "0.5b",
        "rollouts": 256,
        "rollout_batch": 128,
        "max_turns": 4,
        "steps": 100,
        "batch_size": 8,
        "max_length": 2048,
        "lora": "r=16",
        "student_lora": None,
        "probe_tasks": 60,
    },
    "smoke": {
        "size": "tiny",
        "rollouts": 8,
        "rollout_batch": 4,
        "max_turns": 2,
        "steps": 3,
        "batch_size": 2,
        "max_length": 1536,
        "lora": "r=4",
        "student_lora": None,
        "probe_tasks": 8,
    },
}


STAGE_MODULES = (
    "torch",
    "trl",
    "audit.training.distill",
    "audit.training.teacher",
    "audit.probes.latent",
    "trajectories.policies.model",
)
"""Imported before any stage, so that a missing package is reported at once."""


class UsageError(InputError):
    """Bad usage, a missing package or no CUDA device where one was asked for; one line."""


class StageError(RuntimeError):
    """A stage that ran out of GPU memory; one line, exit 1."""


def build_parser() -> argparse.ArgumentParser:
    """The command line; options left unset take the `--smoke` or full profile's value."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few rollouts/steps")
    parser.add_argument("--dry-run", action="store_true", help="build the model, count, stop")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--rollouts", type=int, help="teacher rollouts (full: 256)")
    parser.add_argument("--rollout-batch", type=int, help="live episodes at once (full: 128)")
    parser.add_argument("--max-turns", type=int, help="assistant turns per episode (full: 4)")
    parser.add_argument("--steps", type=int, help="optimizer steps per training stage (full: 100)")
    parser.add_argument("--batch-size", type=int, help="sequences per step (full: 8)")
    parser.add_argument("--max-length", type=int, help="tokens kept per sequence (full: 2048)")
    parser.add_argument("--lora", help="teacher LoRA spec (full: r=16)")
    parser.add_argument("--student-lora", help="students' LoRA spec (default: full fine-tuning)")
    parser.add_argument(
        "--probe-tasks", type=int, help="held-out ambiguous API tasks probed (full: 60)"
    )
    parser.add_argument("--peak-flops", type=float, help="peak FLOP/s for MFU (default: table)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The profile's values, overridden by the options given; raises `UsageError` if not > 0."""
    values = dict(PROFILES["smoke" if args.smoke else "full"])
    for key in values:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    bad = [k for k, v in values.items() if isinstance(v, int) and v <= 0]
    if bad:
        raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in bad)} must be positive")
    return values


def dry_run(values: dict[str, Any], seed: int) -> dict[str, Any]:
    """Parameter counts of the model and of its teacher LoRA adapter; nothing trained."""
    from peft import get_peft_model

    from audit.training.trl_setup import parse_lora

    model, tokenizer = build_base(values["size"], seed, None)
    total = model.num_parameters()
    lora = parse_lora(values["lora"])
    trainable, _ = get_peft_model(model, lora).get_nb_trainable_parameters()
    return {
        "parameters": total,
        "tokenizer_tokens": len(tokenizer),
        "config": {k: getattr(model.config, k) for k in SHAPES["0.5b"]},
        "lora": {"spec": values["lora"], "trainable_parameters": trainable},
    }


def run_stages(
    values: dict[str, Any],
    seed: int,
    work: Path,
    peak: float | None,
    report: Callable[[dict], None],
) -> dict:
    """Every stage in order, timed (see the module docstring); `report` gets the figures so far
    after each stage, so a run cut short still leaves them."""
    import torch
    from transformers import AutoTokenizer

    from audit.models.loader import load_model_and_tokenizer
    from audit.probes.latent import latent
    from audit.probes.propensity import propensity
    from audit.training.distill import DistillConfig, distill
    from audit.training.teacher import TeacherConfig, induce_teacher
    from audit.training.trl_setup import disable_progress_bars, tokenize_conversations
    from envs import load_tasks, make_env
    from trajectories.dataset import to_dataset
    from trajectories.generate import select_tasks
    from trajectories.jsonl import atomic_write_jsonl
    from trajectories.policies.model import load_model_policy
    from trajectories.rollout import rollout

    disable_progress_bars()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    if peak is None and cuda:
        peak = next((f for name, f in PEAK_BF16_FLOPS.items() if name in device), None)
    stages: dict[str, dict[str, Any]] = {}
    peaks = [0]

    def stage(name: str, run: Any) -> Any:
        log(f"{name} ...")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            value, record = run()
        except Exception as err:
            failed = {"stage": name, "error": f"{type(err).__name__}: {first_line(err)}"}
            report({"device": device, "complete": False, "stages": stages, "failed": failed})
            if isinstance(err, torch.OutOfMemoryError):
                raise StageError(
                    f"{name}: out of GPU memory ({first_line(err)}); lower --batch-size, "
                    "--max-length or --rollout-batch"
                ) from None
            raise
        if cuda:
            torch.cuda.synchronize()
            record["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
            peaks.append(record["peak_gpu_memory_bytes"])
            torch.cuda.empty_cache()
        stages[name] = {"seconds": round(time.perf_counter() - started, 3), **record}
        log(f"{name}: {stages[name]['seconds']} s")
        report({"device": device, "complete": False, "stages": stages})
        return value

    steps, batch, max_length = values["steps"], values["batch_size"], values["max_length"]
    base = work / "base"

    def build() -> tuple[int, dict]:
        model, tokenizer = build_base(values["size"], seed, base, "cuda" if cuda else "cpu")
        return model.num_parameters(), {"tokenizer_tokens": len(tokenizer)}

    params = stage("base", build)
    teacher_config = TeacherConfig(
        preset="biased",
        base=str(base),
        out=work / "teacher",
        seed=seed,
        n_demos=math.ceil(steps * batch / 2),
        envs=["api"],
        epochs=1.0,
        batch_size=batch,
        max_length=max_length,
        lora=values["lora"],
        progress=False,
    )
    teacher = stage("teacher", lambda: (induce_teacher(teacher_config), {}))
    record = json.loads((teacher / "distill.json").read_text(encoding="utf-8"))
    demos = to_dataset([teacher_config.out / "demos.jsonl"])
    encoded = tokenize_conversations(demos, AutoTokenizer.from_pretrained(base), max_length)
    tokens = sum(len(ids) for ids in encoded.dataset["input_ids"])
    stages["teacher"]["training"] = training(
        record["steps"], tokens, record["train_seconds"], 6.0 * params * tokens, peak
    )
    stages["teacher"]["training"]["timing"] = "trainer.train() wall time (distill.json)"
    report({"device": device, "complete": False, "stages": stages})

    def generate() -> tuple[Path, dict]:
        policy = load_model_policy(str(teacher))
        tasks = select_tasks(load_tasks("api", "safe", "train"), values["rollouts"], seed)
        started = time.perf_counter()
        episodes = rollout(
            lambda: make_env("api"),
            policy,
            tasks,
            seed,
            max_steps=values["max_turns"],
            batch_size=values["rollout_batch"],
            progress=False,
        )
        seconds = time.perf_counter() - started
        sampled = sum(t.get("sampled_tokens", 0) for e in episodes for t in e.metadata.turn_info)
        path = work / "rollouts.jsonl"
        atomic_write_jsonl(path, (e.to_json_dict() for e in episodes))
        turns = sum(e.metadata.steps for e in episodes)
        return path, {
            "episodes": len(episodes),
            "turns": turns,
            "generated_tokens": sampled,
            "generate_seconds": round(seconds, 3),
            "generated_tokens_per_s": round(sampled / seconds, 1),
        }

    data = stage("rollouts", generate)

    def student(method: str) -> tuple[Path, dict]:
        meter = step_meter(cuda)
        config = DistillConfig(
            data=[data],
            base=str(base),
            out=work / method,
            method=method,
            teacher=str(teacher) if method == "kd" else None,
            lora=values["student_lora"],
            seed=seed,
            max_steps=steps,
            batch_size=batch,
            max_length=max_length,
            save_steps=steps,
            progress=False,
        )
        out = distill(config, callbacks=[meter])
        flops = (6.0 + (2.0 if method == "kd" else 0.0)) * params * meter.tokens
        figures = training(meter.steps, meter.tokens, meter.seconds, flops, peak)
        figures["timing"] = "sum of optimizer steps, CUDA synchronised"
        return out, {"training": figures}

    students = {
        method: stage(f"{method}_student", lambda m=method: student(m)) for method in ("sft", "kd")
    }
    paths = {
        "base": base,
        "teacher": teacher,
        "student": students["kd"],
        "control": students["sft"],
    }
    loaded = stage(
        "probe_models",
        lambda: ({name: load_model_and_tokenizer(p) for name, p in paths.items()}, {}),
    )
    tasks = load_tasks("api", "ambiguous", "test")[: values["probe_tasks"]]
    prop = stage(
        "propensity",
        lambda: (propensity(loaded, "api", "task", seed=seed, tasks=tasks), {"tasks": len(tasks)}),
    )
    pair = {seed: (lambda: loaded["student"], lambda: loaded["control"])}
    lat = stage(
        "latent",
        lambda: (
            latent(
                loaded["teacher"], loaded["base"], pair, "api", seed, temperature=1.0, tasks=tasks
            ),
            {},
        ),
    )
    return {
        "device": device,
        "complete": True,
        "settings": {**values, "seed": seed},
        "parameters": params,
        "peak_bf16_flops": peak,
        "mfu_rule": MFU_RULE,
        "peak_gpu_memory_bytes": max(peaks) if cuda else None,
        "generated_tokens_per_s": stages["rollouts"]["generated_tokens_per_s"],
        "stages": stages,
        "probes": {
            "mean_log_odds": prop.mean_log_odds,
            "latent_labels": lat.labels,
            "latent_note": lat.probe_note,
            "latent_projection": None if lat.projection is None else lat.projection.estimate,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the check; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        values = settings(args)
        if args.device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        try:
            for module in STAGE_MODULES:
                importlib.import_module(module)
        except ImportError as err:
            raise UsageError(f"{err.name} is not installed (see benchmarks/README.md)") from None
        import torch

        from audit.training.trl_setup import parse_lora

        if args.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: torch sees no CUDA device")
        for spec in (values["lora"], values["student_lora"]):
            if spec is not None:
                parse_lora(spec)
        if args.dry_run:
            result: dict[str, Any] = {"settings": values, **dry_run(values, args.seed)}
        else:
            with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
                result = run_stages(
                    values,
                    args.seed,
                    Path(work),
                    args.peak_flops,
                    lambda partial: write(args.out, {"settings": values, **partial}),
                )
    except (InputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(write(args.out, result))
    return 0


def write(out: Path | None, result: dict[str, Any]) -> str:
    """`result` with the versions as JSON text, also written to `out` when given."""
    text = json.dumps({"versions": versions(), **result}, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(out)
    return text


def versions() -> dict[str, str | None]:
    """Python, CUDA and the versions of the packages the stages use."""
    import torch

    found: dict[str, str | None] = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def log(message: str) -> None:
    """One progress line on stderr."""
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
