"""Sandboxed tool-using environments (API and Bash) and their task suites."""

from __future__ import annotations

from typing import Any

from envs.core import Environment, Observation, Outcome, Split, Suite, Task, ToolCall

ENV_NAMES = ("api", "bash")

__all__ = [
    "ENV_NAMES",
    "Environment",
    "Observation",
    "Outcome",
    "Split",
    "Suite",
    "Task",
    "ToolCall",
    "env_of_tools",
    "load_tasks",
    "make_env",
]


def _check_name(name: str) -> None:
    if name not in ENV_NAMES:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(ENV_NAMES)}")


def make_env(name: str, **kwargs: Any) -> Environment:
    """Build an environment by name; Bash takes `backend=` ('bwrap' or 'docker')."""
    _check_name(name)
    if name == "api":
        from envs.api.env import ApiEnvironment

        return ApiEnvironment(**kwargs)
    from envs.bash.env import BashEnvironment

    return BashEnvironment(**kwargs)


def env_of_tools(tool_names: set[str]) -> str | None:
    """`bash` for the Bash env's one tool, `api` for a subset of the API env's tools, else
    None: the environment a conversation offering these tools comes from."""
    from envs.api.tools import TOOL_NAMES
    from envs.bash.env import TOOL_NAME

    if tool_names == {TOOL_NAME}:
        return "bash"
    if tool_names and tool_names <= set(TOOL_NAMES):
        return "api"
    return None


def load_tasks(name: str, suite: Suite | str, split: Split | str) -> list[Task]:
    """The fixed task suite of an environment (deterministic, no randomness at call time)."""
    _check_name(name)
    if name == "api":
        from envs.api.tasks import build_suite
    else:
        from envs.bash.tasks import build_suite
    return build_suite(Suite(suite), Split(split))
