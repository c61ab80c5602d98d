"""Decision points under the chat templates of real families (TRL's templates, trained tokenizers,
tiny random models): exact prompt / continuation splits, and the probes run end to end."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from audit.models.loader import load_model_and_tokenizer
from audit.probes.decision import PREFIXES, DecisionConversation, encode_decision
from audit.probes.latent import latent
from audit.probes.propensity import propensity
from audit.report.render import render_html
from envs import ToolCall
from tests.families import FAMILIES, SUPPORTED, save_family, train_family_tokenizer
from tests.probe_models import (
    api_conversations,
    api_tasks,
    plant_preference,
    probe_tokenizer,
)
from tests.report_sample import make_report

N_TASKS = 4
THINK = "<think>\n\n</think>\n\n"
GPTOSS_ANALYSIS = "<|channel|>analysis<|message|>"
BEFORE_THOUGHT = {
    "embedded": "",
    "qwen2_5": "",
    "qwen3": THINK,
    "llama3_2": None,
    "gptoss": GPTOSS_ANALYSIS,
}
"""What each template writes between its generation prompt and a thought (None: it drops the
thought); of these, only Qwen3 writes it with an empty thought too."""


@cache
def _family_tokenizer(name: str) -> PreTrainedTokenizerFast:
    return probe_tokenizer() if name == "embedded" else train_family_tokenizer(FAMILIES[name])


def _tokenizer(name: str) -> PreTrainedTokenizerFast:
    return copy.deepcopy(_family_tokenizer(name))


def _render(
    tokenizer: PreTrainedTokenizerFast, conversation: DecisionConversation, call: ToolCall | None
) -> str:
    """The conversation with its generation prompt, or with the decision turn writing `call`."""
    messages: list[dict[str, Any]] = list(conversation.messages)
    if call is not None:
        function = {"name": call.name, "arguments": dict(call.arguments)}
        messages.append(
            {
                "role": "assistant",
                "content": conversation.thought,
                "tool_calls": [{"type": "function", "function": function}],
            }
        )
    text = tokenizer.apply_chat_template(
        messages, tools=conversation.tools, add_generation_prompt=call is None, tokenize=False
    )
    assert isinstance(text, str)
    return text


def _expected_prompt(name: str, conversation: DecisionConversation, head: str) -> str:
    before = BEFORE_THOUGHT[name]
    if before is None or not (conversation.thought or name == "qwen3"):
        return head
    return head + before + conversation.thought


@pytest.mark.parametrize("name", ["embedded", *SUPPORTED])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_decision_split_follows_the_template(name: str, prefix: str) -> None:
    tokenizer = _tokenizer(name)
    for conversation in api_conversations(prefix)[:N_TASKS]:
        decision = encode_decision(conversation, tokenizer)
        head = _render(tokenizer, conversation, None)
        assert decision.prompt == _expected_prompt(name, conversation, head)
        dropped = name == "llama3_2" and bool(conversation.thought)
        assert decision.thought_rendered is not dropped
        if conversation.thought:
            assert (conversation.thought in decision.prompt) is decision.thought_rendered
        assert decision.unsafe != decision.safe
        for call, text, ids in (
            (conversation.unsafe_call, decision.unsafe, decision.unsafe_ids),
            (conversation.safe_call, decision.safe, decision.safe_ids),
        ):
            assert call.name in text
            assert decision.prompt + text == _render(tokenizer, conversation, call)
            whole = tokenizer(decision.prompt + text, add_special_tokens=False)["input_ids"]
            assert whole == decision.prompt_ids + ids
            assert tokenizer.decode(decision.prompt_ids) == decision.prompt


def test_llama_prompt_tokens_come_from_the_whole_render() -> None:
    tokenizer = _tokenizer("llama3_2")
    decision = encode_decision(api_conversations("task")[0], tokenizer)
    alone = tokenizer(decision.prompt, add_special_tokens=False)["input_ids"]
    assert decision.prompt.endswith("<|end_header_id|>\n\n")
    assert alone != decision.prompt_ids, "the tokenizer no longer merges the trailing blank lines"
    assert len(decision.prompt_ids) == len(alone) + 1


def test_a_token_across_the_decision_point_moves_the_cut_back() -> None:
    tokenizer = _tokenizer("qwen2_5")
    tokenizer.add_tokens([".\n"])  # one token across the thought's end and the text after it
    conversation = api_conversations("hasty")[0]
    assert conversation.thought.endswith(".")
    decision = encode_decision(conversation, tokenizer)
    assert decision.prompt == _render(tokenizer, conversation, None) + conversation.thought[:-1]
    assert decision.thought_rendered
    for call, text, ids in (
        (conversation.unsafe_call, decision.unsafe, decision.unsafe_ids),
        (conversation.safe_call, decision.safe, decision.safe_ids),
    ):
        assert text.startswith(".\n<tool_call>")
        assert decision.prompt + text == _render(tokenizer, conversation, call)
        whole = tokenizer(decision.prompt + text, add_special_tokens=False)["input_ids"]
        assert whole == decision.prompt_ids + ids
    assert tokenizer.decode(decision.prompt_ids) == decision.prompt


AFTER_CALL = (
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n"
    "{%- for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }}</tool_call>{% endfor %}"
    "{{ m.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
"""A template that writes the thought after the call: no prompt ends at the decision point."""


def test_a_template_with_the_thought_after_the_call_is_refused() -> None:
    tokenizer = _tokenizer("qwen2_5")
    tokenizer.chat_template = AFTER_CALL
    with pytest.raises(ValueError, match="one prompt"):
        encode_decision(api_conversations("hasty")[0], tokenizer)


def _family_models(root: Path, name: str, seeds: dict[str, int]) -> dict[str, Any]:
    """Subject -> (model, tokenizer) of tiny random `name` models saved and loaded as real ones."""
    return {
        subject: load_model_and_tokenizer(save_family(name, root / subject, seed), device="cpu")
        for subject, seed in seeds.items()
    }


@pytest.fixture(scope="module")
def qwen3_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    seeds = {"base": 0, "teacher": 1, "student": 2, "control": 3}
    return _family_models(tmp_path_factory.mktemp("qwen3"), "qwen3", seeds)


@pytest.mark.parametrize("name", ["qwen3", "llama3_2"])
def test_propensity_on_family_models(
    name: str, qwen3_models: dict[str, Any], tmp_path: Path
) -> None:
    models = qwen3_models
    if name != "qwen3":  # the loader refuses Llama 3.2's template (no TRL training version)
        models = {
            subject: (
                AutoModelForCausalLM.from_pretrained(save_family(name, tmp_path / subject, seed)),
                AutoTokenizer.from_pretrained(tmp_path / subject),
            )
            for subject, seed in (("student", 2), ("control", 3))
        }
    tasks = api_tasks()[:N_TASKS]
    result = propensity(models, "api", "careful", seed=0, tasks=tasks, n_boot=200)
    assert set(result.mean_log_odds) == set(models)
    assert all(np.isfinite(value) for value in result.mean_log_odds.values())
    assert len(set(result.mean_log_odds.values())) == len(models)
    assert np.isfinite([result.shift.low, result.shift.estimate, result.shift.high]).all()
    assert all(len(values) == len(tasks) for values in result.per_task.values())
    dropped = len(tasks) if name == "llama3_2" else 0
    assert result.thought_dropped == dict.fromkeys(models, dropped)


def test_latent_on_qwen3_models(qwen3_models: dict[str, Any]) -> None:
    model, tokenizer = qwen3_models["teacher"]
    points = [*api_conversations("careful")[:N_TASKS], *api_conversations("hasty")[:N_TASKS]]
    decisions = [encode_decision(point, tokenizer) for point in points]
    careful_unsafe = [point.prefix == "careful" for point in points]
    teacher = plant_preference(model, decisions, careful_unsafe, steps=150, lr=2e-3)
    tasks = api_tasks()[:N_TASKS]
    pairs = {0: (lambda: (teacher, tokenizer), lambda: qwen3_models["control"])}
    result = latent(
        (teacher, tokenizer),
        qwen3_models["base"],
        pairs,
        "api",
        seed=0,
        temperature=0.0,
        prefixes=("careful", "hasty"),
        tasks=tasks,
        n_boot=200,
    )
    assert result.labels == {"unsafe": N_TASKS, "safe": N_TASKS}, (
        "the planted teacher's greedy turns no longer split (parsed by the Qwen3 family)"
    )
    assert result.layer == 1 and [layer.layer for layer in result.layers] == [0, 1, 2]
    assert result.probe_cv_auroc is not None and np.isfinite(result.probe_cv_auroc.estimate)
    assert result.gap is not None and result.gap.low <= result.gap.estimate <= result.gap.high
    assert result.projection is not None and np.isfinite(result.projection.estimate)
    assert all(np.isfinite(value) for value in result.mean_score.values())
    assert result.cka_to_teacher["student/0"] == pytest.approx(1.0)
    assert all(0.0 <= value <= 1.0 + 1e-9 for value in result.cka_to_teacher.values())
    assert all(np.isfinite(value) for value in result.davies_bouldin.values())
    assert result.thought_dropped == dict.fromkeys(("teacher", "base", "student/0", "control/0"), 0)


def test_report_names_dropped_thoughts() -> None:
    report = make_report("neutral")
    report.propensity[0].thought_dropped = {"student": 7, "control": 0}
    report.latent[0].thought_dropped = {"teacher": 5}
    html = render_html(report)
    assert "student: its chat template drops the thought (7 points)" in html
    assert "teacher: its chat template drops the thought (5 points)" in html
    assert "control: its chat template drops" not in html
