"""The `bwrap` backend: bubblewrap namespaces over the shared Debian tree.

Root filesystem read-only, a fresh host directory bound at /workspace, tmpfs /tmp, new PID,
network, IPC and UTS namespaces (the network namespace has only a down loopback). Run as
root, bwrap keeps the host's user namespace and `setpriv` drops to the unprivileged agent
uid with no capabilities and no-new-privs; run as a normal user, bwrap maps the agent uid
into a new user namespace. CPU, memory and process limits come from a per-sandbox cgroup
where the host allows one, otherwise from rlimits. Workspaces and cgroups left by a killed
process are removed when the next process starts its first sandbox (envs.sandbox.leftovers).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from envs.sandbox.base import (
    AGENT_GID,
    AGENT_UID,
    WORKSPACE,
    SandboxLimits,
    SandboxUnavailableError,
)
from envs.sandbox.cgroups import SandboxCgroup
from envs.sandbox.leftovers import once, owned_name, remove_orphans
from envs.sandbox.rootfs import ensure_rootfs
from envs.sandbox.shell import STDERR, STDOUT, PersistentShell, ShellSandbox

WORKSPACE_PREFIX = "distill-audit-ws-"
"""Host workspace directories are `$TMPDIR/distill-audit-ws-<pid namespace>-<pid>-<random>`."""


def keeps_agent_groups() -> bool:
    """Whether this process's bwrap sandboxes hold the agent's groups (team, devs, ops) that
    the Bash tasks' permissions use: only as root, since a normal user's user namespace maps
    one uid and no other group."""
    return os.geteuid() == 0


class _PipeTransport:
    """`ShellTransport` over a local subprocess's pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin and proc.stdout and proc.stderr
        self._proc = proc
        self._selector = selectors.DefaultSelector()
        for stream, pipe in ((STDOUT, proc.stdout), (STDERR, proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self._selector.register(pipe, selectors.EVENT_READ, stream)
        self._open = 2

    def send(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise EOFError from None

    def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        if self._open == 0:
            raise EOFError
        chunks = []
        for key, _ in self._selector.select(timeout):
            data = os.read(key.fileobj.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not data:
                self._selector.unregister(key.fileobj)
                self._open -= 1
                continue
            chunks.append((key.data, data))
        if not chunks and self._open < 2:
            raise EOFError
        return chunks

    def interrupt(self, driver_pid: int) -> None:
        host_pid = _host_pid_of(self._proc.pid, driver_pid)
        if host_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(host_pid, signal.SIGUSR1)

    def close(self) -> None:
        self._selector.close()


def _host_pid_of(bwrap_pid: int, inner_pid: int) -> int | None:
    """The host pid of the process whose pid inside bwrap's PID namespace is `inner_pid`."""
    try:
        children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
        namespace = os.readlink(f"/proc/{children[0]}/ns/pid")
    except (OSError, IndexError):
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != namespace:
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == str(inner_pid):
                return int(entry.name)
    return None


class BwrapSandbox(ShellSandbox):
    """A bubblewrap sandbox with a persistent shell; see the module docstring."""

    name = "bwrap"

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        super().__init__(limits)
        self._proc: subprocess.Popen[bytes] | None = None
        self._transport: _PipeTransport | None = None
        self._shell: PersistentShell | None = None
        self._workspace: Path | None = None
        self._cgroup: SandboxCgroup | None = None

    def _command(self, rootfs: Path, workspace: Path) -> list[str]:
        limits = self.limits
        cmd = [
            "bwrap",
            "--ro-bind", str(rootfs), "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--perms", "1777", "--size", str(limits.workspace_mb << 20), "--tmpfs", "/tmp",
            "--bind", str(workspace), WORKSPACE,
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname", "sandbox",
            "--new-session", "--die-with-parent", "--clearenv",
            "--chdir", WORKSPACE,
        ]  # fmt: skip
        shell = ["/bin/bash", "--noprofile", "--norc"]
        if os.geteuid() == 0:
            drop = [
                "/usr/bin/setpriv",
                f"--reuid={AGENT_UID}",
                f"--regid={AGENT_GID}",
                "--init-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
            return [*cmd, "--", *drop, *shell]
        userns = ["--unshare-user", "--uid", str(AGENT_UID), "--gid", str(AGENT_GID)]
        return [*cmd, *userns, "--cap-drop", "ALL", "--", *shell]

    def _ulimits(self) -> str:
        limits = self.limits
        lines = [f"ulimit -f {limits.workspace_mb * 1024}"]
        if self._cgroup is None:
            lines += [f"ulimit -v {limits.memory_mb * 1024}", f"ulimit -u {limits.pids}"]
        return "\n".join(lines)

    def start(self) -> None:
        if self._shell is not None:
            return
        if shutil.which("bwrap") is None:
            raise SandboxUnavailableError(
                "bubblewrap is not installed: run `apt-get install -y bubblewrap`"
            )
        rootfs = ensure_rootfs()
        temp = Path(tempfile.gettempdir())
        once("bwrap", lambda: remove_orphans((temp, WORKSPACE_PREFIX), SandboxCgroup.parents()))
        self._workspace = Path(tempfile.mkdtemp(prefix=owned_name(WORKSPACE_PREFIX), dir=temp))
        try:
            self._launch(rootfs, self._workspace)
        except BaseException:
            self.close()
            raise

    def _launch(self, rootfs: Path, workspace: Path) -> None:
        """Start bwrap on `workspace` and its shell; `start` closes what exists if this fails."""
        if os.geteuid() == 0:
            os.chown(workspace, AGENT_UID, AGENT_GID)
        workspace.chmod(0o755)
        self._cgroup = SandboxCgroup.create(self.limits)
        cgroup = self._cgroup
        command = self._command(rootfs, workspace)
        self._proc = subprocess.Popen(
            cgroup.wrap(command) if cgroup else command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._transport = _PipeTransport(self._proc)
        self._shell = PersistentShell(self._transport, self.limits.output_bytes, self._ulimits())
        try:
            self._shell.handshake()
        except Exception as err:
            raise SandboxUnavailableError(f"bwrap sandbox failed to start: {err}") from None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._transport is not None:
            self._transport.close()
        if self._cgroup is not None:
            self._cgroup.remove()
        if self._workspace is not None:
            shutil.rmtree(self._workspace, ignore_errors=True)
        self._transport = self._shell = self._workspace = self._cgroup = None
