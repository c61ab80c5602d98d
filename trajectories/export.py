"""`python -m trajectories.export --to inspect EPISODES.jsonl... --out LOG_DIR`: write episodes
in another tool's format. Inspect (`--to inspect`, needs `distill-audit[inspect]`): one eval log
of all the episodes, named so that `inspect view --log-dir LOG_DIR` lists it; its path is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from trajectories.jsonl import exit_on_input_error


def main(argv: Iterable[str] | None = None) -> int:
    """Run the CLI; return the exit code (raises `InputError` for bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m trajectories.export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("episodes", nargs="+", type=Path, help="episode JSONL files")
    parser.add_argument("--to", required=True, choices=["inspect"], help="the target format")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the log in")
    parser.add_argument(
        "--format", default="eval", choices=["eval", "json"], help="Inspect log file format"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    from trajectories.dataset import load_episodes
    from trajectories.inspect_log import write_inspect_log

    episodes = [episode for path in args.episodes for episode in load_episodes(path)]
    path = write_inspect_log(episodes, args.out, args.format)
    print(f"{len(episodes)} episodes -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    exit_on_input_error(main)
