"""The sandbox's Debian root filesystem, built offline-friendly with `debootstrap`.

Both backends run the same tree: `bwrap` binds it read-only, `docker` imports a tar of it as
an image. The tree is cached under a directory keyed by a hash of its recipe; building is
idempotent and atomic (built beside, renamed into place) and one process builds it at a time
(a file lock beside it). The Debian mirror is the one this
machine's apt already uses, or `DISTILL_AUDIT_DEBIAN_MIRROR`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock
from rich.console import Console

from envs.sandbox.base import AGENT_GID, AGENT_UID, SandboxUnavailableError

SUITE = "bookworm"
PACKAGES = ("acl", "procps")
GROUPS = {"team": 1001, "devs": 1002, "ops": 1003}
OTHER_USERS = {"alice": 1101, "bob": 1102, "carol": 1103}
RECIPE_VERSION = 1


@dataclass(frozen=True)
class RootfsRecipe:
    """Everything that determines the tree; its hash names the cache directory."""

    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    agent_uid: int = AGENT_UID
    groups: tuple[tuple[str, int], ...] = tuple(GROUPS.items())
    other_users: tuple[tuple[str, int], ...] = tuple(OTHER_USERS.items())
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Where sandbox artifacts live: `DISTILL_AUDIT_CACHE` or ~/.cache/distill-audit."""
    root = os.environ.get("DISTILL_AUDIT_CACHE") or Path.home() / ".cache" / "distill-audit"
    return Path(root) / "sandbox"


def rootfs_path(recipe: RootfsRecipe | None = None) -> Path:
    return cache_dir() / f"rootfs-{(recipe or RootfsRecipe()).digest()}"


def tarball_path(recipe: RootfsRecipe | None = None) -> Path:
    return cache_dir() / f"rootfs-{(recipe or RootfsRecipe()).digest()}.tar"


def debian_mirror() -> str:
    """The mirror URL: `DISTILL_AUDIT_DEBIAN_MIRROR`, else the one apt uses for Debian here."""
    override = os.environ.get("DISTILL_AUDIT_DEBIAN_MIRROR")
    if override:
        return override
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file() or source.suffix not in ("", ".list", ".sources"):
            continue
        text = source.read_text(errors="replace")
        for url in re.findall(r"^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            if url.rstrip("/").endswith("/debian"):
                return url
    raise SandboxUnavailableError(
        "no Debian mirror found in /etc/apt sources; set DISTILL_AUDIT_DEBIAN_MIRROR to a "
        "Debian mirror URL (e.g. your apt proxy's .../debian)"
    )


def _add_accounts(tree: Path, recipe: RootfsRecipe) -> None:
    etc = tree / "etc"
    group_lines = [f"agent:x:{recipe.agent_uid}:"]
    group_lines += [f"{name}:x:{gid}:agent" for name, gid in recipe.groups]
    group_lines += [f"{name}:x:{uid}:" for name, uid in recipe.other_users]
    passwd_lines = [f"agent:x:{recipe.agent_uid}:{recipe.agent_uid}::/workspace:/bin/bash"]
    passwd_lines += [
        f"{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin" for name, uid in recipe.other_users
    ]
    with (etc / "group").open("a") as handle:
        handle.write("\n".join(group_lines) + "\n")
    with (etc / "passwd").open("a") as handle:
        handle.write("\n".join(passwd_lines) + "\n")
    (tree / "workspace").mkdir(exist_ok=True)
    os.chown(tree / "workspace", AGENT_UID, AGENT_GID)


def ensure_rootfs(console: Console | None = None, recipe: RootfsRecipe | None = None) -> Path:
    """Return the tree's path, building it first if it is missing (needs root, ~40 s)."""
    recipe = recipe or RootfsRecipe()
    target = rootfs_path(recipe)
    if (target / "etc" / "passwd").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(target.name + ".lock")):
        if (target / "etc" / "passwd").is_file():
            return target
        return _build_rootfs(target, recipe, console or Console(stderr=True))


def _build_rootfs(target: Path, recipe: RootfsRecipe, console: Console) -> Path:
    if os.geteuid() != 0:
        raise SandboxUnavailableError(
            "building the sandbox root filesystem needs root: run "
            "`sudo python -m envs.sandbox build` once"
        )
    if shutil.which("debootstrap") is None:
        raise SandboxUnavailableError(
            "debootstrap is not installed: run `apt-get install -y debootstrap`"
        )
    mirror = debian_mirror()
    staging = target.with_name(target.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        recipe.suite,
        str(staging),
        mirror,
    ]
    with console.status("debootstrap: starting") as status:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-20:]
            status.update(f"debootstrap: {line.strip()[:90]}")
        if proc.wait() != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise SandboxUnavailableError(
                f"debootstrap failed (exit {proc.returncode}): {' | '.join(tail[-3:])}"
            )
    _add_accounts(staging, recipe)
    staging.rename(target)
    console.print(f"sandbox root filesystem ready: {target}")
    return target


def ensure_tarball(console: Console | None = None, recipe: RootfsRecipe | None = None) -> Path:
    """A tar of the tree, for `docker import`; built from the tree when missing."""
    recipe = recipe or RootfsRecipe()
    target = tarball_path(recipe)
    if target.is_file():
        return target
    tree = ensure_rootfs(console, recipe)
    with FileLock(target.with_name(target.name + ".lock")):
        if target.is_file():
            return target
        staging = target.with_name(target.name + ".building")
        with tarfile.open(staging, "w") as tar:
            tar.add(tree, arcname=".")
        staging.rename(target)
    return target
