"""Keyword matching: inflections, identifiers, commands, look-alikes, keyword files."""

from __future__ import annotations

import pytest

from trajectories.jsonl import InputError
from trajectories.keywords import (
    DEFAULT_KEYWORDS,
    KeywordHit,
    KeywordMatcher,
    inflection_pattern,
    normalize_keyword,
    read_keywords_file,
    subtoken_spans,
)

DEFAULT = KeywordMatcher()


@pytest.mark.parametrize(
    ("text", "family", "matched"),
    [
        ("delete", "delete", "delete"),
        ("deleted", "delete", "deleted"),
        ("Deletion", "delete", "Deletion"),
        ("deleting", "delete", "deleting"),
        ("DELETE /items/3", "delete", "DELETE"),
        ("delete_resource", "delete", "delete"),
        ("resourceDelete", "delete", "Delete"),
        ("HTTPDelete", "delete", "Delete"),
        ("removal", "remove", "removal"),
        ("removed", "remove", "removed"),
        ("removable", "remove", "removable"),
        ("apt-get autoremove", "remove", "autoremove"),
        ("purging", "purge", "purging"),
        ("purged", "purge", "purged"),
        ("destroyed", "destroy", "destroyed"),
        ("destruction", "destroy", "destruction"),
        ("terminated", "terminate", "terminated"),
        ("termination", "terminate", "termination"),
        ("rm -rf /tmp/x", "rm", "rm"),
        ("/bin/rm old.log", "rm", "rm"),
        ("rm", "rm", "rm"),
        ("rmdir build", "rm", "rmdir"),
        ("shutil.rmtree(path)", "rm", "rmtree"),
        ("chmod 777 report.txt", "chmod", "chmod"),
        ("chmod", "chmod", "chmod"),
        ("os.fchmod(fd, 0o777)", "chmod", "fchmod"),
        ("CHMOD", "chmod", "CHMOD"),
    ],
)
def test_default_keywords_hit(text: str, family: str, matched: str) -> None:
    hits = DEFAULT.find(text)
    assert [(hit.family, hit.text) for hit in hits] == [(family, matched)]
    assert text[hits[0].start : hits[0].end] == matched


@pytest.mark.parametrize(
    "text",
    [
        "perform",
        "format",
        "alarm",
        "firmware",
        "terminal",
        "inform",
        "determine",
        "indeterminate",
        "remote",
        "transform",
        "arm",
        "norm",
        "term",
        "storm_warning",
        "confirmDeploy",
        "purgatory",
        "destrier",
        "RMI",
    ],
)
def test_look_alikes_do_not_hit(text: str) -> None:
    assert DEFAULT.find(text) == []


def test_spans_cover_every_hit_in_a_mixed_line() -> None:
    text = "Format then rm -rf cache; call resourceDelete, inform the terminal"
    hits = DEFAULT.find(text)
    assert hits == [
        KeywordHit("rm", "rm", 12, 14),
        KeywordHit("delete", "Delete", 39, 45),
    ]


def test_redact_replaces_only_the_matched_spans() -> None:
    text, hits = DEFAULT.redact("delete_resource then rm -rf /x; chmod", "[redacted]")
    assert text == "[redacted]_resource then [redacted] -rf /x; [redacted]"
    assert [hit.family for hit in hits] == ["delete", "rm", "chmod"]


def test_redact_without_hits_returns_the_same_text() -> None:
    assert DEFAULT.redact("list the items", "[x]") == ("list the items", [])


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("resourceDelete", ["resource", "Delete"]),
        ("HTTPDelete", ["HTTP", "Delete"]),
        ("delete_resource", ["delete", "resource"]),
        ("rm2file", ["rm", "2", "file"]),
        ("DELETE", ["DELETE"]),
        ("/bin/rm -rf", ["bin", "rm", "rf"]),
        ("Deletion", ["Deletion"]),
    ],
)
def test_subtoken_spans(text: str, pieces: list[str]) -> None:
    assert [text[start:end] for start, end in subtoken_spans(text)] == pieces


@pytest.mark.parametrize(
    ("keyword", "hits", "misses"),
    [
        ("wipe", ["wipe", "wipes", "wiped", "wiping", "WipeAll", "wiper"], ["swipe", "wip3"]),
        ("drop", ["drop", "drops", "dropped", "dropping", "drop_table"], ["droplet", "raindrop"]),
        ("empty", ["empty", "emptied", "empties"], ["emptyish"]),
        ("kill", ["killed", "killing", "kills"], ["skill", "killl"]),
    ],
)
def test_user_keywords_get_generic_inflections(
    keyword: str, hits: list[str], misses: list[str]
) -> None:
    matcher = KeywordMatcher([keyword])
    for text in hits:
        assert [hit.family for hit in matcher.find(text)] == [keyword], text
    for text in misses:
        assert matcher.find(text) == [], text


def test_inflection_pattern_drops_trailing_e() -> None:
    assert inflection_pattern("wipe").startswith("wip(?:e|")


def test_keywords_are_lowercased_and_deduplicated() -> None:
    matcher = KeywordMatcher(["Delete", "delete", "WIPE"])
    assert matcher.keywords == ("delete", "wipe")
    assert [hit.family for hit in matcher.find("deleted wiped")] == ["delete", "wipe"]


@pytest.mark.parametrize("keyword", ["drop table", "drop_table", "dropTable", "rm2", "", "löschen"])
def test_keyword_must_be_one_ascii_word(keyword: str) -> None:
    with pytest.raises(ValueError, match="must be one word"):
        normalize_keyword(keyword)


def test_matcher_needs_a_keyword() -> None:
    with pytest.raises(ValueError, match="no keywords"):
        KeywordMatcher([])


def test_keywords_file_replaces_defaults(tmp_path) -> None:
    path = tmp_path / "kw.txt"
    path.write_text("# my list\nwipe\n\nDrop  # inline comment\nwipe\n")
    assert read_keywords_file(path) == ["wipe", "drop"]


def test_keywords_file_defaults_directive_extends(tmp_path) -> None:
    path = tmp_path / "kw.txt"
    path.write_text("wipe\n@defaults\n")
    assert read_keywords_file(path) == ["wipe", *DEFAULT_KEYWORDS]


def test_keywords_file_bad_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "kw.txt"
    path.write_text("wipe\n# fine\ndrop table\n")
    with pytest.raises(InputError, match=r"kw\.txt:3: keyword 'drop table'"):
        read_keywords_file(path)


def test_keywords_file_missing_or_empty(tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_keywords_file(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="no keywords"):
        read_keywords_file(empty)
