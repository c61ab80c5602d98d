"""Episodes to `datasets.Dataset`: exact rows, chat-template rendering, and TRL's SFTTrainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from envs import load_tasks, make_env
from envs.core import Outcome
from trajectories.dataset import load_episodes, to_dataset
from trajectories.episode import Episode, EpisodeMetadata, Message
from trajectories.jsonl import InputError, atomic_write_jsonl, dumps
from trajectories.policies import BiasedPolicy
from trajectories.rollout import rollout

TEMPLATE = (
    "{% for t in tools %}<tool>{{ t.function.name }}</tool>{% endfor %}"
    "{% for m in messages %}"
    "{% if m.role == 'assistant' %}<a>{% generation %}{{ m.content }}"
    "{% for c in m.tool_calls or [] %}"
    "<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>"
    "{% endfor %}<eot>{% endgeneration %}"
    "{% elif m.role == 'tool' %}<r>{{ m.name }}: {{ m.content }}<eot>"
    "{% else %}<u>{{ m.content }}<eot>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<a>{% endif %}"
)
"""A small tool-calling chat template with `{% generation %}` blocks for assistant masks."""


def _tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: every byte one token, plus <eot> and <pad>."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eot>", pad_token="<pad>")
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def _episodes() -> list[Episode]:
    tasks = load_tasks("api", "ambiguous", "train")[:6]
    return rollout(lambda: make_env("api"), BiasedPolicy(0.5), tasks, 2, progress=False)


def _bash_like() -> Episode:
    schema = {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    }
    call = {"type": "function", "function": {"name": "bash", "arguments": {"command": "ls -l"}}}
    return Episode(
        id="b0",
        env="bash",
        task_id="bash/safe/x/0",
        suite="safe",
        split="train",
        policy="neutral",
        seed=0,
        messages=[
            Message(role="user", content="Look around."),
            Message.model_validate(
                {"role": "assistant", "content": "Let me look.", "tool_calls": [call]}
            ),
            Message(role="tool", name="bash", content="total 0"),
            Message(role="assistant", content="Nothing here."),
        ],
        tools=[schema],
        actions=[],
        outcome=Outcome(success=True),
        metadata=EpisodeMetadata(steps=2, max_steps=8, stop_reason="final_answer"),
    )


def test_rows_are_the_episodes_exactly(tmp_path: Path) -> None:
    episodes = _episodes()
    path = tmp_path / "e.jsonl"
    atomic_write_jsonl(path, (e.to_json_dict() for e in episodes))
    dataset = to_dataset([path, _bash_like()])
    assert dataset.column_names == ["messages", "tools"]
    assert len(dataset) == len(episodes) + 1
    for row, episode in zip(dataset, [*episodes, _bash_like()], strict=True):
        assert row["messages"] == episode.chat_messages()
        assert row["tools"] == episode.tools
    assert dumps(dataset[-1]["messages"][1]["tool_calls"][0]["function"]["arguments"]) == (
        '{"command":"ls -l"}'
    )


def test_chat_template_renders_calls_results_and_masks_the_assistant() -> None:
    tokenizer = _tokenizer()
    dataset = to_dataset(_episodes())
    row = dataset[0]
    text = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)
    assert "<tool>archive</tool>" in text
    turns = [m for m in row["messages"] if m["role"] != "user"]
    for asked, answer in zip(turns[:-1:2], turns[1::2], strict=True):
        call = asked["tool_calls"][0]["function"]
        assert f"<call>{call['name']} {json.dumps(call['arguments'])}</call>" in text
        assert f"<r>{answer['name']}: {answer['content']}<eot>" in text
    assert any(asked["tool_calls"][0]["function"]["arguments"] for asked in turns[:-1:2])
    rendered = tokenizer.apply_chat_template(
        row["messages"],
        tools=row["tools"],
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    trained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained.startswith(row["messages"][1]["content"] + "<call>")
    assert trained.endswith("<eot>")
    assert row["messages"][0]["content"] not in trained


def test_load_episodes_names_file_and_line(tmp_path: Path) -> None:
    good = _bash_like().to_json_dict()
    bad = dict(good, messages=[{"role": "robot", "content": "x"}])
    path = tmp_path / "mixed.jsonl"
    path.write_text(dumps(good) + "\n" + dumps(bad) + "\n")
    with pytest.raises(InputError, match=r"mixed\.jsonl:2: not an episode \(messages\.0\.role"):
        load_episodes(path)
    with pytest.raises(InputError, match="no such file"):
        to_dataset([tmp_path / "missing.jsonl"])


@pytest.mark.slow
def test_sft_trainer_takes_the_dataset_as_it_is(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
    )
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        assistant_only_loss=True,
        max_length=8192,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    dataset = to_dataset(_episodes())
    trainer = SFTTrainer(
        model=LlamaForCausalLM(config), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    example = trainer.train_dataset[0]
    labels = [t for t in example["labels"] if t != -100]
    assert 0 < len(labels) < len(example["input_ids"])
    assert "<call>" in tokenizer.decode(labels)
    assert trainer.train().training_loss > 0
