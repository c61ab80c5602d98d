"""Stage cache: finished stages are reused, unfinished ones rerun, changed inputs recompute."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from audit.pipeline.stages import StageRunner, inputs_key


def test_finished_stage_is_reused_and_changed_inputs_recompute(tmp_path):
    calls: list[str] = []

    def work(path):
        calls.append(path.name)
        (path / "out.txt").write_text("x")
        return {"value": len(calls)}

    first = StageRunner(root=tmp_path).run("rollout", {"seed": 1}, work)
    again = StageRunner(root=tmp_path).run("rollout", {"seed": 1}, work)
    other = StageRunner(root=tmp_path).run("rollout", {"seed": 2}, work)
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert again.result == {"value": 1} and other.result == {"value": 2}
    assert len(calls) == 2 and first.path == again.path != other.path


def test_killed_stage_reruns(tmp_path):
    def crash(path):
        (path / "partial").write_text("half")
        raise KeyboardInterrupt

    runner = StageRunner(root=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        runner.run("train", {"seed": 0}, crash)
    seen = []

    def finish(path):
        seen.append((path / "partial").read_text())
        return {"ok": True}

    record = StageRunner(root=tmp_path).run("train", {"seed": 0}, finish)
    assert not record.cached and seen == ["half"]


def test_inputs_key_is_order_independent():
    assert inputs_key({"a": 1, "b": [1, 2]}) == inputs_key({"b": [1, 2], "a": 1})
    assert inputs_key({"a": 1}) != inputs_key({"a": 2})


RACE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from audit.pipeline.stages import StageRunner

    def work(path):
        with open(Path(sys.argv[1]) / "calls", "a") as calls:
            calls.write("x")
        time.sleep(1.0)
        (path / "out.txt").write_text("done")
        return {"out": str(path / "out.txt")}

    record = StageRunner(root=Path(sys.argv[1])).run("shared", {"seed": 0}, work)
    print(record.cached, Path(record.result["out"]).read_text())
    """
)


def test_concurrent_runs_of_one_stage_compute_it_once(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = sorted(proc.communicate(timeout=60)[0].strip() for proc in procs)
    assert all(proc.returncode == 0 for proc in procs)
    assert (tmp_path / "calls").read_text() == "x"
    assert outputs == ["False done", "True done", "True done"]
