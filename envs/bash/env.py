"""The Bash environment: one sandbox per episode and one tool, `bash`, that runs a command.

Observations are the command's stdout then stderr, followed by flags on their own lines:
`[exit N]` for a non-zero exit, `[timed out]`, `[output truncated]`; a failed or timed-out
command is also marked `is_error`. A call of another tool or with bad arguments returns an
error observation and runs nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from envs.bash.checker import check_state
from envs.bash.commands import classify_command, is_unsafe_command
from envs.bash.seed import SEED_MTIME, seed
from envs.core import Decision, Environment, Observation, Outcome, Task, ToolCall
from envs.sandbox import ExecResult, Sandbox, SandboxError, SandboxLimits, get_sandbox

TOOL_NAME = "bash"
FREEZE_CLOCK = f"find /workspace -exec touch -h -d @{SEED_MTIME} -- {{}} + 2>/dev/null; true"
"""Run after every agent command: all workspace mtimes back to the seed time, so that
`ls -l` observations are reproducible whatever the wall clock."""
BASH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Run a bash command line in /workspace and return its output.",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line to run."}
            },
            "required": ["command"],
        },
    },
}


def _command_of(call: ToolCall) -> str | None:
    """The command of a well-formed `bash` call, else None."""
    if call.name != TOOL_NAME or set(call.arguments) != {"command"}:
        return None
    command = call.arguments["command"]
    return command if isinstance(command, str) and command.strip() else None


def format_result(result: ExecResult) -> str:
    """The observation text of a command's result, with its flags appended."""
    text = result.stdout
    if result.stderr:
        text += ("" if not text or text.endswith("\n") else "\n") + result.stderr
    flags = []
    if result.timed_out:
        flags.append("[timed out]")
    elif result.exit_code != 0:
        flags.append(f"[exit {result.exit_code}]")
    if result.truncated:
        flags.append("[output truncated]")
    if not flags:
        return text
    body = text.rstrip("\n")
    return "\n".join([body, *flags] if body else flags)


class BashEnvironment(Environment):
    """File and permission tasks run as real shell commands in a sandbox (see module doc)."""

    name: ClassVar[str] = "bash"

    def __init__(
        self,
        backend: str = "bwrap",
        limits: SandboxLimits | None = None,
        command_timeout: float = 10.0,
    ) -> None:
        self.backend = backend
        self.limits = limits
        self.command_timeout = command_timeout
        self._sandbox: Sandbox | None = None
        self._task: Task | None = None
        self._calls: list[ToolCall] = []

    def tools(self) -> list[dict[str, Any]]:
        return [BASH_TOOL]

    def reset(self, task: Task) -> None:
        """Close any previous sandbox, start a fresh one and seed the task's files."""
        if task.env != self.name:
            raise ValueError(f"task {task.id} is for env {task.env!r}, not {self.name!r}")
        self.close()
        self._sandbox = get_sandbox(self.backend, self.limits)
        self._sandbox.start()
        seed(self._sandbox, task.setup)
        self._task = task
        self._calls = []

    def _active(self) -> tuple[Sandbox, Task]:
        if self._sandbox is None or self._task is None:
            raise RuntimeError("no episode: call reset(task) first")
        return self._sandbox, self._task

    def step(self, call: ToolCall) -> Observation:
        sandbox, _ = self._active()
        self._calls.append(call)
        command = _command_of(call)
        if command is None:
            if call.name != TOOL_NAME:
                message = f"error: unknown tool {call.name!r}; the only tool is {TOOL_NAME!r}"
            else:
                message = f"error: {TOOL_NAME!r} takes one argument, 'command', a non-empty string"
            return Observation(content=message, is_error=True)
        try:
            result = sandbox.exec(command, timeout=self.command_timeout)
            sandbox.exec(FREEZE_CLOCK, timeout=self.command_timeout)
        except SandboxError as err:
            return Observation(content=f"error: sandbox failed: {err}", is_error=True)
        return Observation(
            content=format_result(result),
            is_error=result.exit_code != 0 or result.timed_out,
            truncated=result.truncated,
            duration_s=result.duration_s,
        )

    def classify(self, call: ToolCall) -> Decision | None:
        command = _command_of(call)
        return None if command is None else classify_command(command)

    def outcome(self) -> Outcome:
        sandbox, task = self._active()
        unsafe = [
            call
            for call in self._calls
            if (command := _command_of(call)) is not None and is_unsafe_command(command)
        ]
        first_decision = next(
            (decision for call in self._calls if (decision := self.classify(call)) is not None),
            None,
        )
        try:
            success, details = check_state(sandbox, task.check)
        except SandboxError as err:
            success, details = False, {"error": f"check failed: {err}"}
        return Outcome(
            success=success,
            unsafe_actions=unsafe,
            first_decision=first_decision,
            details=details,
        )

    def close(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            sandbox.close()
        self._task = None
        self._calls = []
