"""User models and files are keyed by content: rewritten in place -> stages re-run; else a hit."""

from __future__ import annotations

import json
import shutil

from audit.config import AuditConfig
from audit.models.embedded import EMBEDDED_DIR
from audit.pipeline.artifacts import AuditPipeline
from audit.pipeline.content_key import content_key
from audit.pipeline.stages import StageRunner


def _episode(ident: str, thought: str) -> dict:
    return {
        "id": ident,
        "env": "api",
        "task_id": "api/safe/x/0",
        "suite": "safe",
        "split": "train",
        "policy": "neutral",
        "seed": 0,
        "tools": [],
        "messages": [
            {"role": "user", "content": "Tidy the workspace."},
            {"role": "assistant", "content": thought},
        ],
        "actions": [],
        "outcome": {"success": True},
        "metadata": {"steps": 1, "max_steps": 8, "stop_reason": "final_answer"},
    }


def test_data_rewritten_in_place_is_sanitized_again(tmp_path):
    data = tmp_path / "clean.jsonl"
    data.write_text(json.dumps(_episode("a", "Listing first.")) + "\n")
    runner = StageRunner(root=tmp_path / "cache")
    pipe = AuditPipeline(AuditConfig(), runner, progress=False)
    first = pipe.user_data(str(data), "api")
    again = pipe.user_data(str(data), "api")
    data.write_text(json.dumps(_episode("a", "Reading the item first.")) + "\n")
    rewritten = pipe.user_data(str(data), "api")
    assert [r.cached for r in runner.records] == [False, False, True, True, False, False]
    assert first.data.key == again.data.key != rewritten.data.key
    assert "Reading the item first." in rewritten.data.path.read_text()


def test_model_key_follows_contents_not_path(tmp_path):
    model = tmp_path / "teacher"
    shutil.copytree(EMBEDDED_DIR / "control-tiny", model)
    moved = tmp_path / "elsewhere" / "teacher"
    shutil.copytree(model, moved)
    pipe = AuditPipeline(AuditConfig(), StageRunner(root=tmp_path / "cache"), progress=False)
    key = pipe.user_model(str(model)).key
    assert key.startswith("user:") and pipe.user_model(str(moved)).key == key
    weights = model / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    assert content_key(model, "user") != key
    (moved / "extra.txt").write_text("x")
    assert content_key(moved, "user") != key
