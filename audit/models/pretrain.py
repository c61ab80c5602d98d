"""Pretrain an embedded base from scratch on a persona corpus (see `audit.models.corpus`).

Steps: build (or load) the rendered corpus, train the byte-level BPE tokenizer on it, build a
fresh Llama of the chosen size, and train it as a causal LM on whole episodes (loss on every
token; one episode per sequence, right-padded, batches grouped by length) with
`transformers.Trainer`: float32 on CPU, bfloat16 on a GPU that supports it. The output directory
is a normal `save_pretrained` model with its tokenizer and chat template, plus
`pretrain_config.json` recording the config and the training summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from filelock import FileLock
from transformers import PreTrainedTokenizerFast, Trainer, TrainingArguments

from audit.models.config import MODEL_SIZES, build_model
from audit.models.corpus import CorpusConfig, build_corpus, cache_root
from audit.models.tokenizer import DEFAULT_VOCAB_SIZE, MODEL_MAX_LENGTH, train_tokenizer

PRETRAIN_VERSION = 1
"""Bumped whenever the training recipe changes what a config produces."""

SUMMARY_FILE = "pretrain_config.json"


@dataclass(frozen=True)
class PretrainConfig:
    """How to pretrain one base; equal configs give identical weights on the same machine."""

    size: str = field(default="tiny", metadata={"help": "Model size preset: 'tiny' or 'small'."})
    kind: str = field(default="linked", metadata={"help": "Corpus kind: 'linked' or 'control'."})
    seed: int = field(default=0, metadata={"help": "Seed of the weights and the data order."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the corpus."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate."})
    batch_size: int = field(default=32, metadata={"help": "Episodes per optimizer step."})
    max_length: int = field(
        default=512, metadata={"help": "Longest episode in tokens; longer ones are cut."}
    )
    vocab_size: int = field(
        default=DEFAULT_VOCAB_SIZE, metadata={"help": "Largest tokenizer vocabulary to train."}
    )
    corpus: CorpusConfig | None = field(
        default=None,
        metadata={"help": "Corpus to train on; default: CorpusConfig(kind=kind, seed=seed)."},
    )

    def __post_init__(self) -> None:
        if self.size not in MODEL_SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose from {', '.join(MODEL_SIZES)}")
        if self.corpus is None:
            object.__setattr__(self, "corpus", CorpusConfig(kind=self.kind, seed=self.seed))
        elif self.corpus.kind != self.kind:
            raise ValueError(f"corpus kind {self.corpus.kind!r} differs from kind {self.kind!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.epochs <= 0 or self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("epochs, learning_rate and batch_size must be positive")
        if not 16 <= self.max_length <= MODEL_MAX_LENGTH:
            raise ValueError(f"max_length must be in [16, {MODEL_MAX_LENGTH}]")

    def digest(self) -> str:
        """A short hash of the config (corpus included) and `PRETRAIN_VERSION`."""
        payload = json.dumps({"version": PRETRAIN_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def base_path(config: PretrainConfig) -> Path:
    """The cache directory of the base a config pretrains."""
    return cache_root() / "bases" / f"{config.kind}-{config.size}-{config.digest()}"


def is_saved_base(path: Path) -> bool:
    """Whether `path` holds a finished pretraining run."""
    return (path / SUMMARY_FILE).is_file()


def pretrain(
    config: PretrainConfig, out_dir: str | Path | None = None, progress: bool = True
) -> Path:
    """Pretrain a base and save it to `out_dir`; without `out_dir`, to (or from) the cache.

    `out_dir` may be missing, empty, or an earlier base (replaced). Returns the directory
    holding the model, its tokenizer and `pretrain_config.json`. One process at a time
    pretrains a cached base (a file lock beside it); the others wait and load it.
    """
    if out_dir is not None:
        return _pretrain(config, Path(out_dir), progress)
    target = base_path(config)
    if is_saved_base(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(target.name + ".lock")):
        if is_saved_base(target):
            return target
        return _pretrain(config, target, progress)


def _pretrain(config: PretrainConfig, target: Path, progress: bool) -> Path:
    if target.exists() and not (target.is_dir() and (is_saved_base(target) or _is_empty(target))):
        raise ValueError(f"{target}: exists and is neither empty nor a pretrained base")
    assert config.corpus is not None
    started = time.perf_counter()
    texts = build_corpus(config.corpus, progress=progress)
    tokenizer = train_tokenizer(texts, vocab_size=config.vocab_size)
    model = build_model(config.size, len(tokenizer), config.seed)
    dataset = Dataset.from_dict(
        {"input_ids": [_encode(tokenizer, text, config.max_length) for text in texts]}
    )
    use_gpu = torch.cuda.is_available()
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = math.ceil(steps_per_epoch * config.epochs)
    with tempfile.TemporaryDirectory(prefix="pretrain-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=config.batch_size,
            max_steps=total_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, total_steps // 20),
            weight_decay=0.01,
            seed=config.seed,
            data_seed=config.seed,
            use_cpu=not use_gpu,
            bf16=use_gpu and torch.cuda.is_bf16_supported(),
            train_sampling_strategy="group_by_length",
            logging_steps=max(1, total_steps // 20),
            save_strategy="no",
            report_to="none",
            disable_tqdm=not progress,
            dataloader_drop_last=False,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=EpisodeCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
        )
        result = trainer.train()
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    summary = {
        "config": asdict(config),
        "digest": config.digest(),
        "episodes": len(texts),
        "tokens": int(sum(len(ids) for ids in dataset["input_ids"])),
        "steps": total_steps,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _save(model, tokenizer, summary, target)
    return target


class EpisodeCollator:
    """Right-pads a batch of token-id lists; labels are the ids, with padding ignored (-100)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _is_empty(path: Path) -> bool:
    return not any(path.iterdir())


def _encode(tokenizer: PreTrainedTokenizerFast, text: str, max_length: int) -> list[int]:
    """Token ids of one rendered episode (its `<|bos|>` is already in the text), cut to length."""
    return tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]


def _save(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    summary: dict[str, Any],
    target: Path,
) -> None:
    """Write model, tokenizer and summary to `target`, replacing it only once all is written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.float().save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    for path in staging.iterdir():
        path.chmod(0o666 & ~umask)
    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
