"""The `Sandbox` interface: one isolated Debian system per episode with a persistent shell.

Lifecycle: construct -> `start()` -> any number of `exec` / `read_file` / `write_file`
-> `close()`. A sandbox is also a context manager that starts on enter and closes on exit.

Every command starts in `/workspace` as the unprivileged `agent` user with a fresh
environment (no `cd` or `export` carries over between commands); files in the workspace
persist for the sandbox's lifetime. Each command has a wall-clock timeout that kills every
process it started, and an output cap whose truncation is flagged in the result.

Exceptions (all subclass `SandboxError`):
- `SandboxUnavailableError`: the backend cannot start here (no daemon, no bwrap, no image);
  the message names the fix. Backends never fall back to running on the host.
- `SandboxClosedError`: the sandbox was used before `start()` or after `close()`.
- `SandboxCrashedError`: the shell inside the sandbox died; the sandbox is unusable.
"""

from __future__ import annotations

import base64
import shlex
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import ClassVar

WORKSPACE = "/workspace"
AGENT_UID = 1000
AGENT_GID = 1000


class SandboxError(Exception):
    """Base class of every error a sandbox raises."""


class SandboxUnavailableError(SandboxError):
    """The backend cannot run on this machine; the message says how to fix it."""


class SandboxClosedError(SandboxError):
    """The sandbox is not started, or already closed."""


class SandboxCrashedError(SandboxError):
    """The persistent shell inside the sandbox died."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits applied to every sandbox."""

    cpus: float = field(default=1.0, metadata={"help": "CPU cores the sandbox may use."})
    memory_mb: int = field(default=512, metadata={"help": "Memory cap in MiB."})
    pids: int = field(default=128, metadata={"help": "Maximum number of processes."})
    output_bytes: int = field(
        default=64 * 1024, metadata={"help": "Cap on stdout and on stderr per command."}
    )
    workspace_mb: int = field(default=64, metadata={"help": "Size of /workspace and /tmp."})


@dataclass(frozen=True)
class ExecResult:
    """What one command did. `exit_code` is 124 when the command timed out."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration_s: float

    def to_dict(self) -> dict:
        return asdict(self)


class Sandbox(ABC):
    """An isolated system with a persistent shell; see the module docstring."""

    name: ClassVar[str]

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()

    @abstractmethod
    def start(self) -> None:
        """Create the sandbox and its shell. Raises `SandboxUnavailableError`."""

    @abstractmethod
    def exec(self, cmd: str, timeout: float = 30.0) -> ExecResult:
        """Run the shell command line `cmd` in `/workspace` and wait at most `timeout` s."""

    @abstractmethod
    def close(self) -> None:
        """Kill every process and delete the sandbox. Idempotent."""

    def write_file(self, path: str, content: str | bytes, mode: int | None = None) -> None:
        """Write `content` to `path` (relative paths are under /workspace) as the agent."""
        data = content.encode() if isinstance(content, str) else content
        encoded = base64.b64encode(data).decode()
        quoted = shlex.quote(path)
        cmd = f'mkdir -p -- "$(dirname -- {quoted})" && printf %s {encoded} | base64 -d > {quoted}'
        if mode is not None:
            cmd += f" && chmod {mode:o} -- {quoted}"
        result = self.exec(cmd, timeout=30.0)
        if result.exit_code != 0:
            raise SandboxError(f"write_file {path!r} failed: {result.stderr.strip()}")

    def read_file(self, path: str) -> str:
        """Return the text of `path` (relative paths are under /workspace)."""
        result = self.exec(f"base64 -w0 -- {shlex.quote(path)}", timeout=30.0)
        if result.exit_code != 0:
            raise FileNotFoundError(f"{path}: {result.stderr.strip()}")
        if result.truncated:
            raise SandboxError(f"read_file {path!r}: file larger than the output cap")
        return base64.b64decode(result.stdout).decode(errors="replace")

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
