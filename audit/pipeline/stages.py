"""Cached pipeline stages: each stage's output directory is keyed by a hash of its inputs.

A stage is a function of its inputs (config values and the keys of the stages it reads);
its directory is `<cache>/stages/<name>-<hash>/` and it is finished when `done.json` exists.
A killed run re-run with the same command finds the finished stages and redoes only the
unfinished ones (a stage may resume its own partial work, as training does from its last
checkpoint); a changed config changes the hashes of exactly the stages it touches.
Audits sharing a cache (`audit.study.grid --jobs`) hold a file lock per stage while they check and
run it, so one of them computes a stage and the others wait and read its result.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock


def stage_cache_root() -> Path:
    """`DISTILL_AUDIT_CACHE`/stages, default ~/.cache/distill-audit/stages."""
    root = os.environ.get("DISTILL_AUDIT_CACHE") or Path.home() / ".cache" / "distill-audit"
    return Path(root) / "stages"


def inputs_key(inputs: dict[str, Any]) -> str:
    """Stable short hash of JSON-serialisable inputs."""
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class StageRecord:
    """A finished stage: where it lives, what it returned, how long it took."""

    name: str
    key: str
    path: Path
    result: dict[str, Any]
    seconds: float
    cached: bool


@dataclass
class StageRunner:
    """Runs stages through the cache and keeps a record of each, in order."""

    root: Path = field(default_factory=stage_cache_root)
    on_start: Callable[[str], None] | None = None
    records: list[StageRecord] = field(default_factory=list)
    computed_by_workers: set[str] = field(default_factory=set)
    """Keys of the stages this run's worker processes computed (`audit.pipeline.workers`):
    the first read of each from the cache records it as not cached, as if computed here."""

    def run(
        self,
        name: str,
        inputs: dict[str, Any],
        work: Callable[[Path], dict[str, Any]],
    ) -> StageRecord:
        """Return the cached result of (name, inputs), or run `work(stage_dir)` and cache it;
        under the stage's file lock."""
        key = inputs_key({"stage": name, **inputs})
        path = self.root / f"{name}-{key}"
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock")):
            record = self._run_locked(name, key, path, inputs, work)
        self.records.append(record)
        return record

    def _run_locked(
        self,
        name: str,
        key: str,
        path: Path,
        inputs: dict[str, Any],
        work: Callable[[Path], dict[str, Any]],
    ) -> StageRecord:
        done = path / "done.json"
        if done.is_file():
            payload = json.loads(done.read_text())
            cached = key not in self.computed_by_workers
            self.computed_by_workers.discard(key)
            record = StageRecord(name, key, path, payload["result"], payload["seconds"], cached)
        else:
            if self.on_start:
                self.on_start(name)
            path.mkdir(parents=True, exist_ok=True)
            (path / "inputs.json").write_text(json.dumps(inputs, sort_keys=True, default=str))
            start = time.monotonic()
            result = work(path)
            seconds = round(time.monotonic() - start, 2)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps({"result": result, "seconds": seconds}, default=str))
            tmp.replace(done)
            record = StageRecord(name, key, path, result, seconds, False)
        return record

    def timings(self) -> dict[str, float]:
        """Seconds per stage name (summed over repeats), as first run."""
        totals: dict[str, float] = {}
        for record in self.records:
            totals[record.name] = round(totals.get(record.name, 0.0) + record.seconds, 2)
        return totals
