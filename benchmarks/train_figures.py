"""Figures of a training stage: optimizer-step time, tokens trained, model FLOPs and MFU."""

from __future__ import annotations

import time
from typing import Any

PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}
"""Dense bf16 tensor-core peaks (NVIDIA data sheets, no sparsity), by device-name substring."""
MFU_RULE = (
    "model FLOPs / train_seconds / peak_bf16_flops; model FLOPs = 6 * parameters * tokens "
    "(non-padding tokens trained; kd adds the teacher's forward, 2 * parameters * tokens); "
    "LoRA counts the full 6 * parameters too, though frozen weights get no weight gradients"
)


def step_meter(cuda: bool) -> Any:
    """A trainer callback summing the optimizer steps' wall time (CUDA synchronised; saving,
    logging and data loading excluded) and turning on the trainer's non-padding token count."""
    import torch
    from transformers import TrainerCallback

    class StepMeter(TrainerCallback):
        seconds = 0.0
        tokens = 0
        steps = 0
        _started = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            args.include_num_input_tokens_seen = "non_padding"

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self._started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self._started
            self.steps = state.global_step
            self.tokens = state.num_input_tokens_seen

    return StepMeter()


def training(steps: int, tokens: int, seconds: float, flops: float, peak: float | None) -> dict:
    """The figures of one training stage."""
    return {
        "steps": steps,
        "tokens": tokens,
        "train_seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "model_flops": flops,
        "mfu": mfu(flops, seconds, peak),
    }


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """Achieved over peak FLOP/s, or None without a peak figure."""
    return None if peak is None or seconds <= 0 else round(flops / seconds / peak, 4)
