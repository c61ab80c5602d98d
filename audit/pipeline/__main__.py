"""`python -m audit.pipeline embed-teachers`: induce the preset teachers of the default audit
again and commit them under `audit/models/embedded/teachers/` (`artifacts.EMBEDDED_TEACHERS`)."""

from __future__ import annotations

import argparse
import sys

from audit.pipeline.artifacts import embed_preset_teachers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.pipeline", description=__doc__)
    parser.add_argument("command", choices=["embed-teachers"])
    parser.parse_args(argv)
    for path in embed_preset_teachers():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
