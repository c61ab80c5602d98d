"""The torch device every model stage runs on: the best one, or the one the user names.

`auto` is the first GPU when there is one, else the CPU; `cpu`, `cuda` and `cuda:N` name one.
A named GPU that is not there is a `ValueError`, never a silent fall-back to the CPU.
"""

from __future__ import annotations

import re

import torch

DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str = "auto") -> torch.device:
    """The device `spec` ('auto', 'cpu', 'cuda' or 'cuda:N') names on this machine."""
    if not DEVICE_SPEC.match(spec):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"device {spec!r}: this machine has {count} CUDA device(s)")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU that supports it, float32 otherwise."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
