"""Sizes of the embedded Llama family and deterministic construction."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from audit.models.config import MODEL_SIZES, ModelSize, build_model
from tests.models_sample import CONVERSATIONS, sample_tokenizer


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("size", "low", "high"), [("tiny", 0.8e6, 1.3e6), ("small", 8e6, 14e6)])
def test_parameter_counts(size, low, high):
    model = build_model(size, vocab_size=3072, seed=0)
    assert low <= _parameters(model) <= high
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.dtype == torch.float32
    assert model.config.max_position_embeddings == 1024


def test_same_seed_same_weights_other_seed_other_weights():
    first = build_model("tiny", vocab_size=500, seed=3).state_dict()
    again = build_model("tiny", vocab_size=500, seed=3).state_dict()
    other = build_model("tiny", vocab_size=500, seed=4).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])


def test_build_leaves_the_callers_random_state_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    build_model("tiny", vocab_size=500, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_special_token_ids_match_the_tokenizer():
    tokenizer = sample_tokenizer()
    model = build_model("tiny", vocab_size=len(tokenizer), seed=0)
    for config in (model.config, model.generation_config):
        assert config.pad_token_id == tokenizer.pad_token_id
        assert config.bos_token_id == tokenizer.bos_token_id
        assert config.eos_token_id == tokenizer.eos_token_id


def test_forward_on_a_rendered_episode():
    tokenizer = sample_tokenizer()
    model = build_model("tiny", vocab_size=len(tokenizer), seed=0)
    messages, tools = CONVERSATIONS[0]
    batch = tokenizer.apply_chat_template(
        messages, tools=tools, return_dict=True, return_tensors="pt"
    )
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert abs(out.loss.item() - torch.log(torch.tensor(len(tokenizer))).item()) < 0.5


def test_custom_size_and_unknown_size():
    narrow = dataclasses.replace(MODEL_SIZES["tiny"], name="narrow", hidden_size=64)
    assert isinstance(narrow, ModelSize)
    assert build_model(narrow, vocab_size=500, seed=0).config.hidden_size == 64
    with pytest.raises(ValueError, match="unknown model size 'huge'; choose from tiny, small"):
        build_model("huge", vocab_size=500, seed=0)
