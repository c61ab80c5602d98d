"""`SlotCache`: a key/value cache whose rows are independent sequences, each of its own length.

Continuous batching needs rows that start, grow and end at different times. Each row ("slot")
holds one episode's keys and values at positions 0..length-1 of a per-layer buffer of shape
(rows, kv heads, capacity, head dim). A forward pass either prefills one row (`plan_prefill`:
many new tokens of that row, attending a view of that row alone) or decodes every row at once
(`plan_decode`: one new token per row, rows without a token pass a padding query). The plan
writes the new keys at each row's own positions and returns the position ids and the additive
4D attention mask the model takes, so padding and stale positions are never attended.

The model calls `update(key_states, value_states, layer_idx)` from each attention layer, as it
does with a transformers `Cache`; models whose layers need another cache kind (e.g. sliding
windows) are not supported by this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class _Plan:
    """Where the current forward's new keys go: one row's positions `start..start+count-1`
    (prefill, `row` set), or position `positions[i]` of row `rows[i]` (decode)."""

    row: int | None
    start: int
    rows: torch.Tensor
    positions: torch.Tensor
    span: int


class SlotCache:
    """Per-row key/value buffers, grown on demand; see the module docstring."""

    def __init__(self, rows: int, capacity: int = 256) -> None:
        if rows < 1 or capacity < 1:
            raise ValueError("rows and capacity must be at least 1")
        self.rows = rows
        self.capacity = capacity
        self.lengths = [0] * rows
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._plan: _Plan | None = None

    def reset(self, row: int) -> None:
        """Empty `row` for a new sequence."""
        self.lengths[row] = 0

    def add_rows(self, count: int) -> None:
        """Append `count` empty rows."""
        self.rows += count
        self.lengths += [0] * count
        self.keys = [_pad(t, 0, count) for t in self.keys]
        self.values = [_pad(t, 0, count) for t in self.values]

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only `rows`, in that order (the others are dropped)."""
        index = torch.tensor(rows, dtype=torch.long)
        self.keys = [t.index_select(0, index.to(t.device)) for t in self.keys]
        self.values = [t.index_select(0, index.to(t.device)) for t in self.values]
        self.lengths = [self.lengths[r] for r in rows]
        self.rows = len(rows)

    def plan_prefill(
        self, row: int, count: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reserve `count` new positions of `row`: position ids (1, count) and the mask
        (1, 1, count, span) of a forward that feeds that row alone."""
        start = self.lengths[row]
        self._ensure_capacity(start + count)
        positions = torch.arange(start, start + count, device=device)
        span = start + count
        keys = torch.arange(span, device=device)
        allowed = keys[None, :] <= positions[:, None]
        self._plan = _Plan(row, start, positions, positions, span)
        self.lengths[row] = span
        return positions[None, :], _additive(allowed[None, None], dtype)

    def plan_decode(
        self, active: list[bool], dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One new token for each `active` row; position ids (rows, 1) and mask (rows, 1, 1,
        span). Inactive rows get a padding query that attends position 0 and writes nothing."""
        if len(active) != self.rows:
            raise ValueError(f"expected {self.rows} flags, got {len(active)}")
        starts = [self.lengths[r] if on else 0 for r, on in enumerate(active)]
        self._ensure_capacity(max(starts) + 1)
        rows = [r for r, on in enumerate(active) if on]
        index = torch.tensor(rows, dtype=torch.long, device=device)
        positions = torch.tensor(starts, dtype=torch.long, device=device)
        span = max(starts) + 1
        keys = torch.arange(span, device=device)
        allowed = keys[None, :] <= positions[:, None]
        self._plan = _Plan(None, 0, index, positions[index], span)
        for r in rows:
            self.lengths[r] += 1
        return positions[:, None], _additive(allowed[:, None, None, :], dtype)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *_: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the planned new keys/values of one layer; return that layer's attended part."""
        plan = self._plan
        if plan is None:
            raise RuntimeError("SlotCache.update called without a plan")
        if layer_idx == len(self.keys):
            shape = (self.rows, key_states.shape[1], self.capacity, key_states.shape[3])
            self.keys.append(key_states.new_zeros(shape))
            self.values.append(value_states.new_zeros(shape[:3] + value_states.shape[3:]))
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if plan.row is not None:
            end = plan.start + key_states.shape[2]
            keys[plan.row, :, plan.start : end] = key_states[0]
            values[plan.row, :, plan.start : end] = value_states[0]
            rows = slice(plan.row, plan.row + 1)
            return keys[rows, :, : plan.span], values[rows, :, : plan.span]
        if key_states.shape[0] != self.rows:
            raise RuntimeError(f"decode step fed {key_states.shape[0]} rows, cache has {self.rows}")
        keys[plan.rows, :, plan.positions] = key_states[plan.rows, :, 0]
        values[plan.rows, :, plan.positions] = value_states[plan.rows, :, 0]
        return keys[:, :, : plan.span], values[:, :, : plan.span]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The longest row (for models that ask the cache how much it holds)."""
        return max(self.lengths, default=0)

    def _ensure_capacity(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        grown = self.capacity
        while grown < needed:
            grown *= 2
        self.keys = [_pad(t, 2, grown - self.capacity) for t in self.keys]
        self.values = [_pad(t, 2, grown - self.capacity) for t in self.values]
        self.capacity = grown


def _pad(tensor: torch.Tensor, dim: int, extra: int) -> torch.Tensor:
    shape = list(tensor.shape)
    shape[dim] = extra
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where attention is allowed, the dtype's most negative value elsewhere."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)
