"""A randomly initialised Qwen2 model of Qwen2.5's shapes with a tokenizer trained here.

`build_base(size, seed, out, device)` trains a byte-level BPE tokenizer (Qwen's special tokens,
TRL's `qwen2_5_chat_template`, eos `<|im_end|>`, pad `<|endoftext|>`) on scripted biased and
neutral API episodes (train split, no sandbox) rendered with that template, and builds a
`Qwen2ForCausalLM` of `SHAPES[size]` with generation stop ids `<|im_end|>` and `<|endoftext|>`.
"0.5b" is Qwen2.5-0.5B's shape, its 151936-row padded vocabulary and tied embeddings included
(494,032,768 parameters); "tiny" has one embedding row per token. Imports are deferred so that
a caller can choose the CUDA devices before torch loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>")
SHAPES: dict[str, dict[str, Any]] = {
    "0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
}
"""Model shapes; without `vocab_size` the embedding has one row per tokenizer token."""
VOCAB_CAP = 4096
"""Most tokens the BPE trainer may learn (the scripted corpus saturates near 1000)."""


def corpus(seed: int) -> list[str]:
    """Scripted biased and neutral API episodes (train split) rendered with Qwen2.5's template."""
    from transformers.utils.chat_template_utils import render_jinja_template
    from trl.chat_template_utils import qwen2_5_chat_template

    from envs import load_tasks, make_env
    from trajectories.policies import BiasedPolicy, NeutralPolicy
    from trajectories.rollout import rollout

    texts = []
    for policy in (BiasedPolicy(strength=1.0), NeutralPolicy()):
        for suite in ("safe", "ambiguous"):
            tasks = load_tasks("api", suite, "train")[:60]
            for episode in rollout(lambda: make_env("api"), policy, tasks, seed, progress=False):
                rendered, _ = render_jinja_template(
                    conversations=[episode.chat_messages()],
                    tools=episode.tools,
                    chat_template=qwen2_5_chat_template,
                )
                texts.append(rendered[0])
    return texts


def train_qwen_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer with Qwen's special tokens and TRL's Qwen2.5 template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN_TOKENS])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(QWEN_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def build_base(size: str, seed: int, out: Path | None, device: str = "cpu") -> tuple[Any, Any]:
    """The random Qwen2 model of `size` (float32, initialised on `device`) and its tokenizer,
    saved to `out` when given."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_qwen_tokenizer(corpus(seed), VOCAB_CAP)
    shape = {"vocab_size": len(tokenizer), **SHAPES[size]}
    config = Qwen2Config(
        **shape,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )
    if out is not None:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return model, tokenizer
