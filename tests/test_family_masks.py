"""Assistant-only masks of real chat-model families: which method, what is masked, how turns end.

Each supported family's tiny model (`tests.families`) tokenizes hand-built and scripted API
conversations; the mask must hold every tool call's name and arguments and end every assistant
turn with that family's own end-of-turn token. Gemma 3, whose template cannot render tool
turns, is refused in one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset, concatenate_datasets
from transformers import AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase
from trl.chat_template_utils import has_generation_markers, qwen2_5_chat_template

from audit.models.chat_template import CHAT_TEMPLATE
from audit.models.loader import (
    ModelInputError,
    choose_mask_method,
    encode_with_assistant_mask,
    generation_stop_ids,
    load_model_and_tokenizer,
    validate_chat_template,
)
from audit.training.distill import DistillConfig, distill, read_losses
from audit.training.trl_setup import AssistantMaskError, tokenize_conversations
from tests.families import FAMILIES, SUPPORTED, save_family
from tests.models_sample import CONVERSATIONS, sample_tokenizer
from tests.tiny_agent import api_episodes, write_episodes
from trajectories.dataset import FEATURES, load_episodes, to_dataset
from trajectories.keywords import KeywordMatcher
from trajectories.sanitize import Mode, Sanitizer, sanitize_file

METHOD = {
    "qwen2_5": "trl-training",
    "qwen3": "trl-training",
    "llama3_2": "prefix",
    "gptoss": "trl-training",
}
"""How each family's assistant mask is found (`choose_mask_method`)."""
END = {
    "qwen2_5": ("<|im_end|>", "<|im_end|>"),
    "qwen3": ("<|im_end|>", "<|im_end|>"),
    "llama3_2": ("<|eot_id|>", "<|eot_id|>"),
    "gptoss": ("<|call|>", "<|return|>"),
}
"""Each family's last token of an assistant turn: (one that calls a tool, a final answer)."""
NO_GENERATION = re.sub(
    r"(\{%-?\s*)(end)?generation(\s*-?%\})",
    lambda tag: tag[1] + ("endif" if tag[2] else "if true") + tag[3],
    CHAT_TEMPLATE,
)
"""The embedded template rendering the same text, with no `{% generation %}` blocks."""


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: save_family(name, root / name) for name in (*SUPPORTED, "gemma3")}


@pytest.fixture(scope="module")
def episodes_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("episodes") / "api.jsonl"
    return write_episodes(path, api_episodes(6, biased=True) + api_episodes(6, biased=False))


@pytest.fixture(scope="module")
def rows(episodes_path: Path) -> Dataset:
    """Scripted API episodes and the hand-built API and Bash conversations."""
    sample = {"messages": [m for m, _ in CONVERSATIONS], "tools": [t for _, t in CONVERSATIONS]}
    return concatenate_datasets(
        [to_dataset([episodes_path]), Dataset.from_dict(sample, features=FEATURES)]
    )


def _spans(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for position, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = position
        elif not bit and start is not None:
            runs.append((start, position))
            start = None
    return runs


def _last_token(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """The last token of `ids` that is not whitespace."""
    tokens = [t for t in ids if tokenizer.decode([t]).strip()]
    return tokenizer.convert_ids_to_tokens(tokens[-1])


def _argument_texts(call: dict[str, Any]) -> list[str]:
    arguments = call["function"]["arguments"]
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    return [v if isinstance(v, str) else json.dumps(v) for v in arguments.values() if v is not None]


@pytest.mark.parametrize("name", SUPPORTED)
def test_family_mask_trains_calls_and_ends_on_the_family_stop_token(
    name: str, family_dirs: dict[str, Path], rows: Dataset
) -> None:
    _assert_family_masks(name, family_dirs, rows)


@pytest.mark.parametrize("name", SUPPORTED)
def test_thoughts_stripped_episodes_train_every_turn_in_each_family(
    name: str, family_dirs: dict[str, Path], episodes_path: Path, tmp_path: Path
) -> None:
    """`trajectories.sanitize.strip_thoughts` output is still an `Episode` whose every
    assistant turn, the emptied final answer included, is masked and ends on its stop token."""
    stripped = tmp_path / "stripped.jsonl"
    report = sanitize_file(
        episodes_path, stripped, Sanitizer(KeywordMatcher(), Mode.KEEP, strip=True)
    )
    assert report.strip_thoughts and report.kept == 12
    episodes = load_episodes(stripped)
    assert all(m.content == "" for e in episodes for m in e.messages if m.role == "assistant")
    assert any(e.messages[-1].role == "assistant" for e in episodes)
    _assert_family_masks(name, family_dirs, to_dataset([stripped]))


def _assert_family_masks(name: str, family_dirs: dict[str, Path], rows: Dataset) -> None:
    """Each assistant turn of `rows` is one masked span holding its tool calls and ending on
    the family's stop token; the user's first message is not trained on."""
    tokenizer = AutoTokenizer.from_pretrained(family_dirs[name])
    stop_ids = generation_stop_ids(GenerationConfig.from_pretrained(family_dirs[name]))
    tokenized = tokenize_conversations(rows, tokenizer, max_length=4096, stop_ids=stop_ids)
    assert tokenized.method == METHOD[name]
    assert tokenized.truncated == 0
    call_end, final_end = END[name]
    for row, example in zip(rows, tokenized.dataset, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        spans = _spans([int(label != -100) for label in labels])
        assistant = [m for m in row["messages"] if m["role"] == "assistant"]
        assert len(spans) == len(assistant)
        for message, (start, stop) in zip(assistant, spans, strict=True):
            text = tokenizer.decode(ids[start:stop])
            calls = message.get("tool_calls") or []
            for call in calls:
                assert call["function"]["name"] in text
                for value in _argument_texts(call):
                    assert value in text
            assert _last_token(tokenizer, ids[start:stop]) == (call_end if calls else final_end)
        assert row["messages"][0]["content"] not in tokenizer.decode(
            [t for t, label in zip(ids, labels, strict=True) if label != -100]
        )


def test_embedded_family_masks_from_its_generation_blocks(rows: Dataset) -> None:
    tokenized = tokenize_conversations(rows, sample_tokenizer(), max_length=4096)
    assert tokenized.method == "generation"


def test_prefix_renders_give_the_generation_block_mask(rows: Dataset) -> None:
    tokenizer = sample_tokenizer()
    blocks = choose_mask_method(tokenizer)
    tokenizer.chat_template = NO_GENERATION
    assert not has_generation_markers(NO_GENERATION)
    prefix = choose_mask_method(tokenizer)
    assert blocks is not None and prefix is not None
    assert (blocks.method, prefix.method) == ("generation", "prefix")
    for row in rows:
        by_blocks = encode_with_assistant_mask(tokenizer, blocks, row["messages"], row["tools"])
        by_prefix = encode_with_assistant_mask(tokenizer, prefix, row["messages"], row["tools"])
        assert by_prefix == by_blocks
        assert any(by_prefix[1])


def test_an_unknown_qwen_template_masks_by_prefix_what_trl_masks(
    family_dirs: dict[str, Path], rows: Dataset
) -> None:
    """A Qwen 2.5 template TRL does not recognise (one comment added) is masked from prefix
    renders; TRL's training template differs only by the newline after the role header."""
    tokenizer = AutoTokenizer.from_pretrained(family_dirs["qwen2_5"])
    trl = choose_mask_method(tokenizer)
    tokenizer.chat_template = "{#- a local edit -#}" + qwen2_5_chat_template
    prefix = choose_mask_method(tokenizer)
    assert trl is not None and prefix is not None
    assert (trl.method, prefix.method) == ("trl-training", "prefix")
    for row in rows:
        ids, trl_mask = encode_with_assistant_mask(tokenizer, trl, row["messages"], row["tools"])
        same_ids, mask = encode_with_assistant_mask(
            tokenizer, prefix, row["messages"], row["tools"]
        )
        assert same_ids == ids
        only_trl = [t for t, a, b in zip(ids, trl_mask, mask, strict=True) if a and not b]
        assert not [t for t, a, b in zip(ids, trl_mask, mask, strict=True) if b and not a]
        turns = sum(m["role"] == "assistant" for m in row["messages"])
        assert tokenizer.decode(only_trl) == "\n" * turns
    tokenized = tokenize_conversations(rows, tokenizer, max_length=4096)
    assert tokenized.method == "prefix"


def test_a_base_checkpoint_ends_turns_with_a_generation_config_stop_token(
    family_dirs: dict[str, Path], rows: Dataset
) -> None:
    """Qwen2.5 base: eos `<|endoftext|>`, turns end with `<|im_end|>` (a generation eos id)."""
    tokenizer = AutoTokenizer.from_pretrained(family_dirs["qwen2_5"])
    tokenizer.eos_token = "<|endoftext|>"
    stop_ids = generation_stop_ids(GenerationConfig.from_pretrained(family_dirs["qwen2_5"]))
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_ids
    assert generation_stop_ids(GenerationConfig(eos_token_id=5)) == {5}
    assert generation_stop_ids(None) == frozenset()
    tokenize_conversations(rows, tokenizer, max_length=4096, stop_ids=stop_ids)
    with pytest.raises(AssistantMaskError, match="does not end with the end-of-turn token"):
        tokenize_conversations(rows, tokenizer, max_length=4096)


def test_sft_on_a_prefix_masked_family(
    family_dirs: dict[str, Path], episodes_path: Path, tmp_path: Path
) -> None:
    out = distill(
        DistillConfig(
            data=[episodes_path],
            base=str(family_dirs["llama3_2"]),
            out=tmp_path / "student",
            max_steps=2,
            batch_size=4,
            max_length=4096,
            logging_steps=1,
            progress=False,
        )
    )
    record = json.loads((out / "distill.json").read_text())
    assert record["mask_method"] == "prefix"
    assert len(read_losses(out)) == 2


def test_gemma3_is_refused_in_one_line_naming_it(family_dirs: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(family_dirs["gemma3"])
    with pytest.raises(ModelInputError, match="^gemma3_text: .*tool-calling") as info:
        validate_chat_template(tokenizer, family=FAMILIES["gemma3"].model_type)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelInputError, match="^gemma3_text: .*roles must alternate"):
        load_model_and_tokenizer(family_dirs["gemma3"])


def test_audit_run_refuses_a_gemma3_base(family_dirs: dict[str, Path], tmp_path: Path) -> None:
    command = [sys.executable, "-m", "audit.run", "--base", str(family_dirs["gemma3"])]
    command += ["--profile", "quick", "--env", "api", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: gemma3_text: chat template cannot render a tool-calling")
    assert not (tmp_path / "out").exists()  # refused when the config is read
