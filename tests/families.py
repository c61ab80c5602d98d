"""Tiny randomly initialised models of real chat-model families, for the family tests.

Each family is built as a real checkpoint would be: the family's own architecture class
(`Qwen2ForCausalLM`, `Qwen3ForCausalLM`, `LlamaForCausalLM`, `GptOssForCausalLM`, ...), a
byte-level BPE tokenizer trained here on conversations rendered with the chat template TRL ships
for that family, the family's special tokens, and a `generation_config` whose `eos_token_id`
lists the family's stop tokens. `save_family(name, out)` writes a `save_pretrained` directory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)
from transformers.utils.chat_template_utils import render_jinja_template
from trl import chat_template_utils as trl_templates

from tests.models_sample import CONVERSATIONS
from tests.tiny_agent import api_episodes


@dataclass(frozen=True)
class Family:
    """A chat-model family: TRL template, special tokens, stop tokens and architecture."""

    name: str
    template: str
    model_type: str
    special_tokens: tuple[str, ...]
    eos: str
    stop: tuple[str, ...]
    pad: str
    bos: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def chat_template(self) -> str:
        return getattr(trl_templates, self.template)


_SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}
_QWEN_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>")

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "qwen2_5",
            "qwen2_5_chat_template",
            "qwen2",
            _QWEN_TOKENS,
            eos="<|im_end|>",
            stop=("<|im_end|>", "<|endoftext|>"),
            pad="<|endoftext|>",
        ),
        Family(
            "qwen3",
            "qwen3_chat_template",
            "qwen3",
            (*_QWEN_TOKENS, "<think>", "</think>", "<tool_response>", "</tool_response>"),
            eos="<|im_end|>",
            stop=("<|im_end|>", "<|endoftext|>"),
            pad="<|endoftext|>",
            config={"head_dim": 16},
        ),
        Family(
            "llama3_2",
            "llama3_2_chat_template",
            "llama",
            (
                "<|begin_of_text|>",
                "<|end_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
                "<|eom_id|>",
                "<|python_tag|>",
                "<|finetune_right_pad_id|>",
            ),
            eos="<|eot_id|>",
            stop=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
            pad="<|finetune_right_pad_id|>",
            bos="<|begin_of_text|>",
        ),
        Family(
            "gptoss",
            "gptoss_chat_template",
            "gpt_oss",
            (
                "<|startoftext|>",
                "<|endoftext|>",
                "<|start|>",
                "<|end|>",
                "<|message|>",
                "<|channel|>",
                "<|constrain|>",
                "<|return|>",
                "<|call|>",
            ),
            eos="<|return|>",
            stop=("<|return|>", "<|call|>"),
            pad="<|endoftext|>",
            config={
                "head_dim": 16,
                "num_local_experts": 4,
                "num_experts_per_tok": 2,
                "sliding_window": 64,
                "layer_types": ["sliding_attention", "full_attention"],
                "max_position_embeddings": 131072,
            },
        ),
        Family(
            "gemma3",
            "gemma3_chat_template",
            "gemma3_text",
            ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
            eos="<end_of_turn>",
            stop=("<eos>", "<end_of_turn>"),
            pad="<pad>",
            bos="<bos>",
            config={"head_dim": 16},
        ),
    )
}
SUPPORTED = ("qwen2_5", "qwen3", "llama3_2", "gptoss")
"""Families the audit trains and rolls out; the others are refused when loaded."""


def _corpus(family: Family) -> list[str]:
    """Scripted API episodes and the sample conversations rendered with the family's
    template, with small variations."""
    texts = []
    episodes = api_episodes(24, biased=True) + api_episodes(24, biased=False)
    conversations = [(e.chat_messages(), e.tools) for e in episodes]
    for messages, tools in conversations:
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages], tools=tools, chat_template=family.chat_template
            )
            texts.append(rendered[0])
        except Exception:  # noqa: BLE001 - a refused family renders plain text instead
            texts.extend(str(m.get("content") or "") for m in messages)
    for n in range(8):
        for messages, tools in CONVERSATIONS:
            varied = copy.deepcopy(messages)
            for message in varied:
                if message.get("content") is None:
                    message["content"] = ""
                if message["role"] == "user":
                    message["content"] += f" (request {n})"
            try:
                rendered, _ = render_jinja_template(
                    conversations=[varied], tools=tools, chat_template=family.chat_template
                )
                texts.append(rendered[0])
            except Exception:  # noqa: BLE001 - a refused family renders plain text instead
                texts.extend(str(m["content"]) for m in varied)
    return texts


def train_family_tokenizer(family: Family, vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the family's special tokens and TRL's template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, normalized=False, special=True) for t in family.special_tokens]
    backend.add_special_tokens(specials)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(family.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(family), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=family.eos,
        pad_token=family.pad,
        bos_token=family.bos,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = family.chat_template
    return tokenizer


def family_config(
    family: Family, vocab_size: int, tokenizer: PreTrainedTokenizerFast
) -> PretrainedConfig:
    """A tiny config of the family's architecture class for `vocab_size` tokens."""
    values = {**_SMALL, **family.config}
    config: PretrainedConfig = AutoConfig.for_model(
        family.model_type, vocab_size=vocab_size, **values
    )
    config.eos_token_id = tokenizer.convert_tokens_to_ids(family.eos)
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    return config


def save_family(name: str, out: Path, seed: int = 0) -> Path:
    """Write a tiny random model of family `name` with its trained tokenizer to `out`."""
    import torch

    family = FAMILIES[name]
    tokenizer = train_family_tokenizer(family)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family, len(tokenizer), tokenizer))
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in family.stop],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
