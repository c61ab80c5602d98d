"""`python -m envs.sandbox`: build the sandbox, or run one command in a fresh sandbox.

    python -m envs.sandbox build [--backend docker|bwrap|all]
    python -m envs.sandbox exec --backend docker|bwrap [--timeout S] [--json] -- CMD...

`exec` joins CMD's words with spaces into one shell command line (as ssh does), prints the
command's output and exits with its exit code (124 on timeout); with
`--json` it prints one JSON object and exits 0. Bad usage exits 2; a backend that cannot
start exits 3 with one line saying how to fix it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from envs.sandbox import BACKENDS, SandboxError, SandboxUnavailableError, get_sandbox

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m envs.sandbox", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    build = sub.add_parser("build", help="prepare the root filesystem and the docker image")
    build.add_argument("--backend", choices=[*sorted(BACKENDS), "all"], default="all")
    run = sub.add_parser("exec", help="run CMD (a shell command line) in a fresh sandbox")
    run.add_argument("--backend", choices=sorted(BACKENDS), required=True)
    run.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    run.add_argument("--json", action="store_true", help="print one JSON object, exit 0")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD...")
    return parser


def _build(backend: str) -> int:
    from envs.sandbox.rootfs import cache_dir, ensure_rootfs, rootfs_path

    console = Console(stderr=True)
    if os.geteuid() != 0 and not (rootfs_path() / "etc" / "passwd").is_file():
        return _build_through_sudo(backend, console)
    path = ensure_rootfs(console)
    console.print(f"root filesystem: {path}")
    if backend in ("docker", "all"):
        from envs.sandbox.docker_backend import ensure_image

        console.print(f"docker image: {ensure_image(console=console)}")
    if os.geteuid() == 0 and os.environ.get("SUDO_UID"):
        _give_cache_to(cache_dir(), int(os.environ["SUDO_UID"]), int(os.environ["SUDO_GID"]))
    return 0


def _build_through_sudo(backend: str, console: Console) -> int:
    """Re-run this build as root through sudo, for this user's cache (building the tree needs
    root; a normal user's bwrap sandboxes then run in a user namespace)."""
    if shutil.which("sudo") is None:
        raise SandboxUnavailableError(
            "building the sandbox root filesystem needs root, and sudo is not installed"
        )
    keep = [f"HOME={Path.home()}"]
    if os.environ.get("DISTILL_AUDIT_CACHE"):
        keep.append(f"DISTILL_AUDIT_CACHE={os.environ['DISTILL_AUDIT_CACHE']}")
    console.print("building the sandbox root filesystem needs root: re-running through sudo")
    command = ["sudo", "env", *keep, sys.executable, "-m", "envs.sandbox", "build"]
    return subprocess.run([*command, "--backend", backend], check=False).returncode


def _give_cache_to(cache: Path, uid: int, gid: int) -> None:
    """Hand the cache folders a sudo build made in the user's home (and its lock and tar files)
    to the user who ran sudo, so that user's later runs can write there; the tree itself stays
    root's."""
    folders = [cache, cache.parent]
    if cache.parent.parent.name == ".cache":
        folders.append(cache.parent.parent)
    files = [path for path in cache.iterdir() if path.is_file()]
    for path in [*folders, *files]:
        inside_home = path.resolve().is_relative_to(Path.home().resolve())
        if inside_home and path.exists() and path.stat().st_uid == 0:
            os.chown(path, uid, gid)


def _exec(backend: str, words: list[str], timeout: float, as_json: bool) -> int:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        print("error: no command given (usage: exec --backend B -- CMD...)", file=sys.stderr)
        return EXIT_USAGE
    if timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    cmd = " ".join(words)
    with get_sandbox(backend) as sandbox:
        result = sandbox.exec(cmd, timeout=timeout)
    if as_json:
        print(json.dumps(result.to_dict()))
        return 0
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.truncated:
        print("[output truncated]", file=sys.stderr)
    if result.timed_out:
        print(f"[timed out after {timeout:g} s]", file=sys.stderr)
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            return _build(args.backend)
        return _exec(args.backend, args.cmd, args.timeout, args.json)
    except SandboxUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except SandboxError as err:
        print(f"error: sandbox failed: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
