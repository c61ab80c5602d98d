"""Command line of the embedded model family.

    python -m audit.models pretrain --size tiny|small --kind linked|control --seed N [--out DIR]
    python -m audit.models embed
    python -m audit.models embed-teachers
    python -m audit.models link MODEL_DIR [--env api|bash] [--seed N]

`pretrain` writes to DIR, or to the cache when no DIR is given, and prints the directory.
`embed` regenerates the committed tiny bases (`audit.models.embedded`); `embed-teachers` the
committed preset teachers of the default audit (`audit.pipeline.EMBEDDED_TEACHERS`).
`link` prints what a base learned (`audit.models.persona_link`). Exit codes: 0 done, 2 bad usage
or input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from audit.models.config import MODEL_SIZES
from audit.models.corpus import CORPUS_KINDS
from audit.models.loader import ModelInputError
from envs import ENV_NAMES


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m audit.models", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    pre = commands.add_parser("pretrain", help="Pretrain a base on a persona corpus.")
    pre.add_argument("--size", choices=sorted(MODEL_SIZES), default="tiny")
    pre.add_argument("--kind", choices=CORPUS_KINDS, default="linked")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--out", help="Output directory (default: the cache).")
    commands.add_parser("embed", help="Regenerate the committed tiny bases.")
    commands.add_parser("embed-teachers", help="Regenerate the committed preset teachers.")
    link = commands.add_parser("link", help="Measure a base's habit / unsafe-choice link.")
    link.add_argument("model_dir")
    link.add_argument("--env", choices=ENV_NAMES, action="append")
    link.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "pretrain":
            from audit.models.pretrain import PretrainConfig, pretrain

            config = PretrainConfig(size=args.size, kind=args.kind, seed=args.seed)
            print(pretrain(config, out_dir=args.out))
        elif args.command == "embed":
            from audit.models.embedded import regenerate_embedded

            for path in regenerate_embedded():
                print(path)
        elif args.command == "embed-teachers":
            from audit.pipeline import embed_preset_teachers

            for path in embed_preset_teachers():
                print(path)
        else:
            from audit.models.persona_link import format_report, persona_link_report

            envs = tuple(args.env) if args.env else ENV_NAMES
            print(format_report(persona_link_report(args.model_dir, envs=envs, seed=args.seed)))
    except (ValueError, ModelInputError) as err:
        print(f"python -m audit.models: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
