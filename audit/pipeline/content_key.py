"""Stage keys for the user's own models and files: a hash of their contents, never their path.

A teacher retrained in place or data regenerated in place gets a new key, so every stage
that reads it runs again; an unchanged file or directory keeps its key wherever it lives.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(directory: Path) -> list[dict[str, str | int]]:
    """Every file under `directory` (relative name, size, sha256), sorted by name."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return [
        {
            "name": p.relative_to(directory).as_posix(),
            "size": p.stat().st_size,
            "sha256": file_sha256(p),
        }
        for p in files
    ]


def content_key(path: str | Path, kind: str) -> str:
    """`kind:<sha256>` of a file's bytes, or of a directory's manifest (names, sizes, hashes)."""
    target = Path(path)
    if target.is_dir():
        blob = json.dumps(manifest(target), sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()
    else:
        digest = file_sha256(target)
    return f"{kind}:{digest}"
