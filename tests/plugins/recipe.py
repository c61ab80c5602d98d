"""A team's training recipe for the plug-in tests: two SFT steps with the project's own CLI,
then append a line to MARKER.

    python tests/plugins/recipe.py DATA BASE OUT SEED MARKER
"""

import subprocess
import sys
from pathlib import Path

data, base, out, seed, marker = sys.argv[1:6]
subprocess.run(
    [
        *(sys.executable, "-m", "audit.training.distill", "--data", data, "--base", base),
        *("--out", out, "--method", "sft", "--seed", seed, "--max-steps", "2", "--quiet"),
    ],
    check=True,
)
with Path(marker).open("a") as handle:
    handle.write(f"trained {out}\n")
