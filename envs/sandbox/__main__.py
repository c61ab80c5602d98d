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
import sys

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
    from envs.sandbox.rootfs import ensure_rootfs

    console = Console(stderr=True)
    path = ensure_rootfs(console)
    console.print(f"root filesystem: {path}")
    if backend in ("docker", "all"):
        from envs.sandbox.docker_backend import ensure_image

        console.print(f"docker image: {ensure_image(console=console)}")
    return 0


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
