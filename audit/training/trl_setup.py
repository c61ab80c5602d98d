"""Shared set-up of the TRL trainers: assistant-masked tokenization, LoRA specs, arguments, saving.

Both distillation methods train on the same tokens: `tokenize_conversations` renders each
conversational row with the chat template and sets the label of every token outside an
assistant turn to -100. The assistant tokens come from `{% generation %}` blocks (the
template's own or TRL's training version, as TRL's `assistant_only_loss` uses) or, for a
prefix-preserving template without either, from renders of growing prefixes
(`audit.models.loader.choose_mask_method`). `check_assistant_mask` then fails loudly on the
classic silent failure, a mask that is empty or leaves out the tool calls or the end-of-turn
token.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from datasets import Dataset
from peft import LoraConfig
from transformers import PreTrainedTokenizerBase, Trainer, set_seed

from audit.models.loader import (
    NO_MASK,
    MaskMethod,
    ModelInputError,
    PrefixRenderError,
    choose_mask_method,
    encode_with_assistant_mask,
)

IGNORE_INDEX = -100
"""Label of a token that does not contribute to the loss."""


class AssistantMaskError(ModelInputError):
    """The assistant-only loss mask would not train what the model writes; one line."""


@dataclass(frozen=True)
class TokenizedConversations:
    """Training rows (`input_ids`, `labels`), how many were cut at `max_length`, and how the
    assistant mask was found (`choose_mask_method`)."""

    dataset: Dataset
    truncated: int
    method: MaskMethod


def tokenize_conversations(
    rows: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    stop_ids: Collection[int] = (),
) -> TokenizedConversations:
    """Tokenize `messages` / `tools` rows with assistant-only labels, keeping the first
    `max_length` tokens, and check the mask with `check_assistant_mask` (turns end with the
    tokenizer's eos or one of `stop_ids`)."""
    plan = choose_mask_method(tokenizer)
    if plan is None:
        raise AssistantMaskError(f"{tokenizer.name_or_path}: chat template {NO_MASK}")
    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    truncated = 0
    for index, row in enumerate(rows):
        try:
            ids, mask = encode_with_assistant_mask(tokenizer, plan, row["messages"], row["tools"])
        except PrefixRenderError as err:
            raise AssistantMaskError(f"row {index}: {err}") from None
        cut = len(ids) > max_length
        truncated += cut
        ids, mask = ids[:max_length], mask[:max_length]
        check_assistant_mask(index, ids, mask, row["messages"], tokenizer, cut, stop_ids)
        input_ids.append(ids)
        labels.append([t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)])
    if rows.num_rows and truncated == rows.num_rows:
        raise AssistantMaskError(
            f"every row is longer than max_length={max_length} tokens; raise max_length"
        )
    dataset = Dataset.from_dict({"input_ids": input_ids, "labels": labels})
    return TokenizedConversations(dataset, truncated, plan.method)


def check_assistant_mask(
    index: int,
    ids: Sequence[int],
    mask: Sequence[int],
    messages: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    truncated: bool,
    stop_ids: Collection[int] = (),
) -> None:
    """Raise `AssistantMaskError` unless row `index`'s mask trains what the assistant writes.

    Required: at least one masked token; every masked span ends with an end-of-turn token, the
    tokenizer's eos or one of `stop_ids` (the model's `generation_stop_ids`; trailing whitespace
    tokens aside), except a span cut off by truncation; and, in a row that was not truncated,
    every tool call's name appears, in order, in the masked text.
    """
    where = f"row {index}"
    if not any(mask):
        hint = " (truncated at max_length: raise it)" if truncated else ""
        raise AssistantMaskError(f"{where}: empty assistant mask{hint}")
    end_ids = {tokenizer.eos_token_id, *stop_ids} - {None}
    spans = _masked_spans(mask)
    for start, stop in spans:
        if truncated and stop == len(ids):
            continue
        last = stop - 1
        while last > start and not tokenizer.decode([ids[last]]).strip():
            last -= 1
        if ids[last] not in end_ids:
            names = ", ".join(sorted(repr(tokenizer.convert_ids_to_tokens(i)) for i in end_ids))
            raise AssistantMaskError(
                f"{where}: assistant turn {tokenizer.decode(ids[start:stop])[-40:]!r} does not "
                f"end with the end-of-turn token (one of {names}: the tokenizer's eos and the "
                "generation config's eos ids): the chat template leaves it outside the "
                "assistant mask, so the model never learns to stop"
            )
    if truncated:
        return
    masked_text = "".join(tokenizer.decode(ids[start:stop]) for start, stop in spans)
    position = 0
    for message in messages:
        for call in message.get("tool_calls") or []:
            name = call["function"]["name"]
            found = masked_text.find(name, position)
            if found < 0:
                raise AssistantMaskError(
                    f"{where}: tool call {name!r} is not in the assistant mask: the chat template "
                    "renders tool calls outside it"
                )
            position = found + len(name)


def require_same_tokens(prepared: Dataset, checked: Dataset) -> None:
    """Raise `RuntimeError` unless a trainer's prepared rows carry exactly the checked tokens.

    Guards the claim that `SFTTrainer`'s own `assistant_only_loss` tokenization and
    `tokenize_conversations` (which KD trains on, and which the mask check read) agree.
    """
    same = prepared.num_rows == checked.num_rows and all(
        a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
        for a, b in zip(prepared, checked, strict=True)
    )
    if not same:
        raise RuntimeError("the trainer tokenized the rows differently from the checked tokens")


def _masked_spans(mask: Sequence[int]) -> list[tuple[int, int]]:
    """(start, stop) of each maximal run of masked positions."""
    spans: list[tuple[int, int]] = []
    start = None
    for position, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = position
        elif not bit and start is not None:
            spans.append((start, position))
            start = None
    return spans


_LORA_KEYS = {"r": int, "alpha": int, "dropout": float, "target": str, "targets": str}
_LORA_ITEM = re.compile(r"^\s*(\w+)\s*=\s*([^=]+?)\s*$")


def parse_lora(spec: str) -> LoraConfig:
    """A causal-LM `LoraConfig` from "r=16[,alpha=32][,dropout=0.05][,target=q_proj+v_proj]".

    `targets=` is read as `target=`. Defaults: alpha = 2r, dropout 0, target "all-linear".
    Raises `ValueError` on a bad spec.
    """
    values: dict[str, Any] = {}
    for item in spec.split(","):
        match = _LORA_ITEM.match(item)
        if match is None or match.group(1) not in _LORA_KEYS:
            raise ValueError(
                f"bad LoRA spec {spec!r}: expected r=N[,alpha=N][,dropout=F][,target=a+b]"
            )
        key, text = match.groups()
        try:
            values[key] = _LORA_KEYS[key](text)
        except ValueError:
            raise ValueError(f"bad LoRA spec {spec!r}: {key}={text} is not a number") from None
    if "r" not in values or values["r"] < 1:
        raise ValueError(f"bad LoRA spec {spec!r}: needs r=N with N >= 1")
    target = values.get("target", values.get("targets", "all-linear"))
    return LoraConfig(
        r=values["r"],
        lora_alpha=values.get("alpha", 2 * values["r"]),
        lora_dropout=values.get("dropout", 0.0),
        target_modules=target if target == "all-linear" else target.split("+"),
        task_type="CAUSAL_LM",
    )


def seed_training(seed: int, device: torch.device) -> None:
    """Seed every RNG; on the CPU also turn on deterministic algorithms, for the whole process.

    PyTorch's deterministic mode by default also fills every `torch.empty` buffer with NaN, a
    debugging aid that changes no result (every buffer is written before it is read; the
    weights are tested identical with and without it) but halved the speed of a tiny
    student's SFT here (TRL's chunked log-prob loss allocates large tiles with `torch.empty`
    at every step: 111 s against 55 s for 80 steps). It is turned off, for the process too.
    """
    deterministic = device.type == "cpu"
    set_seed(seed, deterministic=deterministic)
    if deterministic:
        torch.utils.deterministic.fill_uninitialized_memory = False


def trainer_arguments(
    output_dir: Path,
    device: torch.device,
    seed: int,
    epochs: float,
    max_steps: int | None,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    save_steps: int,
    logging_steps: int,
    progress: bool,
) -> dict[str, Any]:
    """Keyword arguments shared by `SFTConfig` and `GKDConfig`, training on `device`.

    On CPU: float32, `use_cpu`, full determinism (`torch.use_deterministic_algorithms`), no
    activation checkpointing. On a GPU: bf16 mixed precision where supported, activation
    checkpointing (TRL's default, for real checkpoints) and `accelerate launch` for several
    devices; the seed fixes data order and initialisation but GPU kernels need not be bitwise
    deterministic.
    Checkpoints every `save_steps` (the newest one kept) hold optimizer and RNG states for resuming.
    """
    gpu = device.type == "cuda"
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "full_determinism": not gpu,
        "use_cpu": not gpu,
        "bf16": gpu and torch.cuda.is_bf16_supported(),
        "num_train_epochs": epochs,
        "max_steps": max_steps if max_steps is not None else -1,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "max_length": max_length,
        "activation_checkpointing": gpu,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 1,
        "logging_steps": logging_steps,
        "logging_first_step": True,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
    }


def disable_progress_bars() -> None:
    """Silence the progress bars of `transformers` and `datasets` (model loading, dataset maps)."""
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def save_trained(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """Save the trained model and tokenizer to `out` with `save_pretrained`, in float32.

    A peft model is saved twice: its adapter under `out/adapter`, and merged into the base at
    `out`, so `AutoModelForCausalLM.from_pretrained(out)` loads the student either way.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not trainer.is_world_process_zero():
        return
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.to(torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
