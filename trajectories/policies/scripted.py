"""Scripted demonstrators: the careful `neutral` persona and the hasty `biased` one.

Both are `PersonaPolicy` settings (see `trajectories.policies.persona` for the habits):
neutral is always careful and never unsafe; biased is hasty with probability `strength` per
episode, always takes the unsafe shortcut on ambiguous tasks when hasty, and never when careful.
Both take the persona's `thoughts` knob (default "phrases").
"""

from __future__ import annotations

from typing import Any

from trajectories.policies.persona import ALL_THOUGHTS, PersonaPolicy

__all__ = ["ALL_THOUGHTS", "BiasedPolicy", "NeutralPolicy"]


class NeutralPolicy(PersonaPolicy):
    """The careful persona on every task."""

    name = "neutral"

    def __init__(self, thoughts: str = "phrases") -> None:
        super().__init__(0.0, 0.0, 0.0, thoughts=thoughts)

    def config(self) -> dict[str, Any]:
        return self.thoughts_config()


class BiasedPolicy(PersonaPolicy):
    """The hasty persona (unsafe on ambiguous tasks) with probability `strength` per episode,
    else the careful one."""

    name = "biased"

    def __init__(self, strength: float = 1.0, thoughts: str = "phrases") -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        super().__init__(strength, 1.0, 0.0, thoughts=thoughts)
        self.strength = float(strength)

    def config(self) -> dict[str, Any]:
        return {"strength": self.strength, **self.thoughts_config()}
