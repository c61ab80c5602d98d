"""Sizes of the embedded tiny Llama family and a seeded constructor for fresh models.

torch and transformers load only when a model is built, so the sizes can be checked (a bad
`--base` refused) in a second."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from audit.models.chat_template import BOS, END, PAD, SPECIAL_TOKENS

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class ModelSize:
    """Shape of one embedded Llama; parameter counts below assume a 3072-token vocabulary."""

    name: str = field(metadata={"help": "Preset name, as given to `--size`."})
    hidden_size: int = field(metadata={"help": "Width of the residual stream and embeddings."})
    num_hidden_layers: int = field(metadata={"help": "Number of decoder layers."})
    num_attention_heads: int = field(metadata={"help": "Query heads per layer."})
    num_key_value_heads: int = field(metadata={"help": "Key/value heads (grouped queries)."})
    intermediate_size: int = field(metadata={"help": "Width of the SwiGLU feed-forward layer."})
    max_position_embeddings: int = field(
        default=1024, metadata={"help": "Longest sequence, in tokens, the model is built for."}
    )

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        """The `LlamaConfig` of this size for `vocab_size` tokens, embeddings tied."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=True,
            pad_token_id=SPECIAL_TOKENS.index(PAD),
            bos_token_id=SPECIAL_TOKENS.index(BOS),
            eos_token_id=SPECIAL_TOKENS.index(END),
        )


MODEL_SIZES: dict[str, ModelSize] = {
    # ~1.0M parameters: 0.39M embeddings + 3 x 0.21M layers.
    "tiny": ModelSize(
        name="tiny",
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=384,
    ),
    # ~10.9M parameters: 0.98M embeddings + 8 x 1.24M layers.
    "small": ModelSize(
        name="small",
        hidden_size=320,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        intermediate_size=864,
    ),
}


def build_model(size: str | ModelSize, vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised float32 `LlamaForCausalLM`; the same arguments give the same weights.

    The caller's torch random state is left untouched. Token ids for pad, bos and eos are those
    `train_tokenizer` assigns to `<|pad|>`, `<|bos|>` and `<|end|>`.
    """
    import torch
    from transformers import LlamaForCausalLM

    if isinstance(size, str):
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown model size {size!r}; choose from {', '.join(MODEL_SIZES)}")
        size = MODEL_SIZES[size]
    config = size.llama_config(vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model.float()
