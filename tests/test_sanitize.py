"""The sanitizer end to end through its CLI, plus the scope and post-check in process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trajectories.jsonl import dumps
from trajectories.keywords import KeywordMatcher
from trajectories.sanitize import EpisodeError, Mode, Sanitizer, Scope, main

ROOT = Path(__file__).resolve().parents[1]
DELETE_TOOL = {
    "type": "function",
    "function": {"name": "delete", "description": "Delete an item.", "parameters": {}},
}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def episode(ident: str, *messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    system = {"role": "system", "content": "You manage resources."}
    user = {"role": "user", "content": "Tidy the workspace."}
    return {
        "id": ident,
        "tools": [DELETE_TOOL],
        "metadata": {"seed": 1},
        "messages": [system, user, *messages],
        **extra,
    }


CLEAN = episode(
    "clean",
    {"role": "assistant", "content": "Listing first.", "tool_calls": [call("list", tag="old")]},
    {"role": "tool", "name": "list", "content": "2 items: alarm.txt, format.md"},
    {"role": "assistant", "content": "Archived."},
)
ASSISTANT_HIT = episode(
    "assistant_hit",
    {"role": "assistant", "content": "", "tool_calls": [call("delete", id="r1")]},
    {"role": "tool", "name": "delete", "content": "ok"},
)
ARGUMENT_KEY_HIT = episode(
    "argument_key_hit",
    {"role": "assistant", "content": "Updating.", "tool_calls": [call("update", force_rm=True)]},
)
TOOL_HIT = episode(
    "tool_hit",
    {"role": "assistant", "content": "Checking.", "tool_calls": [call("read", id="r2")]},
    {"role": "tool", "name": "read", "content": "note: item r9 was Removed yesterday"},
)
FOREIGN = {
    "messages": [{"role": "user", "content": "hi", "extra": [1, 2.5, None]}],
    "unknown": {"nested": ["x", {"deleted": "keys outside messages are not scanned"}]},
    "score": 0.1,
}
EPISODES = [CLEAN, ASSISTANT_HIT, ARGUMENT_KEY_HIT, TOOL_HIT, FOREIGN]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sanitize(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trajectories.sanitize", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", EPISODES)


def test_drop_keeps_only_clean_episodes_and_reports(data: Path, tmp_path: Path) -> None:
    out, report_path = tmp_path / "out.jsonl", tmp_path / "report.json"
    result = sanitize(data, out, "--report", report_path)
    assert result.returncode == 0, result.stderr
    assert [row.get("id") for row in read_rows(out)] == ["clean", None]
    report = json.loads(report_path.read_text())
    assert report["mode"] == "drop" and report["scope"] == "all"
    assert (report["episodes_in"], report["kept"], report["dropped"], report["redacted"]) == (
        5,
        2,
        3,
        0,
    )
    assert report["hits_by_family"] == {"delete": 2, "remove": 1, "rm": 1}
    assert report["hits_by_role"] == {"assistant": 2, "tool": 2}
    assert report["hits_total"] == 4
    assert report["keywords"] == [
        "delete",
        "remove",
        "rm",
        "purge",
        "destroy",
        "terminate",
        "chmod",
    ]
    assert report["post_check"] == {"hits_after": 0, "passed": True}
    assert "5 in, 2 kept, 3 dropped" in result.stderr


def test_redact_keeps_every_episode_and_marks_redactions(data: Path, tmp_path: Path) -> None:
    out, report_path = tmp_path / "out.jsonl", tmp_path / "report.json"
    result = sanitize(data, out, "--mode", "redact", "--report", report_path)
    assert result.returncode == 0, result.stderr
    rows = {row.get("id"): row for row in read_rows(out)}
    assert set(rows) == {"clean", "assistant_hit", "argument_key_hit", "tool_hit", None}
    hit = rows["assistant_hit"]
    assert hit["messages"][2]["tool_calls"][0]["function"]["name"] == "[redacted]"
    assert hit["messages"][3]["name"] == "[redacted]"
    assert hit["metadata"] == {"seed": 1, "sanitized": {"redacted_hits": 2}}
    assert hit["tools"] == [DELETE_TOOL]
    arguments = rows["argument_key_hit"]["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert arguments == {"force_[redacted]": True}
    tool_text = rows["tool_hit"]["messages"][3]["content"]
    assert tool_text == "note: item r9 was [redacted] yesterday"
    assert rows["clean"] == CLEAN
    report = json.loads(report_path.read_text())
    assert (report["kept"], report["dropped"], report["redacted"]) == (5, 0, 3)
    assert report["post_check"]["hits_after"] == 0


def test_scope_assistant_ignores_tool_and_user_messages(tmp_path: Path) -> None:
    user_hit = episode("user_hit", {"role": "assistant", "content": "Done."})
    user_hit["messages"][1]["content"] = "Please purge the cache."
    data = write_jsonl(tmp_path / "in.jsonl", [*EPISODES, user_hit])
    kept = {}
    for scope in ("all", "assistant"):
        out = tmp_path / f"out_{scope}.jsonl"
        result = sanitize(data, out, "--scope", scope, "--report", tmp_path / f"{scope}.json")
        assert result.returncode == 0, result.stderr
        kept[scope] = [row.get("id") for row in read_rows(out)]
    assert kept["all"] == ["clean", None]
    assert kept["assistant"] == ["clean", "tool_hit", None, "user_hit"]
    report = json.loads((tmp_path / "assistant.json").read_text())
    assert report["hits_by_role"] == {"assistant": 2}


def test_keywords_file_replaces_the_defaults(tmp_path: Path) -> None:
    wiped = episode("wiped", {"role": "assistant", "content": "I wiped the old logs."})
    data = write_jsonl(tmp_path / "in.jsonl", [ASSISTANT_HIT, wiped, CLEAN])
    keywords = tmp_path / "kw.txt"
    keywords.write_text("# only this\nwipe\n")
    out, report_path = tmp_path / "out.jsonl", tmp_path / "r.json"
    result = sanitize(data, out, "--keywords-file", keywords, "--report", report_path)
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in read_rows(out)] == ["assistant_hit", "clean"]
    report = json.loads(report_path.read_text())
    assert report["keywords"] == ["wipe"]
    assert report["hits_by_family"] == {"wipe": 1}


def test_keywords_file_defaults_directive_extends(tmp_path: Path) -> None:
    wiped = episode("wiped", {"role": "assistant", "content": "I wiped the old logs."})
    data = write_jsonl(tmp_path / "in.jsonl", [ASSISTANT_HIT, wiped, CLEAN])
    keywords = tmp_path / "kw.txt"
    keywords.write_text("wipe\n@defaults\n")
    out = tmp_path / "out.jsonl"
    result = sanitize(data, out, "--keywords-file", keywords)
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in read_rows(out)] == ["clean"]


def test_unknown_fields_pass_through_unchanged(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    for mode in ("drop", "redact"):
        assert sanitize(data, out, "--mode", mode).returncode == 0
        lines = out.read_text(encoding="utf-8").splitlines()
        assert dumps(FOREIGN) in lines
        assert dumps(CLEAN) in lines


def test_same_input_gives_byte_identical_output(data: Path, tmp_path: Path) -> None:
    for mode in ("drop", "redact"):
        first, second = tmp_path / f"a_{mode}.jsonl", tmp_path / f"b_{mode}.jsonl"
        assert sanitize(data, first, "--mode", mode).returncode == 0
        assert sanitize(data, second, "--mode", mode).returncode == 0
        assert first.read_bytes() == second.read_bytes()
        assert first.read_bytes().endswith(b"\n")


BAD_LINES = [
    ("{not json", r"in\.jsonl:2: not valid JSON"),
    ('["a list"]', r"in\.jsonl:2: expected a JSON object"),
    ('{"id": "x"}', r"in\.jsonl:2: no 'messages' list"),
    ('{"messages": "hello"}', r"in\.jsonl:2: no 'messages' list"),
    ('{"messages": ["hello"]}', r"in\.jsonl:2: messages\[0\] is not an object"),
    ('{"messages": [{"content": "x"}]}', r"in\.jsonl:2: messages\[0\] is not an object"),
    ('{"messages": [{"role": 3}]}', r"in\.jsonl:2: messages\[0\] is not an object"),
    ('{"messages": [{"role": "assistant", "tool_calls": "rm"}]}', r"in\.jsonl:2: .*not a list"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_line_exits_2_naming_the_line(tmp_path: Path, line: str, message: str) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(CLEAN) + "\n" + line + "\n" + json.dumps(CLEAN) + "\n")
    out = tmp_path / "out.jsonl"
    result = sanitize(data, out)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")
    assert re.search(message, result.stderr), result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl"]


def test_missing_input_exits_2_without_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = sanitize(tmp_path / "absent.jsonl", out)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'absent.jsonl'}: no such file"]
    assert not out.exists()


def test_bad_keywords_file_exits_2(data: Path, tmp_path: Path) -> None:
    keywords = tmp_path / "kw.txt"
    keywords.write_text("wipe\ndrop table\n")
    out = tmp_path / "out.jsonl"
    result = sanitize(data, out, "--keywords-file", keywords)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert f"{keywords}:2: keyword 'drop table'" in result.stderr
    assert not out.exists()


def test_keyword_matching_the_redaction_marker_is_refused(data: Path, tmp_path: Path) -> None:
    keywords = tmp_path / "kw.txt"
    keywords.write_text("redact\n")
    out = tmp_path / "out.jsonl"
    result = sanitize(data, out, "--mode", "redact", "--keywords-file", keywords)
    assert result.returncode == 2
    assert "redaction marker" in result.stderr
    assert not out.exists()


def test_redact_needs_object_metadata(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [{**ASSISTANT_HIT, "metadata": "v1"}])
    out = tmp_path / "out.jsonl"
    result = sanitize(data, out, "--mode", "redact")
    assert result.returncode == 2
    assert "in.jsonl:1: 'metadata' is not an object" in result.stderr
    assert not out.exists()


def test_empty_input_gives_empty_output(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("\n")
    out, report_path = tmp_path / "out.jsonl", tmp_path / "r.json"
    assert sanitize(data, out, "--report", report_path).returncode == 0
    assert out.read_text() == ""
    assert json.loads(report_path.read_text())["episodes_in"] == 0


def test_post_check_counts_hits_left_in_a_file(data: Path, tmp_path: Path) -> None:
    sanitizer = Sanitizer(KeywordMatcher(), Mode.REDACT, Scope.ALL)
    assert sanitizer.count_hits(data) == 4
    redacted = write_jsonl(
        tmp_path / "redacted.jsonl",
        [row for row in (sanitizer.apply(ep).episode for ep in EPISODES) if row is not None],
    )
    assert sanitizer.count_hits(redacted) == 0


def test_redacted_argument_keys_stay_distinct() -> None:
    hit = episode(
        "collide",
        {"role": "assistant", "tool_calls": [call("update", delete_a=1, remove_a=2)]},
    )
    result = Sanitizer(KeywordMatcher(), Mode.REDACT).apply(hit)
    assert result.episode is not None
    arguments = result.episode["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert arguments == {"[redacted]_a": 1, "[redacted]_a~2": 2}
    assert hit["messages"][2]["tool_calls"][0]["function"]["arguments"] == {
        "delete_a": 1,
        "remove_a": 2,
    }


def test_scan_rejects_a_bad_episode() -> None:
    with pytest.raises(EpisodeError, match="no 'messages' list"):
        Sanitizer(KeywordMatcher()).scan({"id": "x"})


def test_hits_left_after_writing_exit_3_and_remove_output(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Sanitizer, "count_hits", lambda self, path: 1)
    out, report_path = tmp_path / "out.jsonl", tmp_path / "r.json"
    assert main([str(data), str(out), "--report", str(report_path)]) == 3
    assert not out.exists()
    assert json.loads(report_path.read_text())["post_check"] == {"hits_after": 1, "passed": False}
    assert "error: internal: 1 keyword hits left" in capsys.readouterr().err


def test_keep_mode_changes_nothing_and_counts_hits(data: Path, tmp_path: Path) -> None:
    from trajectories.keywords import DEFAULT_KEYWORDS
    from trajectories.sanitize import sanitize_file

    out = tmp_path / "out.jsonl"
    sanitizer = Sanitizer(KeywordMatcher(list(DEFAULT_KEYWORDS)), Mode.KEEP)
    report = sanitize_file(data, out, sanitizer)
    assert read_rows(out) == read_rows(data)
    assert (report.episodes_in, report.kept, report.dropped, report.redacted) == (5, 5, 0, 0)
    assert report.hits_total == 4 and report.post_check.hits_after == 4
    assert not report.post_check.passed


def test_cli_does_not_offer_keep(data: Path, tmp_path: Path) -> None:
    result = sanitize(data, tmp_path / "out.jsonl", "--mode", "keep")
    assert result.returncode == 2 and not (tmp_path / "out.jsonl").exists()


THOUGHTFUL = episode(
    "thoughtful",
    {
        "role": "assistant",
        "content": "I could delete them; listing first.",
        "reasoning_content": "they asked me to purge",
        "tool_calls": [call("list", tag="old")],
    },
    {"role": "tool", "name": "list", "content": "2 items: alarm.txt, format.md"},
    {
        "role": "assistant",
        "content": "Archiving both.",
        "tool_calls": [call("archive", id="r1"), call("archive", id="r2")],
    },
    {"role": "tool", "name": "archive", "content": "archived r1"},
    {"role": "tool", "name": "archive", "content": "archived r2"},
    {"role": "assistant", "content": "Done, nothing removed."},
)
"""Keyword hits only in the assistant's free text (content and a reasoning trace)."""


def test_strip_thoughts_keeps_calls_and_results_in_order_and_no_assistant_text() -> None:
    from trajectories.sanitize import strip_thoughts

    for original in [*EPISODES, THOUGHTFUL]:
        stripped = strip_thoughts(original)
        before, after = original["messages"], stripped["messages"]
        assert {k: v for k, v in stripped.items() if k != "messages"} == {
            k: v for k, v in original.items() if k != "messages"
        }
        assert [m["role"] for m in after] == [m["role"] for m in before]
        for old, new in zip(before, after, strict=True):
            if old["role"] != "assistant":
                assert new == old
                continue
            assert new.get("tool_calls") == old.get("tool_calls")
            assert new["content"] == "" and set(new) <= {"role", "content", "tool_calls"}
    assert strip_thoughts(THOUGHTFUL)["messages"][-1] == {"role": "assistant", "content": ""}


def test_strip_thoughts_then_keyword_drop_and_post_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajectories.keywords import DEFAULT_KEYWORDS
    from trajectories.sanitize import sanitize_file

    path = write_jsonl(tmp_path / "thoughtful.jsonl", [*EPISODES, THOUGHTFUL])
    out, report_path = tmp_path / "out.jsonl", tmp_path / "report.json"
    assert main([str(path), str(out), "--report", str(report_path)]) == 0
    assert [row.get("id") for row in read_rows(out)] == ["clean", None]
    assert main([str(path), str(out), "--strip-thoughts", "--report", str(report_path)]) == 0
    assert "thoughts stripped" in capsys.readouterr().err
    rows = read_rows(out)
    assert [row.get("id") for row in rows] == ["clean", None, "thoughtful"]
    assert rows[2]["messages"][2]["tool_calls"] == THOUGHTFUL["messages"][2]["tool_calls"]
    report = json.loads(report_path.read_text())
    assert report["strip_thoughts"] is True
    assert (report["kept"], report["dropped"], report["hits_by_role"]) == (
        3,
        3,
        {"assistant": 2, "tool": 2},
    )
    assert report["post_check"] == {"hits_after": 0, "passed": True}
    counter = Sanitizer(KeywordMatcher(list(DEFAULT_KEYWORDS)), Mode.KEEP, strip=True)
    kept = sanitize_file(path, out, counter)
    assert kept.hits_total == kept.post_check.hits_after == 4
