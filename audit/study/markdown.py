"""Markdown rewrapping for RESULTS.md: prose and bullets reflowed, tables and code kept."""

from __future__ import annotations

import textwrap


def reflow(text: str, width: int = 92) -> str:
    """Markdown with each paragraph and bullet rewrapped at `width` and runs of blank lines
    collapsed; headings, tables and fenced code stay as they are."""
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            bullet = block[0].startswith("- ")
            words = " ".join(line.strip() for line in block)
            indent = "  " if bullet else ""
            out.extend(
                textwrap.wrap(words, width, subsequent_indent=indent, break_on_hyphens=False)
            )
            block.clear()

    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            flush()
            fenced = not fenced
            out.append(line)
        elif fenced or line.startswith(("#", "|")):
            flush()
            out.append(line)
        elif not line.strip():
            flush()
            if out and out[-1]:
                out.append("")
        else:
            if line.startswith("- "):
                flush()
            block.append(line)
    flush()
    return "\n".join(out).strip() + "\n"
