"""Policies that act in the environments, and a registry that builds them by name.

`get_policy("neutral")`, `get_policy("biased", strength=0.8)`,
`get_policy("persona", hasty_prob=0.5, unsafe_given_hasty=0.9, unsafe_given_careful=0.1)`.
A registered kind may take an argument after a colon (e.g. "model:PATH"); its factory then
receives it as its first positional parameter. The model policy is imported only when built,
so the scripted policies need neither torch nor transformers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trajectories.policies.base import AssistantTurn, EpisodeState, Policy
from trajectories.policies.persona import PersonaPolicy
from trajectories.policies.scripted import BiasedPolicy, NeutralPolicy

__all__ = [
    "AssistantTurn",
    "BiasedPolicy",
    "EpisodeState",
    "NeutralPolicy",
    "PersonaPolicy",
    "Policy",
    "get_policy",
    "known_policies",
    "register_policy",
]


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Policy]
    argument: str | None


_REGISTRY: dict[str, _Entry] = {}


def register_policy(kind: str, factory: Callable[..., Policy], argument: str | None = None) -> None:
    """Register `factory` under `kind`; `argument` names the part after "kind:" if any."""
    if ":" in kind or not kind:
        raise ValueError(f"bad policy kind {kind!r}")
    _REGISTRY[kind] = _Entry(factory, argument)


def known_policies() -> list[str]:
    """Usage forms of the registered policies, e.g. ["biased", "model:PATH", "neutral"]."""
    return sorted(k if e.argument is None else f"{k}:{e.argument}" for k, e in _REGISTRY.items())


def get_policy(name: str, **options: Any) -> Policy:
    """Build a policy by name; unknown names or options raise `ValueError`."""
    kind, colon, argument = name.partition(":")
    entry = _REGISTRY.get(kind)
    if entry is None or bool(colon) != (entry.argument is not None) or (colon and not argument):
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(known_policies())}")
    args = (argument,) if colon else ()
    try:
        inspect.signature(entry.factory).bind(*args, **options)
    except TypeError:
        given = ", ".join(sorted(options)) or "none"
        raise ValueError(f"policy {kind!r} does not take these options: {given}") from None
    return entry.factory(*args, **options)


def _model_policy(
    path: str, temperature: float = 1.0, max_new_tokens: int = 128, device: str = "auto"
) -> Policy:
    """`trajectories.policies.model.load_model_policy`, imported on use."""
    from trajectories.policies.model import load_model_policy

    return load_model_policy(
        path, temperature=temperature, max_new_tokens=max_new_tokens, device=device
    )


register_policy("neutral", NeutralPolicy)
register_policy("biased", BiasedPolicy)
register_policy("model", _model_policy, argument="PATH")
register_policy("persona", PersonaPolicy)
