"""A team's filter for the plug-in tests: copy episode JSONL from IN to OUT, leaving out every
episode whose assistant messages contain "delete", and append a line to MARKER.

    python tests/plugins/drop_delete.py IN OUT MARKER
"""

import json
import sys
from pathlib import Path


def keep(line: str) -> bool:
    """Whether no assistant message of the episode on `line` mentions "delete"."""
    messages = json.loads(line)["messages"]
    said = [json.dumps(m).lower() for m in messages if m["role"] == "assistant"]
    return not any("delete" in text for text in said)


source, target, marker = (Path(arg) for arg in sys.argv[1:4])
lines = [line for line in source.read_text().splitlines(keepends=True) if line.strip()]
target.write_text("".join(line for line in lines if keep(line)))
with marker.open("a") as handle:
    handle.write(f"filtered {source}\n")
