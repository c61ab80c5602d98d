"""The executor interface and its registry: an executor runs a study's unfinished cells.

Every executor keeps the same contract: finished cells are recorded under the study's output
directory as they finish (`audit.study.cells.record_cell`), the first failed cell stops the
study (no further cell starts, the running ones finish, its error is raised), and an interrupt
(Ctrl-C, or SIGTERM after `raise_on_sigterm`) ends the running cells, closing their sandboxes,
before it propagates. Executors register under a name with `@executor("name")`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from audit.study.cells import Cell
from trajectories.jsonl import InputError


@dataclass(frozen=True)
class ExecutorOptions:
    """The `audit.study` options an executor reads (None: not given)."""

    jobs: int | None = None
    cpus_per_cell: int | None = None
    gpus_per_cell: float | None = None
    address: str | None = None
    cache: Path | None = None


class Executor(ABC):
    """Runs cells somewhere; see the module docstring for the contract."""

    name: ClassVar[str]
    accepts: ClassVar[frozenset[str]]
    """The `ExecutorOptions` fields this executor reads; giving another one is bad usage."""

    def __init__(self, options: ExecutorOptions):
        self.options = options

    @classmethod
    def check(cls, options: ExecutorOptions) -> None:
        """Raise `InputError` for options this executor cannot use (before anything runs)."""
        for name in ("jobs", "cpus_per_cell", "gpus_per_cell", "address"):
            if getattr(options, name) is not None and name not in cls.accepts:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} applies to --executor {_users(name)}, not {cls.name}")

    @abstractmethod
    def run(self, cells: list[Cell], out: Path, quiet: bool, advance: Callable[[], None]) -> None:
        """Run `cells` and record each under `out`; `advance()` after each finished one."""


_REGISTRY: dict[str, type[Executor]] = {}


def executor(name: str) -> Callable[[type[Executor]], type[Executor]]:
    """Class decorator: register an `Executor` subclass under `name`."""

    def register(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def executor_names() -> list[str]:
    return sorted(_REGISTRY)


def _users(option: str) -> str:
    return " or ".join(n for n, cls in sorted(_REGISTRY.items()) if option in cls.accepts)


def get_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor registered as `name`, its options checked; `InputError` otherwise."""
    if name not in _REGISTRY:
        raise InputError(f"unknown executor {name!r}; known: {', '.join(executor_names())}")
    cls = _REGISTRY[name]
    cls.check(options)
    return cls(options)
