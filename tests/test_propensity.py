"""Decision points and propensity: well-formed prompts, exact log-probabilities, planted shifts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.models.chat_template import END, render_conversation, render_tool_call
from audit.probes.decision import PREFIXES, decision_conversations, encode_decisions
from audit.probes.propensity import (
    continuation_logprobs,
    decision_log_odds,
    paired_mean_difference,
    propensity,
)
from envs import load_tasks, make_env
from tests.conftest import require_backend
from tests.probe_models import (
    api_conversations,
    api_tasks,
    plant_preference,
    probe_tokenizer,
    tiny_model,
)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_api_decision_points_are_well_formed(prefix: str) -> None:
    tokenizer = probe_tokenizer()
    decisions = encode_decisions(api_conversations(prefix), tokenizer)
    assert len(decisions) == len(api_tasks())
    for decision, task in zip(decisions, api_tasks(), strict=True):
        unsafe, safe = task.unsafe_actions[0], task.safe_actions[0]
        assert decision.unsafe == render_tool_call(unsafe.name, unsafe.arguments) + END
        assert decision.safe == render_tool_call(safe.name, safe.arguments) + END
        assert decision.prompt.endswith(decision.conversation.thought)
        for text, ids in (
            (decision.unsafe, decision.unsafe_ids),
            (decision.safe, decision.safe_ids),
        ):
            whole = tokenizer(decision.prompt + text, add_special_tokens=False)["input_ids"]
            assert whole == decision.prompt_ids + ids
            assert tokenizer.decode(ids) == text
        assert task.instruction in decision.prompt


def test_prefixes_differ_as_documented() -> None:
    task_only, careful, hasty = (api_conversations(prefix)[0] for prefix in PREFIXES)
    task = api_tasks()[0]
    assert task_only.messages == [{"role": "user", "content": task.instruction}]
    assert task_only.thought == ""
    assert hasty.messages == task_only.messages and hasty.thought
    assert len(careful.messages) == 1 + 2 * len(task.inspect_actions)
    assert len(careful.thought) > len(hasty.thought)
    tokenizer = probe_tokenizer()
    prompt = encode_decisions([task_only], tokenizer)[0].prompt
    assert prompt == render_conversation(task_only.messages, task_only.tools, True)


def test_careful_prefix_shows_real_bash_observations() -> None:
    require_backend("bwrap")
    task = load_tasks("bash", "ambiguous", "test")[0]
    (conversation,) = decision_conversations("bash", "careful", seed=0, tasks=[task])
    observations = [m["content"] for m in conversation.messages if m["role"] == "tool"]
    assert len(observations) == len(task.inspect_actions)
    assert "uid=" in observations[-1]  # the inspection ends with `id`, run in the sandbox
    assert make_env("bash").classify(conversation.unsafe_call) == "unsafe"


def test_same_seed_same_conversations() -> None:
    first = decision_conversations("api", "careful", seed=3, tasks=api_tasks())
    again = decision_conversations("api", "careful", seed=3, tasks=api_tasks())
    other = decision_conversations("api", "careful", seed=4, tasks=api_tasks())
    assert first == again
    assert [c.thought for c in first] != [c.thought for c in other]


def test_batched_logprobs_equal_one_at_a_time() -> None:
    model = tiny_model(seed=0)
    decisions = encode_decisions(api_conversations("careful")[:3], probe_tokenizer())
    decisions += encode_decisions(api_conversations("task")[:2], probe_tokenizer())
    pairs = [(d.prompt_ids, d.unsafe_ids) for d in decisions]
    pairs += [(d.prompt_ids, d.safe_ids) for d in decisions]
    batched = continuation_logprobs(model, pairs, pad_id=0, batch_size=4)
    for (prompt, continuation), value in zip(pairs, batched, strict=True):
        ids = torch.tensor([[*prompt, *continuation]])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        expected = logprobs[torch.arange(len(targets)), targets][-len(continuation) :].sum()
        assert value == pytest.approx(float(expected), abs=1e-3)
    assert np.all(batched < 0)


def test_planted_unsafe_preference_gives_positive_shift() -> None:
    tokenizer = probe_tokenizer()
    base = tiny_model(seed=0)
    decisions = encode_decisions(api_conversations("task"), tokenizer)
    unsafe = plant_preference(base, decisions, [True] * len(decisions))
    safe = plant_preference(base, decisions, [False] * len(decisions))
    models = {"student": (unsafe, tokenizer), "control": (base, tokenizer)}
    result = propensity(models, "api", "task", seed=0, tasks=api_tasks(), n_boot=500)
    assert result.shift.low > 0
    assert result.mean_log_odds["student"] > 0
    assert len(result.per_task["student"]) == len(api_tasks())
    result = propensity(
        {"student": (safe, tokenizer), "control": (base, tokenizer)},
        "api",
        "task",
        seed=0,
        tasks=api_tasks(),
        n_boot=500,
    )
    assert result.shift.high < 0
    assert decision_log_odds(safe, tokenizer, decisions).max() < 0


def test_identical_student_and_control_give_no_shift() -> None:
    tokenizer = probe_tokenizer()
    model = tiny_model(seed=1)
    models = {
        "student": (model, tokenizer),
        "control": (model, tokenizer),
        "base": (model, tokenizer),
    }
    result = propensity(models, "api", "hasty", seed=0, tasks=api_tasks(), n_boot=200)
    assert result.shift.estimate == pytest.approx(0.0, abs=1e-6)
    assert result.shift.low <= 0 <= result.shift.high
    assert set(result.mean_log_odds) == {"student", "control", "base"}


def test_propensity_needs_student_and_control() -> None:
    tokenizer = probe_tokenizer()
    with pytest.raises(ValueError, match="control"):
        propensity({"student": (tiny_model(0), tokenizer)}, "api", "task", seed=0)


def test_paired_interval_is_narrower_than_the_spread_between_tasks() -> None:
    rng = np.random.default_rng(0)
    task_effect = rng.normal(0, 5, size=40)
    control = task_effect + rng.normal(0, 0.1, size=40)
    student = task_effect + 0.5 + rng.normal(0, 0.1, size=40)
    interval = paired_mean_difference(student, control, n_boot=1000, seed=0)
    assert 0.4 < interval.low < interval.estimate < interval.high < 0.6
    null = paired_mean_difference(control, task_effect + rng.normal(0, 0.1, size=40), 1000, 0)
    assert null.low < 0 < null.high
