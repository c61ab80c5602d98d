"""Student distillation: SFT and KD on real tiny models, masks, LoRA, determinism, resume, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from audit.models.loader import ModelInputError
from audit.training.distill import DistillConfig, distill, main, read_losses
from audit.training.trl_setup import (
    AssistantMaskError,
    check_assistant_mask,
    parse_lora,
    tokenize_conversations,
)
from tests.tiny_agent import api_episodes, build_base, write_episodes
from trajectories.dataset import to_dataset
from trajectories.jsonl import InputError

FAST = {"epochs": 3.0, "batch_size": 8, "logging_steps": 1, "progress": False}
END_IN_GENERATION = "<|end|>\n{%- endgeneration -%}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distill")


@pytest.fixture(scope="module")
def base(workdir: Path) -> Path:
    return build_base(workdir / "base")


@pytest.fixture(scope="module")
def data(workdir: Path) -> Path:
    return write_episodes(workdir / "data.jsonl", api_episodes(24, biased=True))


@pytest.fixture(scope="module")
def sft_out(workdir: Path, base: Path, data: Path) -> Path:
    return distill(DistillConfig(data=[data], base=str(base), out=workdir / "sft", **FAST))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def _same_weights(a: Path, b: Path) -> bool:
    left, right = _weights(a), _weights(b)
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _base_with_template(base: Path, out: Path, template: str | None) -> Path:
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = template
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_sft_loss_falls_and_the_student_loads(sft_out: Path, base: Path) -> None:
    losses = read_losses(sft_out)
    assert len(losses) == 9  # 3 epochs x 3 batches, every step logged
    assert losses[-1] < losses[0] - 0.5
    model = AutoModelForCausalLM.from_pretrained(sft_out)
    tokenizer = AutoTokenizer.from_pretrained(sft_out)
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(base).get_vocab()
    assert model.dtype == torch.float32
    assert not (sft_out / "checkpoints").exists()
    assert not _same_weights(sft_out, base)


def test_assistant_mask_covers_calls_and_end_tokens(base: Path, data: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = to_dataset([data])
    tokenized = tokenize_conversations(rows, tokenizer, max_length=1024)
    assert tokenized.truncated == 0
    for row, example in zip(rows, tokenized.dataset, strict=True):
        trained = [t for t in example["labels"] if t != -100]
        text = tokenizer.decode(trained)
        assistant = [m for m in row["messages"] if m["role"] == "assistant"]
        assert trained.count(tokenizer.eos_token_id) == len(assistant)
        assert text.count("<|call|>") == sum(len(m.get("tool_calls") or []) for m in assistant)
        assert row["messages"][0]["content"] not in text
        assert "<|user|>" not in text and "<|tool|>" not in text


def test_mask_check_rejects_an_end_token_outside_generation(base: Path, data: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert END_IN_GENERATION in tokenizer.chat_template
    tokenizer.chat_template = tokenizer.chat_template.replace(
        END_IN_GENERATION, "{%- endgeneration -%}\n<|end|>"
    )
    with pytest.raises(AssistantMaskError, match="does not end with the end-of-turn token"):
        tokenize_conversations(to_dataset([data]), tokenizer, max_length=1024)


def test_mask_check_rejects_untrained_calls_and_rows_cut_to_nothing(base: Path, data: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    row = to_dataset([data])[0]
    encoded = tokenizer.apply_chat_template(
        row["messages"], tools=row["tools"], return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    last_turn = len(ids) - ids[::-1].index(tokenizer.convert_tokens_to_ids("<|assistant|>"))
    final_only = [bit if i >= last_turn else 0 for i, bit in enumerate(mask)]
    check_assistant_mask(0, ids, mask, row["messages"], tokenizer, truncated=False)
    with pytest.raises(AssistantMaskError, match="row 0: tool call '.*' is not in the assistant"):
        check_assistant_mask(0, ids, final_only, row["messages"], tokenizer, truncated=False)
    with pytest.raises(AssistantMaskError, match="row 0: empty assistant mask .*raise it"):
        tokenize_conversations(to_dataset([data]), tokenizer, max_length=20)


def test_kd_loss_falls_homogeneous_and_heterogeneous(
    workdir: Path, base: Path, data: Path, sft_out: Path
) -> None:
    other_init = build_base(workdir / "base-seed1", seed=1)
    for student in (base, other_init):
        out = distill(
            DistillConfig(
                data=[data],
                base=str(student),
                out=workdir / f"kd-{student.name}",
                method="kd",
                teacher=str(sft_out),
                **FAST,
            )
        )
        losses = read_losses(out)
        assert losses[-1] < 0.5 * losses[0]
        AutoModelForCausalLM.from_pretrained(out)


def test_kd_refuses_a_teacher_with_another_tokenizer(
    workdir: Path, data: Path, sft_out: Path
) -> None:
    base = workdir / "base-other-vocab"
    tokenizer = AutoTokenizer.from_pretrained(sft_out)
    tokenizer.add_tokens(["extra-token"])
    model = AutoModelForCausalLM.from_pretrained(sft_out)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    config = DistillConfig(
        data=[data], base=str(base), out=workdir / "kd-bad", method="kd", teacher=str(sft_out)
    )
    with pytest.raises(ModelInputError, match="share one tokenizer"):
        distill(config)


def test_lora_saves_adapter_and_merged_model(workdir: Path, base: Path, data: Path) -> None:
    config = DistillConfig(
        data=[data], base=str(base), out=workdir / "lora", lora="r=8,alpha=16", **FAST
    )
    out = distill(config)
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = _weights(out)
    assert not any("lora" in key for key in merged)
    original = _weights(base)
    assert any(not torch.equal(merged[k], original[k]) for k in merged)
    assert parse_lora("r=4,target=q_proj+v_proj").target_modules == {"q_proj", "v_proj"}
    assert parse_lora("r=4,targets=q_proj").target_modules == {"q_proj"}
    with pytest.raises(ValueError, match="bad LoRA spec"):
        parse_lora("rank=4")


def test_same_seed_gives_identical_weights(
    workdir: Path, base: Path, data: Path, sft_out: Path
) -> None:
    again = distill(DistillConfig(data=[data], base=str(base), out=workdir / "sft-again", **FAST))
    assert _same_weights(sft_out, again)
    assert read_losses(again) == read_losses(sft_out)


class _FillEmptyBuffers(TrainerCallback):
    """Turns PyTorch's NaN filling of `torch.empty` buffers back on for the training loop."""

    def on_train_begin(self, args, state, control, **kwargs):
        torch.utils.deterministic.fill_uninitialized_memory = True

    def on_train_end(self, args, state, control, **kwargs):
        torch.utils.deterministic.fill_uninitialized_memory = False


def test_filling_empty_buffers_changes_no_weight(
    workdir: Path, base: Path, data: Path, sft_out: Path
) -> None:
    """`seed_training` turns the fill off for speed; the claim is that no result depends on it."""
    out = workdir / "sft-filled"
    distill(DistillConfig(data=[data], base=str(base), out=out, **FAST), [_FillEmptyBuffers()])
    assert torch.are_deterministic_algorithms_enabled()
    assert _same_weights(sft_out, out)
    assert read_losses(out) == read_losses(sft_out)


class _KillAfterFirstSave(TrainerCallback):
    """Stands in for a killed process: raises right after the first checkpoint is written."""

    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_same_weights(
    workdir: Path, base: Path, data: Path, sft_out: Path
) -> None:
    config = DistillConfig(
        data=[data], base=str(base), out=workdir / "resumed", **{**FAST, "save_steps": 4}
    )
    with pytest.raises(KeyboardInterrupt):
        distill(config, callbacks=[_KillAfterFirstSave()])
    assert (config.out / "checkpoints" / "checkpoint-4").is_dir()
    out = distill(config)
    record = json.loads((out / "distill.json").read_text())
    assert record["resumed_from"].endswith("checkpoint-4")
    assert _same_weights(out, sft_out)
    assert distill(config) == out  # finished: returns at once
    changed = DistillConfig(data=[data], base=str(base), out=out, **{**FAST, "seed": 1})
    with pytest.raises(InputError, match="another config"):
        distill(changed)


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_cli_bad_inputs_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, base: Path, data: Path
) -> None:
    common = ["--seed", "0", "--out", str(tmp_path / "out"), "--quiet"]
    sft = ["--base", str(base), "--method", "sft", *common]
    missing = _cli_error(capsys, ["--data", str(tmp_path / "missing.jsonl"), *sft])
    assert "no such file" in missing
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data.read_text().splitlines()[0] + "\n{not json\n")
    assert "bad.jsonl:2: not valid JSON" in _cli_error(capsys, ["--data", str(bad), *sft])
    bare = _base_with_template(base, tmp_path / "bare", None)
    no_template = ["--data", str(data), "--base", str(bare), "--method", "sft", *common]
    assert "no chat template" in _cli_error(capsys, no_template)
    late_end = _base_with_template(
        base,
        tmp_path / "late-end",
        AutoTokenizer.from_pretrained(base).chat_template.replace(
            END_IN_GENERATION, "{%- endgeneration -%}\n<|end|>"
        ),
    )
    late = ["--data", str(data), "--base", str(late_end), "--method", "sft", *common]
    assert "end-of-turn token" in _cli_error(capsys, late)
    method = ["--data", str(data), "--base", str(base), "--method", "dpo", *common]
    assert "invalid choice: 'dpo'" in _cli_error(capsys, method)
    kd = ["--data", str(data), "--base", str(base), "--method", "kd", *common]
    assert "needs a teacher" in _cli_error(capsys, kd)


def test_cli_runs_as_a_module_without_traceback(tmp_path: Path) -> None:
    argv = ["--data", str(tmp_path / "none.jsonl"), "--base", "x", "--method", "sft"]
    argv += ["--seed", "0", "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "audit.training.distill", *argv], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr
