"""Loading saved models and checking chat templates for tool-calling SFT."""

from __future__ import annotations

import re

import huggingface_hub.constants
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.chat_template_utils import qwen3_chat_template, qwen3_training_chat_template

from audit.models.chat_template import CHAT_TEMPLATE
from audit.models.config import build_model
from audit.models.loader import (
    ModelInputError,
    load_model_and_tokenizer,
    training_chat_template,
    validate_chat_template,
)
from tests.models_sample import CONVERSATIONS, sample_tokenizer

NO_GENERATION = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", CHAT_TEMPLATE)
NOT_PREFIX = "{{ messages | length }}" + NO_GENERATION  # no way to find the assistant tokens
MESSAGES_ONLY = (
    "{% for m in messages %}<|user|>{% generation %}{{ m.content }}<|end|>{% endgeneration %}"
    "{% endfor %}"
)
NO_TOOL_ROLE = CHAT_TEMPLATE.replace("<|tool|>{{ message.content", "<|tool|>{{ ''")
CALL_OUTSIDE_MASK = (
    "{{ bos_token }}{% for t in tools %}{{ t.function.name }}{% endfor %}"
    "{% for m in messages %}{% if m.role == 'assistant' %}"
    "{% for c in m.tool_calls or [] %}{{ c.function | tojson }}{% endfor %}"
    "<|assistant|>{% generation %}{{ m.content }}<|end|>{% endgeneration %}"
    "{% else %}{{ m.content }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model and its tokenizer saved with `save_pretrained`."""
    path = tmp_path_factory.mktemp("tiny")
    tokenizer = sample_tokenizer()
    model = build_model("tiny", vocab_size=len(tokenizer), seed=5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model


def _logits(model, tokenizer):
    messages, tools = CONVERSATIONS[1]
    batch = tokenizer.apply_chat_template(
        messages, tools=tools, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits


def test_auto_classes_round_trip(saved):
    path, model = saved
    loaded = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert torch.equal(_logits(loaded, tokenizer), _logits(model, tokenizer))


def test_load_model_and_tokenizer_defaults_to_float32_cpu(saved):
    path, model = saved
    loaded, tokenizer = load_model_and_tokenizer(path)
    assert loaded.dtype == torch.float32
    assert loaded.device.type == "cpu"
    assert not loaded.training
    assert torch.equal(_logits(loaded, tokenizer), _logits(model, tokenizer))
    loaded_bf16, _ = load_model_and_tokenizer(str(path), dtype=torch.bfloat16, device="cpu")
    assert loaded_bf16.dtype == torch.bfloat16


def test_loaded_model_generates_a_left_padded_batch(saved):
    path, _ = saved
    model, tokenizer = load_model_and_tokenizer(path)
    prompts = [
        tokenizer.apply_chat_template(m[:1], tools=t, add_generation_prompt=True, tokenize=False)
        for m, t in CONVERSATIONS
    ]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    assert batch["attention_mask"][:, 0].tolist().count(0) == 1
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)


def test_validate_accepts_the_embedded_template():
    tokenizer = sample_tokenizer()
    validate_chat_template(tokenizer)
    assert training_chat_template(tokenizer) == CHAT_TEMPLATE


def test_validate_accepts_a_known_template_that_trl_patches_for_training():
    tokenizer = sample_tokenizer()
    tokenizer.chat_template = qwen3_chat_template
    validate_chat_template(tokenizer)
    assert training_chat_template(tokenizer) == qwen3_training_chat_template


@pytest.mark.parametrize(
    ("template", "messages"),
    [
        (None, ["no chat template"]),
        (NOT_PREFIX, ["has no {% generation %} blocks, TRL has no training version of it and"]),
        (
            MESSAGES_ONLY,
            ["ignores `tools`", "does not render assistant `tool_calls`"],
        ),
        (NO_TOOL_ROLE, ["does not render `tool` role messages"]),
        (CALL_OUTSIDE_MASK, ["keeps the tool call outside the assistant mask (generation)"]),
        (
            "{{ raise_exception('no tools here') }}",
            ["cannot render a tool-calling conversation", "no tools here"],
        ),
    ],
)
def test_validate_names_what_is_missing(template, messages):
    tokenizer = sample_tokenizer()
    tokenizer.chat_template = template
    with pytest.raises(ModelInputError) as info:
        validate_chat_template(tokenizer)
    text = str(info.value)
    assert "\n" not in text
    for message in messages:
        assert message in text
    if template == MESSAGES_ONLY:
        assert "tool` role" not in text and "generation" not in text


def test_load_rejects_a_model_without_a_usable_template(saved, tmp_path):
    path, model = saved
    tokenizer = sample_tokenizer()
    tokenizer.chat_template = NOT_PREFIX
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelInputError, match="no \\{% generation %\\} blocks"):
        load_model_and_tokenizer(tmp_path)


def test_load_errors_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file.bin").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (tmp_path / "missing", "no such model directory"),
        ("./missing_model", "no such model directory"),
        ("a/b/c", "no such model directory"),
        (tmp_path / "file.bin", "not a directory"),
        (tmp_path / "empty", "no config.json"),
    ]
    for source, message in cases:
        with pytest.raises(ModelInputError, match=message) as info:
            load_model_and_tokenizer(source)
        assert "\n" not in str(info.value)
    build_model("tiny", vocab_size=300, seed=0).config.save_pretrained(tmp_path / "weightless")
    with pytest.raises(ModelInputError, match="cannot load"):
        load_model_and_tokenizer(tmp_path / "weightless")


def test_unreachable_hub_id_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelInputError, match="cannot load no-such-org/no-such-model: .*") as info:
        load_model_and_tokenizer("no-such-org/no-such-model")
    assert "local directory" in str(info.value)
    assert "\n" not in str(info.value)
