"""The persistent shell protocol both backends speak to a `bash` inside the sandbox.

The host sends a small driver script once, then each command as its text followed by a
NUL byte. The driver runs each command in a fresh subshell in /workspace, waits for it,
kills every process it left behind (background jobs do not outlive their command), and
ends stdout and stderr with a marker line carrying a per-sandbox random nonce and the exit
status. One command costs a fork, not a process spawn or a `docker exec`.

On timeout the host interrupts the driver (SIGUSR1); the driver's trap kills every process
of the agent's uid in the sandbox but itself (`kill -9 -1` inside the sandbox's PID
namespace), repeating until /proc shows none alive, so no orphan survives, fork bombs
included. The check uses shell builtins only, so it works when no process can be forked.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

from envs.sandbox.base import (
    ExecResult,
    Sandbox,
    SandboxClosedError,
    SandboxCrashedError,
    SandboxError,
)

STDOUT, STDERR = 1, 2
TIMEOUT_EXIT_CODE = 124
_KILL_GRACE_S = 10.0

_DRIVER = r"""
exec 3>&2 2>/dev/null
export HOME=/workspace USER=agent LOGNAME=agent LANG=C.UTF-8 TERM=dumb
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
__sbx_n={nonce}
{ulimits}
__sbx_alive() {{
  local d k v
  for d in /proc/[0-9]*; do
    {{ [ "${{d#/proc/}}" = "$$" ] || [ "${{d#/proc/}}" = 1 ] || [ ! -O "$d" ]; }} && continue
    while IFS=$'\t' read -r k v; do
      [ "$k" = State: ] && {{ [ "${{v:0:1}}" = Z ] || return 0; break; }}
    done < "$d/status"
  done
  return 1
}}
__sbx_stop() {{ kill -9 -1; while __sbx_alive; do kill -9 -1; done; }}
trap __sbx_stop USR1
printf '%sR%d\n' "$__sbx_n" "$$"
while IFS= read -r -d '' __sbx_c; do
  ( cd /workspace && eval "$__sbx_c" ) </dev/null 2>&3 &
  __sbx_p=$!
  wait "$__sbx_p"; __sbx_rc=$?
  while kill -0 "$__sbx_p"; do wait "$__sbx_p"; __sbx_rc=$?; done
  __sbx_stop
  printf '\n%sE%d\n' "$__sbx_n" "$__sbx_rc"
  printf '\n%sE\n' "$__sbx_n" >&3
done
"""


class ShellTransport(Protocol):
    """A byte pipe to the bash process inside a sandbox."""

    def send(self, data: bytes) -> None:
        """Write to the shell's stdin."""

    def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        """Chunks (STDOUT or STDERR, data) that arrived within `timeout` s; [] if none.
        Raises EOFError when the shell has exited."""

    def interrupt(self, driver_pid: int) -> None:
        """Deliver SIGUSR1 to the driver, whose pid is `driver_pid` inside the sandbox."""


@dataclass
class _Stream:
    """One output stream of a command: the head up to the cap, the marker search window."""

    cap: int
    marker: re.Pattern[bytes]
    head: bytearray = field(default_factory=bytearray)
    window: bytearray = field(default_factory=bytearray)
    total: int = 0
    done: bool = False
    status: bytes = b""

    def feed(self, data: bytes) -> None:
        self.window += data
        found = self.marker.search(self.window)
        if found:
            self.done = True
            self.status = bytes(found.group(found.re.groups)) if found.re.groups else b""
            self._keep(self.window[: found.start()])
            self.window.clear()
            return
        keep = max(len(self.window) - 64, 0)
        self._keep(self.window[:keep])
        del self.window[:keep]

    def _keep(self, data: bytes | bytearray) -> None:
        room = self.cap - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.total += len(data)

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        return bytes(self.head).decode("utf-8", errors="replace")


class PersistentShell:
    """Runs commands through a `ShellTransport` using the driver protocol above."""

    def __init__(self, transport: ShellTransport, output_cap: int, ulimits: str = "") -> None:
        self._transport = transport
        self._cap = output_cap
        self._nonce = secrets.token_hex(12)
        self._ulimits = ulimits
        self.driver_pid: int | None = None

    def handshake(self, timeout: float = 30.0) -> int:
        """Send the driver and wait for it to report its pid."""
        script = _DRIVER.format(nonce=self._nonce, ulimits=self._ulimits)
        self._transport.send(script.encode())
        ready = re.compile(rb"%sR(\d+)\n" % self._nonce.encode())
        seen = bytearray()
        errors = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunks = self._transport.receive(0.1)
            except EOFError:
                detail = errors.decode(errors="replace").strip()
                raise SandboxCrashedError(f"sandbox shell exited at start: {detail}") from None
            for stream, data in chunks:
                (seen if stream == STDOUT else errors).extend(data)
            found = ready.search(seen)
            if found:
                self.driver_pid = int(found.group(1))
                return self.driver_pid
        raise SandboxCrashedError(f"sandbox shell did not start within {timeout:.0f} s")

    def run(self, cmd: str, timeout: float) -> ExecResult:
        """Run one command line; kill everything it started if it outlives `timeout`."""
        if "\0" in cmd:
            raise ValueError("a command may not contain a NUL byte")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.driver_pid is None:
            raise SandboxError("shell not started")
        nonce = self._nonce.encode()
        out = _Stream(self._cap, re.compile(rb"\n%sE(-?\d+)\n" % nonce))
        err = _Stream(self._cap, re.compile(rb"\n%sE\n" % nonce))
        start = time.monotonic()
        deadline = start + timeout
        timed_out = False
        try:
            self._transport.send(cmd.encode() + b"\0")
        except EOFError:
            raise SandboxCrashedError("sandbox shell exited") from None
        while not (out.done and err.done):
            now = time.monotonic()
            if not timed_out and now >= deadline:
                timed_out = True
                self._transport.interrupt(self.driver_pid)
            elif timed_out and now >= deadline + _KILL_GRACE_S:
                raise SandboxCrashedError("sandbox shell did not recover after a timeout")
            wait = (deadline if not timed_out else deadline + _KILL_GRACE_S) - now
            try:
                chunks = self._transport.receive(max(min(wait, 0.5), 0.001))
            except EOFError:
                raise SandboxCrashedError("sandbox shell exited") from None
            for stream, data in chunks:
                (out if stream == STDOUT else err).feed(data)
        exit_code = TIMEOUT_EXIT_CODE if timed_out else int(out.status)
        return ExecResult(
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
            duration_s=round(time.monotonic() - start, 6),
        )


class ShellSandbox(Sandbox):
    """A `Sandbox` whose commands go through a `PersistentShell` that `start()` sets up."""

    _shell: PersistentShell | None = None

    def exec(self, cmd: str, timeout: float = 30.0) -> ExecResult:
        if self._shell is None:
            raise SandboxClosedError(f"{self.name} sandbox is not running; call start() first")
        return self._shell.run(cmd, timeout)
