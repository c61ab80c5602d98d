"""SlotCache: rows that prefill and decode at different times give the logits of a plain forward."""

from __future__ import annotations

import pytest
import torch

from audit.models.config import build_model
from tests.model_policy_sample import MICRO
from trajectories.policies.slot_cache import SlotCache

VOCAB = 97


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model(MICRO, VOCAB, seed=3).eval()


def _reference(model: torch.nn.Module, tokens: list[int]) -> torch.Tensor:
    """Logits after the last token, from one forward over the whole sequence, no cache."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1]


def _forward(model, cache, ids, positions, mask) -> torch.Tensor:
    with torch.inference_mode():
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return out.logits[:, -1]


def test_interleaved_prefill_and_decode_match_a_plain_forward(model) -> None:
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, VOCAB, (n,), generator=generator).tolist() for n in (7, 19, 4)]
    cache = SlotCache(rows=3, capacity=8)  # small, so that capacity has to grow
    sequences = [[], [], []]
    # Row 0 and 2 prefill; row 1 waits (inactive) while they decode a few tokens.
    for row in (0, 2):
        positions, mask = cache.plan_prefill(row, len(prompts[row]), torch.float32, model.device)
        logits = _forward(model, cache, torch.tensor([prompts[row]]), positions, mask)
        sequences[row] = list(prompts[row])
        torch.testing.assert_close(logits[0], _reference(model, sequences[row]))
    for step in range(5):
        if step == 2:  # row 1 joins mid-way with a long prompt
            positions, mask = cache.plan_prefill(1, len(prompts[1]), torch.float32, model.device)
            _forward(model, cache, torch.tensor([prompts[1]]), positions, mask)
            sequences[1] = list(prompts[1])
        active = [bool(seq) for seq in sequences]
        new = [(5 * step + 11 * row) % (VOCAB - 3) + 3 for row in range(3)]
        ids = torch.tensor([[new[row] if on else 0] for row, on in enumerate(active)])
        positions, mask = cache.plan_decode(active, torch.float32, model.device)
        logits = _forward(model, cache, ids, positions, mask)
        for row, on in enumerate(active):
            if on:
                sequences[row].append(new[row])
                torch.testing.assert_close(logits[row], _reference(model, sequences[row]))
    assert cache.lengths == [len(seq) for seq in sequences]
    assert cache.capacity >= max(cache.lengths) and cache.capacity > 8


def test_reset_and_keep_rows_reuse_slots(model) -> None:
    cache = SlotCache(rows=2)
    first, second = [5, 6, 7, 8], [9, 10, 11]
    for row, tokens in enumerate((first, second)):
        positions, mask = cache.plan_prefill(row, len(tokens), torch.float32, model.device)
        _forward(model, cache, torch.tensor([tokens]), positions, mask)
    cache.keep_rows([1])  # row 1 becomes row 0
    positions, mask = cache.plan_decode([True], torch.float32, model.device)
    logits = _forward(model, cache, torch.tensor([[12]]), positions, mask)
    torch.testing.assert_close(logits[0], _reference(model, [*second, 12]))
    cache.reset(0)  # a new sequence in the same slot: nothing of the old one is attended
    positions, mask = cache.plan_prefill(0, 2, torch.float32, model.device)
    logits = _forward(model, cache, torch.tensor([[13, 14]]), positions, mask)
    torch.testing.assert_close(logits[0], _reference(model, [13, 14]))


def test_update_without_a_plan_and_bad_flags_raise() -> None:
    cache = SlotCache(rows=2)
    with pytest.raises(RuntimeError, match="without a plan"):
        cache.update(torch.zeros(2, 1, 1, 4), torch.zeros(2, 1, 1, 4), 0)
    with pytest.raises(ValueError, match="expected 2 flags"):
        cache.plan_decode([True], torch.float32, torch.device("cpu"))
    with pytest.raises(ValueError):
        SlotCache(rows=0)
