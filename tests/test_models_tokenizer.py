"""The embedded byte-level BPE tokenizer: control tokens, round trips, masks, save/load."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models
from transformers import AutoTokenizer
from trl.chat_template_utils import (
    is_chat_template_prefix_preserving,
    is_chat_template_stop_token_trained,
    supports_tool_calling,
)

from audit.models.chat_template import (
    CHAT_TEMPLATE,
    END,
    SPECIAL_TOKENS,
    render_conversation,
    render_tool_call,
)
from audit.models.tokenizer import train_tokenizer, wrap_tokenizer
from tests.models_sample import CONVERSATIONS, corpus, sample_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return sample_tokenizer()


def test_control_tokens_have_fixed_ids_and_roles(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(9))
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (
        "<|pad|>",
        "<|bos|>",
        "<|end|>",
    )
    assert tokenizer.padding_side == "left"
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert 256 + len(SPECIAL_TOKENS) < len(tokenizer) <= 600


def test_merges_never_touch_control_tokens(tokenizer):
    texts = [tokenizer.decode([i]) for i in range(len(SPECIAL_TOKENS), len(tokenizer))]
    assert not [text for text in texts if "<|" in text or "|>" in text]


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_round_trip_and_short_sequences(tokenizer, index):
    messages, tools = CONVERSATIONS[index]
    rendered = render_conversation(messages, tools)
    ids = tokenizer(rendered)["input_ids"]
    assert tokenizer.decode(ids) == rendered
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.eos_token_id) == rendered.count(END)
    assert len(ids) < len(rendered) // 2
    assert len(ids) < 150
    assert tokenizer.apply_chat_template(messages, tools=tools, return_dict=False) == ids


@pytest.mark.parametrize(
    "text", ["héllo ✓ \x00 tab\there", "never seen: ζβγ 😀 \r\n", "x<|end|>y<|call|>{}", ""]
)
def test_round_trip_unseen_text(tokenizer, text):
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_assistant_mask_covers_exactly_the_assistant_output(tokenizer, index):
    messages, tools = CONVERSATIONS[index]
    out = tokenizer.apply_chat_template(
        messages, tools=tools, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(mask) == len(ids) and 0 < sum(mask) < len(ids)
    expected_spans = []
    for message in messages:
        if message["role"] != "assistant":
            continue
        calls = [c["function"] for c in message.get("tool_calls", [])]
        text = (message["content"] or "") + "".join(
            render_tool_call(c["name"], c["arguments"]) for c in calls
        )
        expected_spans.append(text + END)
    spans, current = [], []
    for token_id, masked in zip(ids, mask, strict=True):
        if masked:
            current.append(token_id)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    assert [tokenizer.decode(span) for span in spans] == expected_spans
    assert all(span[-1] == tokenizer.eos_token_id for span in spans)
    unmasked = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    for message in messages:
        if message["role"] in ("user", "tool"):
            assert message["content"] in unmasked
    assert "<|assistant|>" in unmasked and "<|call|>" not in unmasked


def test_generation_prompt_ends_on_assistant_token_outside_mask(tokenizer):
    messages, tools = CONVERSATIONS[0]
    out = tokenizer.apply_chat_template(
        messages[:3],
        tools=tools,
        add_generation_prompt=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    assert out["input_ids"][-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert out["assistant_masks"][-1] == 0
    plain = tokenizer.apply_chat_template(messages[:3], tools=tools, return_dict=False)
    assert out["input_ids"] == plain + [tokenizer.convert_tokens_to_ids("<|assistant|>")]


def test_trl_accepts_the_template_for_tool_calling_sft(tokenizer):
    assert supports_tool_calling(tokenizer)
    assert is_chat_template_prefix_preserving(tokenizer)
    assert is_chat_template_stop_token_trained(tokenizer)


def test_save_and_load_with_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    messages, tools = CONVERSATIONS[1]
    rendered = render_conversation(messages, tools)
    assert loaded(rendered)["input_ids"] == tokenizer(rendered)["input_ids"]
    assert loaded.chat_template == CHAT_TEMPLATE
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.padding_side) == (0, 2, "left")
    batch = loaded(["<|user|>a<|end|>", "<|user|>a longer one<|end|>"], padding=True)
    assert batch["input_ids"][0][0] == loaded.pad_token_id
    assert batch["attention_mask"][0][0] == 0


def test_training_is_deterministic():
    first = train_tokenizer(corpus(), vocab_size=500)
    second = train_tokenizer(corpus(), vocab_size=500)
    assert first.get_vocab() == second.get_vocab()


def test_wrap_rejects_a_tokenizer_without_control_tokens():
    with pytest.raises(ValueError, match="lacks control tokens: <\\|pad\\|>"):
        wrap_tokenizer(Tokenizer(models.BPE()))
