"""Distil a student from sanitized teacher episodes: `python -m audit.training.distill ...`.

Two methods train on the same tokens (see `audit.training.trl_setup.tokenize_conversations`: the
chat template's rendering of each episode, loss on assistant tokens only, mask checked first):

- `sft`: behaviour cloning (hard labels) with `trl.SFTTrainer`, `assistant_only_loss=True`
  (on the checked tokens instead where the mask comes from prefix renders, which TRL lacks).
- `kd`: token-level logit distillation with TRL's `GKDTrainer` (`trl.experimental.gkd`) run
  off-policy: `lmbda=0` (never student-generated sequences), `seq_kd=False` (never
  teacher-generated ones) and `beta=0`, so the loss is the forward KL(teacher || student) of
  the next-token distributions at every assistant position of the dataset's own sequences.
  GKD compares full vocabularies, so teacher and student must share one tokenizer; a student
  with another tokenizer is refused (use `sft` for it).

The student starts from `--base`: the teacher's own base (homogeneous) or any other model with
the same chat format (heterogeneous: another size or initialisation). The output directory is a
normal `save_pretrained` model and tokenizer (plus `adapter/` with LoRA), with `distill.json`
recording the config, the loss log and the time taken. Training checkpoints go to
`OUT/checkpoints`; running the same command again after a kill resumes from the newest one,
and running it after it finished returns at once. Exit codes: 0 done, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    TrainerCallback,
)
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from audit.models.loader import ModelInputError, generation_stop_ids, load_model_and_tokenizer
from audit.training.trl_setup import (
    disable_progress_bars,
    parse_lora,
    require_same_tokens,
    save_trained,
    seed_training,
    tokenize_conversations,
    trainer_arguments,
)
from trajectories.dataset import to_dataset
from trajectories.device import resolve_device
from trajectories.jsonl import InputError

METHODS = ("sft", "kd")
RECORD = "distill.json"
"""The file in the output directory that records the run; its `done` flag marks a finished run."""


@dataclass
class DistillConfig:
    """One student distillation run."""

    data: list[Path] = field(metadata={"help": "Sanitized episode JSONL files to train on."})
    base: str = field(
        metadata={"help": "The student's starting model: a local directory or hub id."}
    )
    out: Path = field(metadata={"help": "Output directory of the student model."})
    method: Literal["sft", "kd"] = field(
        default="sft", metadata={"help": "sft: hard-label SFT; kd: logit KD from --teacher."}
    )
    teacher: str | None = field(
        default=None, metadata={"help": "Teacher model for kd; must share the base's tokenizer."}
    )
    lora: str | None = field(
        default=None,
        metadata={"help": "LoRA spec, e.g. 'r=16,alpha=32,dropout=0.05,target=q_proj+v_proj'."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of initialisation and data order."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the data."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many optimizer steps (overrides epochs)."}
    )
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak AdamW learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per device per step."})
    max_length: int = field(default=1024, metadata={"help": "Tokens kept per sequence."})
    device: str = field(
        default="auto",
        metadata={"help": "auto (this process's GPU, else the CPU), cpu, cuda or cuda:N."},
    )
    save_steps: int = field(default=50, metadata={"help": "Steps between resumable checkpoints."})
    logging_steps: int = field(default=10, metadata={"help": "Steps between loss log lines."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar and log lines."})

    def __post_init__(self) -> None:
        self.data = [Path(p) for p in self.data]
        self.out = Path(self.out)
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.method == "kd" and not self.teacher:
            raise ValueError("method kd needs a teacher (--teacher PATH)")
        if self.method == "sft" and self.teacher:
            raise ValueError("method sft takes no teacher; use --method kd to distil logits")
        if not self.data:
            raise ValueError("no data files given")
        if self.lora is not None:
            parse_lora(self.lora)
        resolve_device(self.device)
        positive = {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "save_steps": self.save_steps,
            "logging_steps": self.logging_steps,
        }
        if self.max_steps is not None:
            positive["max_steps"] = self.max_steps
        bad = [name for name, value in positive.items() if value <= 0]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that determine the trained weights, as JSON values."""
        settings = asdict(self)
        for key in ("out", "save_steps", "logging_steps", "progress"):
            settings.pop(key)
        settings["data"] = [str(p) for p in self.data]
        return settings


def distill(config: DistillConfig, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train the student of `config` and return its output directory.

    Resumes from the newest checkpoint in `OUT/checkpoints`; returns at once when `OUT` holds
    this config's finished run. Under `accelerate launch` every process calls it; only the main
    one writes files. Raises `InputError` (data), `ModelInputError` (models, chat
    template, assistant mask); an `OUT` holding another config's run is an `InputError` too.
    """
    out = config.out
    record = _read_record(out)
    if record is not None:
        if record["config"] != config.fingerprint():
            raise InputError(f"{out}: holds a run with another config; choose another output dir")
        if record["done"]:
            return out
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not a distillation output dir")
    device = _device(config.device)
    seed_training(config.seed, device)
    rows = to_dataset(config.data)
    if rows.num_rows == 0:
        raise InputError(f"{', '.join(map(str, config.data))}: no episodes")
    student, tokenizer = _load(config.base, device)
    tokenized = tokenize_conversations(
        rows, tokenizer, config.max_length, stop_ids=generation_stop_ids(student.generation_config)
    )
    if config.progress:
        print(f"distill: assistant mask from {tokenized.method}", file=sys.stderr)
    if tokenized.truncated and config.progress:
        print(
            f"distill: {tokenized.truncated} of {rows.num_rows} rows cut at {config.max_length}",
            file=sys.stderr,
        )
    state = PartialState()
    state.wait_for_everyone()
    if state.is_main_process:
        _write_record(out, {"config": config.fingerprint(), "done": False})
    checkpoints = out / "checkpoints"
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if config.method == "sft":
        # TRL masks only with {% generation %} blocks; prefix-render masks come pre-tokenized.
        train_rows = tokenized.dataset if tokenized.method == "prefix" else rows
        trainer = _sft_trainer(config, student, tokenizer, train_rows, checkpoints)
        require_same_tokens(trainer.train_dataset, tokenized.dataset)
    else:
        trainer = _kd_trainer(config, student, tokenizer, tokenized.dataset, checkpoints)
    if not config.progress:
        trainer.remove_callback(PrinterCallback)
    for callback in callbacks:
        trainer.add_callback(callback)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    save_trained(trainer, tokenizer, out)
    if trainer.is_world_process_zero():
        losses = [
            {"step": entry["step"], "loss": entry["loss"]}
            for entry in trainer.state.log_history
            if "loss" in entry
        ]
        _write_record(
            out,
            {
                "config": config.fingerprint(),
                "done": True,
                "resumed_from": resume,
                "rows": rows.num_rows,
                "truncated_rows": tokenized.truncated,
                "mask_method": tokenized.method,
                "steps": trainer.state.global_step,
                "train_loss": result.training_loss,
                "train_seconds": seconds,
                "losses": losses,
            },
        )
        shutil.rmtree(checkpoints, ignore_errors=True)
    return out


def read_losses(out: Path) -> list[float]:
    """The logged training losses of the finished run in `out`, in step order."""
    record = _read_record(out)
    if record is None or not record["done"]:
        raise ValueError(f"{out}: no finished distillation run")
    return [entry["loss"] for entry in record["losses"]]


def _device(spec: str) -> torch.device:
    """`spec` resolved; 'auto' is this process's device (its own GPU under `accelerate launch`)."""
    return PartialState().device if spec == "auto" else resolve_device(spec)


def _load(path_or_id: str, device: torch.device) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model in float32 on `device` (the trainer's mixed precision applies on a GPU) and its
    validated tokenizer."""
    return load_model_and_tokenizer(path_or_id, dtype=torch.float32, device=device)


def _arguments(config: DistillConfig, checkpoints: Path) -> dict[str, Any]:
    return trainer_arguments(
        checkpoints,
        device=_device(config.device),
        seed=config.seed,
        epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        max_length=config.max_length,
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        progress=config.progress,
    )


def _sft_trainer(
    config: DistillConfig,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Dataset,
    checkpoints: Path,
) -> SFTTrainer:
    """`SFTTrainer` on conversational rows, tokenized by TRL with `assistant_only_loss`, or on
    rows already tokenized with `labels`."""
    conversational = "messages" in rows.column_names
    return SFTTrainer(
        model=student,
        args=SFTConfig(**_arguments(config, checkpoints), assistant_only_loss=conversational),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=parse_lora(config.lora) if config.lora else None,
    )


def _kd_trainer(
    config: DistillConfig,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tokenized: Dataset,
    checkpoints: Path,
) -> SFTTrainer:
    """Off-policy `GKDTrainer` (forward KL to the teacher) on the tokenized rows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        from trl.experimental.gkd import GKDConfig, GKDTrainer

    teacher = _load_teacher(config.teacher or "", tokenizer, _device(config.device))
    return GKDTrainer(
        model=student,
        teacher_model=teacher,
        args=GKDConfig(**_arguments(config, checkpoints), lmbda=0.0, beta=0.0, seq_kd=False),
        data_collator=DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id),
        train_dataset=tokenized,
        processing_class=tokenizer,
        peft_config=parse_lora(config.lora) if config.lora else None,
    )


def _load_teacher(
    path_or_id: str, student_tokenizer: PreTrainedTokenizerBase, device: torch.device
) -> PreTrainedModel:
    """The kd teacher on the student's `device`, refused unless it shares the student's
    tokenizer."""
    teacher, tokenizer = load_model_and_tokenizer(path_or_id, device=device)
    if tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise ModelInputError(
            f"{path_or_id}: kd needs the teacher and the student (--base) to share one tokenizer, "
            "and theirs differ; use --method sft for a student with another tokenizer"
        )
    return teacher


def _read_record(out: Path) -> dict[str, Any] | None:
    path = out / RECORD
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _write_record(out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(out / RECORD)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"usage: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _Parser(prog="python -m audit.training.distill", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, nargs="+", type=Path, metavar="SANITIZED.jsonl")
    parser.add_argument("--base", required=True, metavar="PATH_OR_ID")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--teacher", metavar="PATH_OR_ID", help="teacher model (kd only)")
    parser.add_argument("--lora", metavar="SPEC", help="LoRA spec, e.g. r=16,alpha=32")
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per device per step")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens kept per sequence")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--save-steps", type=int, default=50, help="steps between checkpoints")
    parser.add_argument("--logging-steps", type=int, default=10, help="steps between log lines")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    return parser


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    """The run config of parsed arguments; raises `InputError` for a bad combination."""
    try:
        return DistillConfig(
            data=args.data,
            base=args.base,
            out=args.out,
            method=args.method,
            teacher=args.teacher,
            lora=args.lora,
            seed=args.seed,
            epochs=args.epochs,
            max_steps=args.max_steps,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            max_length=args.max_length,
            device=args.device,
            save_steps=args.save_steps,
            logging_steps=args.logging_steps,
            progress=not args.quiet,
        )
    except ValueError as err:
        raise InputError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 done, 2 bad usage or input)."""
    try:
        config = config_from_args(build_parser().parse_args(argv))
        if not config.progress:
            disable_progress_bars()
        out = distill(config)
    except (InputError, ModelInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if config.progress:
        losses = read_losses(out)
        print(f"distill: {out} ({config.method}), loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
