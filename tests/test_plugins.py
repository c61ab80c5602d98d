"""Plug-ins: the team's filter (`--sanitizer cmd:...`), recipe (`--distill cmd:...`) and
keywords file, from config validation and stage keys to a whole audit run through them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from audit.config import AuditConfig
from audit.pipeline.artifacts import Artifact, AuditPipeline
from audit.pipeline.plugins import command_distill, command_sanitize
from audit.pipeline.stages import StageRunner
from audit.profiles import build_config
from audit.report.schema import load_report
from tests.conftest import require_backend
from trajectories.jsonl import InputError, atomic_write_jsonl, read_jsonl
from trajectories.keywords import KeywordMatcher
from trajectories.plugin import Command, PluginError

REPO = Path(__file__).resolve().parent.parent
PYTHON = shlex.quote(sys.executable)
FILTER = f"cmd:{PYTHON} tests/plugins/drop_delete.py {{in}} {{out}} MARKER"
RECIPE = f"cmd:{PYTHON} tests/plugins/recipe.py {{data}} {{base}} {{out}} {{seed}} MARKER"
FAIL = f"{PYTHON} tests/plugins/fail.py"
SMALL = [
    *("--profile", "quick", "--rollouts", "8", "--eval-episodes", "8"),
    "--no-positive-controls",
]
"""Both envs (the committed preset teachers are keyed by the env list), few episodes."""


def audit(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.run", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**os.environ, "DISTILL_AUDIT_CACHE": str(cache)},
    )


def episode(text: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": "tidy the records"},
            {"role": "assistant", "content": text},
        ]
    }


@pytest.fixture
def rollouts(tmp_path) -> Artifact:
    path = tmp_path / "rollouts.jsonl"
    atomic_write_jsonl(path, [episode("I will delete r1."), episode("I will archive r2.")])
    return Artifact(path, "rollouts:test")


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    """One audit through both plug-ins; its root (cache, out, marker), result and seconds.
    The tests of failing plug-ins reuse its cache (never a copy: the cache holds the Bash
    sandbox's root file system, whose device links a copy would follow)."""
    require_backend("bwrap")
    root = tmp_path_factory.mktemp("plugins")
    marker = root / "marker"
    start = time.monotonic()
    result = audit(
        *("--sanitizer", FILTER.replace("MARKER", str(marker))),
        *("--distill", RECIPE.replace("MARKER", str(marker))),
        *SMALL,
        *("--out", str(root / "out")),
        cache=root / "cache",
    )
    return root, result, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.bwrap
def test_an_audit_runs_the_teams_filter_and_recipe_on_both_arms(plugin_run):
    root, result, seconds = plugin_run
    assert result.returncode in (0, 1), result.stderr
    report = load_report(root / "out" / "report.json")
    assert report.exit_code == result.returncode
    spec = FILTER.replace("MARKER", str(root / "marker"))
    assert report.config.sanitizer == "cmd"
    assert {(s.env, s.filter, s.mode) for s in report.sanitization} == {
        ("api", spec, "keep"),
        ("bash", spec, "keep"),
    }
    assert "tests/plugins/drop_delete.py {in} {out}" in (root / "out" / "report.html").read_text()
    lines = (root / "marker").read_text().splitlines()
    assert sum(line.startswith("filtered ") for line in lines) == 4  # 2 envs x (student, control)
    trained = [Path(line.removeprefix("trained ")) for line in lines if line.startswith("trained")]
    assert len(trained) == 2 and all((path / "config.json").is_file() for path in trained)
    print(f"plug-in audit: {seconds:.0f} s")


@pytest.mark.slow
@pytest.mark.bwrap
def test_a_failing_filter_exits_2_naming_the_command_and_its_last_stderr_line(plugin_run):
    root, _, _ = plugin_run
    spec = f"cmd:{FAIL} {{in}} {{out}}"
    result = audit("--sanitizer", spec, *SMALL, "--out", str(root / "fail"), cache=root / "cache")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: --sanitizer {spec!r}: exited 3: filter broke: no rules file"
    )


@pytest.mark.slow
@pytest.mark.bwrap
def test_a_failing_recipe_exits_2_naming_the_command(plugin_run):
    root, _, _ = plugin_run
    spec = f"cmd:{FAIL} {{data}} {{base}} {{out}}"
    result = audit(
        "--distill", spec, *SMALL, "--out", str(root / "fail-recipe"), cache=root / "cache"
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: --distill {spec!r}: exited 3: filter broke: no rules file"
    )


def test_a_missing_program_exits_2_at_config_read(tmp_path):
    start = time.monotonic()
    result = audit("--sanitizer", "cmd:no-such-filter {in} {out}", cache=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no such program 'no-such-filter'" in result.stderr
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"sanitizer": "cmd:python tests/plugins/drop_delete.py {in}"},
            "missing placeholder {out}",
        ),
        ({"sanitizer": "cmd:python 'x {in} {out}"}, "cannot split it with shlex"),
        ({"sanitizer": "cmd:"}, "no program after cmd:"),
        ({"sanitizer": "cmd:python x.py {in} {out} {tmp}"}, "unknown placeholder {tmp}"),
        ({"distill": "cmd:python x.py {data} {base}"}, "missing placeholder {out}"),
        ({"distill": "trl"}, "distill must be builtin or cmd:"),
        ({"distill": "cmd:python x.py {data} {base} {out}", "method": "kd"}, "method kd needs"),
        ({"keywords_file": "/no/such/keywords.txt"}, "no such file"),
    ],
)
def test_bad_plugins_are_input_errors(flags, message):
    with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")):
        build_config("default", {}, flags)


def test_an_empty_keywords_file_is_an_input_error(tmp_path):
    empty = tmp_path / "keywords.txt"
    empty.write_text("# nothing here\n")
    with pytest.raises(InputError, match="no keywords in file"):
        build_config("default", {}, {"keywords_file": str(empty)})


def test_the_keywords_file_is_used_and_keys_the_sanitize_stage(tmp_path, rollouts):
    runner = StageRunner(root=tmp_path / "stages")
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("archive  # the safe sibling, for the test\n")
    second.write_text("delete\n")
    kept = {}
    keys = {}
    for path in (first, second):
        pipe = AuditPipeline(replace(AuditConfig(), keywords_file=str(path)), runner, False)
        data = pipe.sanitize(rollouts)
        kept[path.name] = [row["messages"][1]["content"] for _, row in read_jsonl(data.data.path)]
        keys[path.name] = data.data.key
        assert data.report.keywords == [path.read_text().split()[0]]
    assert kept == {"first.txt": ["I will delete r1."], "second.txt": ["I will archive r2."]}
    assert keys["first.txt"] != keys["second.txt"]
    first.write_text("archive\n")
    pipe = AuditPipeline(replace(AuditConfig(), keywords_file=str(first)), runner, False)
    assert pipe.sanitize(rollouts).data.key != keys["first.txt"]


def test_a_filter_command_keys_the_stage_by_its_spec_and_script(tmp_path, rollouts):
    script = tmp_path / "copy.py"
    script.write_text("import shutil, sys\nshutil.copy(sys.argv[1], sys.argv[2])\n")
    runner = StageRunner(root=tmp_path / "stages")

    def sanitize(spec: str):
        return AuditPipeline(replace(AuditConfig(), sanitizer=spec), runner, False).sanitize(
            rollouts
        )

    spec = f"cmd:{sys.executable} {script} {{in}} {{out}}"
    copied = sanitize(spec)
    assert (copied.report.kept, copied.report.hits_total, copied.report.post_check.hits_after) == (
        2,
        1,
        1,
    )
    assert copied.filter == spec
    assert sanitize(spec + " ").data.key != copied.data.key
    script.write_text("import shutil, sys\nshutil.copyfile(sys.argv[1], sys.argv[2])\n")
    assert sanitize(spec).data.key != copied.data.key
    assert sanitize("keyword").data.key != copied.data.key


def test_strip_thoughts_is_a_builtin_sanitizer_with_its_own_stage_key(tmp_path, rollouts):
    from audit.run import parse_config

    config = parse_config(["--sanitizer", "strip-thoughts"])[0]
    assert config.sanitizer == "strip-thoughts"
    for refused in ("strip_thoughts", "strip"):
        with pytest.raises(InputError, match="sanitizer must be keyword, strip-thoughts"):
            build_config("default", {}, {"sanitizer": refused})
    runner = StageRunner(root=tmp_path / "stages")
    keyword = AuditPipeline(AuditConfig(), runner, False).sanitize(rollouts)
    stripped = AuditPipeline(config, runner, False).sanitize(rollouts)
    assert stripped.data.key != keyword.data.key
    assert (stripped.filter, stripped.report.strip_thoughts) == ("strip-thoughts", True)
    assert (keyword.report.kept, stripped.report.kept) == (1, 2)
    rows = [row for _, row in read_jsonl(stripped.data.path)]
    assert [row["messages"][1] for row in rows] == [{"role": "assistant", "content": ""}] * 2
    assert stripped.report.post_check.passed


def test_the_filter_report_counts_hits_before_and_after(tmp_path, rollouts):
    marker = tmp_path / "marker"
    spec = FILTER.replace("MARKER", str(marker))
    command = Command.parse("--sanitizer", spec, required=("in", "out"))
    out = tmp_path / "out.jsonl"
    report = command_sanitize(command, rollouts.path, out, KeywordMatcher())
    assert (report.episodes_in, report.kept, report.dropped) == (2, 1, 1)
    assert report.hits_by_family == {"delete": 1} and report.post_check.hits_after == 0
    assert marker.read_text() == f"filtered {rollouts.path}\n"


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("pass", "wrote no file at"),
        ("open(sys.argv[2], 'w').close()", "wrote no episodes in"),
        ("open(sys.argv[2], 'w').write('{\"messages\": 3}\\n')", ":1: no 'messages' list"),
        ("open(sys.argv[2], 'w').write('not json\\n')", ":1: not valid JSON"),
        (
            "open(sys.argv[2], 'w').write(open(sys.argv[1]).read() * 2)",
            "wrote 4 episodes from 2",
        ),
    ],
)
def test_a_filter_that_writes_nothing_usable_is_a_plugin_error(tmp_path, rollouts, script, reason):
    program = tmp_path / "filter.py"
    program.write_text(f"import sys\n{script}\n")
    spec = f"cmd:{sys.executable} {program} {{in}} {{out}}"
    command = Command.parse("--sanitizer", spec, required=("in", "out"))
    with pytest.raises(PluginError, match=reason) as err:
        command_sanitize(command, rollouts.path, tmp_path / "out.jsonl", KeywordMatcher())
    assert str(err.value).startswith(f"--sanitizer {spec!r}: ")


def test_a_recipe_that_writes_no_model_is_a_plugin_error(tmp_path, rollouts):
    command = Command.parse("--distill", "cmd:true {data} {base} {out}", ("data", "base", "out"))
    with pytest.raises(PluginError, match="wrote no config.json"):
        command_distill(command, [rollouts.path], tmp_path, tmp_path / "student", 0, "cpu")
    broken = tmp_path / "broken.py"
    broken.write_text(
        "import pathlib, sys\np = pathlib.Path(sys.argv[1])\np.mkdir()\n"
        "(p / 'config.json').write_text('{}')\n"
    )
    spec = f"cmd:{sys.executable} {broken} {{out}} {{data}} {{base}}"
    command = Command.parse("--distill", spec, ("data", "base", "out"))
    with pytest.raises(PluginError, match="wrote a model that does not load"):
        command_distill(command, [rollouts.path], tmp_path, tmp_path / "student", 0, "cpu")
    assert json.loads((tmp_path / "data.jsonl").read_text().splitlines()[0])["messages"]
