"""The `docker` backend: one container per sandbox, a persistent shell over the exec socket.

The image is imported from the shared Debian tree (no registry needed) and tagged
`distill-audit-sandbox:<recipe hash>` and `:latest`. Containers run with no network,
a read-only root, tmpfs /workspace and /tmp, every capability dropped, no-new-privileges, and
CPU / memory / pids limits, as docker-compose.yml describes. Commands go to one `bash`,
running as the unprivileged agent user, started with the Docker SDK's interactive exec
socket. The container's idle init (tini reaping orphans, and `sleep`) keeps uid 0 with no
capabilities so that the agent's `kill -9 -1` cannot stop the container. Containers of a
process killed with SIGKILL are removed by the next process's first docker sandbox.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import uuid
from typing import Any

from rich.console import Console

from envs.sandbox.base import (
    AGENT_GID,
    AGENT_UID,
    WORKSPACE,
    SandboxLimits,
    SandboxUnavailableError,
)
from envs.sandbox.leftovers import is_orphan_owner, once, process_owner
from envs.sandbox.rootfs import GROUPS, RootfsRecipe, ensure_tarball
from envs.sandbox.shell import PersistentShell, ShellSandbox

IMAGE_REPO = "distill-audit-sandbox"
LABEL = "distill-audit.sandbox"
OWNER_LABEL = "distill-audit.owner"
"""The process that started the container (`envs.sandbox.leftovers.process_owner`)."""


def _client() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as err:
        fix = "start it (e.g. `dockerd &` or `systemctl start docker`) or use `--backend bwrap`"
        if os.geteuid() != 0:
            fix = (
                "start it, or give this user its socket (`sudo bash .ci/setup-system` does; "
                "the docker group needs a new login)"
            )
        raise SandboxUnavailableError(
            f"cannot reach the Docker daemon ({type(err).__name__}); {fix}"
        ) from None
    return client


def check_daemon() -> None:
    """Raise `SandboxUnavailableError` (one line, saying how to fix it) unless the Docker
    daemon answers."""
    _client().close()


def remove_orphan_containers(client: Any) -> None:
    """Remove the sandbox containers whose owning process no longer exists."""
    from docker.errors import APIError

    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        if is_orphan_owner(container.labels.get(OWNER_LABEL, "")):
            with contextlib.suppress(APIError):
                container.remove(force=True)


def image_tag(recipe: RootfsRecipe | None = None) -> str:
    return f"{IMAGE_REPO}:{(recipe or RootfsRecipe()).digest()}"


def ensure_image(client: Any | None = None, console: Console | None = None) -> str:
    """Import the Debian tree as the sandbox image if it is missing; return its tag."""
    from docker.errors import ImageNotFound

    client = client or _client()
    tag = image_tag()
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    tarball = ensure_tarball(console)
    console = console or Console(stderr=True)
    with console.status(f"docker import {tarball.name} as {tag}"):
        client.api.import_image_from_file(
            str(tarball), repository=IMAGE_REPO, tag=tag.split(":")[1]
        )
        client.images.get(tag).tag(IMAGE_REPO, "latest")
    console.print(f"sandbox image ready: {tag}")
    return tag


class _ExecSocketTransport:
    """`ShellTransport` over a Docker exec attach socket (multiplexed stdout/stderr frames)."""

    def __init__(self, container: Any, sock: socket.socket) -> None:
        self._container = container
        self._sock = sock
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError:
            raise EOFError from None

    def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if ready:
            data = self._sock.recv(1 << 16)
            if not data:
                raise EOFError
            self._buffer += data
        chunks = []
        while len(self._buffer) >= 8:
            stream, size = struct.unpack(">BxxxL", self._buffer[:8])
            if len(self._buffer) < 8 + size:
                break
            chunks.append((stream, bytes(self._buffer[8 : 8 + size])))
            del self._buffer[: 8 + size]
        return chunks

    def interrupt(self, driver_pid: int) -> None:
        self._container.exec_run(["kill", "-USR1", str(driver_pid)], user=str(AGENT_UID))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class DockerSandbox(ShellSandbox):
    """A Docker container sandbox with a persistent shell; see the module docstring."""

    name = "docker"

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        super().__init__(limits)
        self._container: Any = None
        self._pending: tuple[Any, str] | None = None
        """The client and name of the container `start` creates: `close` removes it by name
        when `start` was interrupted before the container object came back."""
        self._transport: _ExecSocketTransport | None = None
        self._shell: PersistentShell | None = None

    def container_options(self, image: str) -> dict[str, Any]:
        """Keyword arguments of `containers.create`: the isolation and limits."""
        limits = self.limits
        size = f"size={limits.workspace_mb}m"
        return {
            "image": image,
            "command": ["sleep", "infinity"],
            "init": True,
            "group_add": [str(gid) for gid in GROUPS.values()],
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {
                WORKSPACE: f"rw,exec,{size},uid={AGENT_UID},gid={AGENT_GID},mode=0755",
                "/tmp": f"rw,{size},mode=1777",
            },
            "working_dir": WORKSPACE,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "nano_cpus": int(limits.cpus * 1e9),
            "mem_limit": f"{limits.memory_mb}m",
            "memswap_limit": f"{limits.memory_mb}m",
            "pids_limit": limits.pids,
            "labels": {LABEL: "1", OWNER_LABEL: process_owner()},
            "hostname": "sandbox",
        }

    def start(self) -> None:
        if self._shell is not None:
            return
        client = _client()
        once("docker", lambda: remove_orphan_containers(client))
        image = ensure_image(client)
        name = f"distill-audit-{uuid.uuid4().hex[:16]}"
        self._pending = (client, name)
        try:
            self._container = client.containers.create(name=name, **self.container_options(image))
            self._container.start()
            exec_id = client.api.exec_create(
                self._container.id,
                ["/bin/bash", "--noprofile", "--norc"],
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                user=f"{AGENT_UID}:{AGENT_GID}",
                workdir=WORKSPACE,
            )["Id"]
            attached = client.api.exec_start(exec_id, socket=True, tty=False)
            raw = getattr(attached, "_sock", attached)
            self._transport = _ExecSocketTransport(self._container, raw)
            self._shell = PersistentShell(self._transport, self.limits.output_bytes)
            self._shell.handshake()
        except BaseException as err:
            self.close()
            if isinstance(err, Exception):
                raise SandboxUnavailableError(f"docker sandbox failed to start: {err}") from None
            raise

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        from docker.errors import NotFound

        container, self._container = self._container, None
        pending, self._pending = self._pending, None
        with contextlib.suppress(NotFound):
            if container is not None:
                container.remove(force=True)
            elif pending is not None:
                client, name = pending
                client.api.remove_container(name, force=True)
        self._transport = self._shell = None
