"""Trajectory files in OpenAI fine-tuning, ShareGPT (LLaMA-Factory) and Inspect formats read as
the project's episodes (trajectories.formats), and `--data` split by env."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from audit.pipeline.artifacts import AuditPipeline
from audit.pipeline.stages import StageRunner
from audit.profiles import build_config
from envs.api.tools import TOOL_SCHEMAS
from envs.bash.env import BASH_TOOL
from tests.test_inspect_log import require_inspect
from trajectories.dataset import to_dataset
from trajectories.formats import Format, detect, read_episodes
from trajectories.jsonl import InputError
from trajectories.keywords import DEFAULT_KEYWORDS, KeywordMatcher
from trajectories.sanitize import Sanitizer, sanitize_file

ROOT = Path(__file__).resolve().parent.parent
API_TOOLS = [t for t in TOOL_SCHEMAS if t["function"]["name"] in ("list", "read")]

API_CHAT: list[dict[str, Any]] = [
    {"role": "user", "content": "Summarise the notes."},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "list", "arguments": {}}},
            {"type": "function", "function": {"name": "read", "arguments": {"id": "r2"}}},
        ],
    },
    {"role": "tool", "name": "list", "content": "r2 notes.md [work]"},
    {"role": "tool", "name": "read", "content": "ship on friday"},
    {"role": "assistant", "content": "The notes say: ship on friday."},
]
BASH_CHAT: list[dict[str, Any]] = [
    {"role": "user", "content": "How many files are there?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "bash", "arguments": {"command": "ls"}}}
        ],
    },
    {"role": "tool", "name": "bash", "content": "a.txt\nb.txt"},
    {"role": "assistant", "content": "Two."},
]


def episode(env: str, chat: list[dict[str, Any]], tools: list[dict[str, Any]], n: int) -> dict:
    calls = [c["function"] for m in chat for c in m.get("tool_calls", [])]
    return {
        "id": f"{env}-{n}",
        "env": env,
        "task_id": f"{env}/safe/x/{n}",
        "suite": "safe",
        "split": "train",
        "policy": "neutral",
        "seed": 0,
        "messages": chat,
        "tools": tools,
        "actions": [{"tool": c["name"], "arguments": c["arguments"]} for c in calls],
        "outcome": {"success": True},
        "metadata": {"steps": 2, "max_steps": 8, "stop_reason": "final_answer"},
    }


def openai_row(chat: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The conversation as an OpenAI fine-tuning row, written by hand from its parts."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are an agent."}]
    ids: list[str] = []
    for index, message in enumerate(chat):
        if message["role"] == "tool":
            messages.append(
                {"role": "tool", "tool_call_id": ids.pop(0), "content": message["content"]}
            )
            continue
        entry: dict[str, Any] = {"role": message["role"], "content": message["content"]}
        if message.get("tool_calls"):
            entry["content"] = None
            entry["tool_calls"] = []
            for n, call in enumerate(message["tool_calls"]):
                ids.append(f"call_{index}_{n}")
                function = call["function"]
                entry["tool_calls"].append(
                    {
                        "id": ids[-1],
                        "type": "function",
                        "function": {
                            "name": function["name"],
                            "arguments": json.dumps(function["arguments"]),
                        },
                    }
                )
        messages.append(entry)
    return {"messages": messages, "tools": tools}


def sharegpt_row(chat: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The conversation as a LLaMA-Factory ShareGPT row, written by hand from its parts."""
    turns = []
    for message in chat:
        if message["role"] == "user":
            turns.append({"from": "human", "value": message["content"]})
        elif message["role"] == "tool":
            turns.append({"from": "observation", "value": message["content"]})
        elif message.get("tool_calls"):
            calls = [c["function"] for c in message["tool_calls"]]
            value = calls[0] if len(calls) == 1 else calls
            turns.append({"from": "function_call", "value": json.dumps(value)})
        else:
            turns.append({"from": "gpt", "value": message["content"]})
    schemas = json.dumps([t["function"] for t in tools])
    return {"conversations": turns, "tools": schemas, "system": "You are an agent."}


WRITERS = {Format.OPENAI: openai_row, Format.SHAREGPT: sharegpt_row}


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def both_envs(fmt: Format) -> list[dict[str, Any]]:
    """Three API and two Bash conversations in `fmt`."""
    api = WRITERS[fmt](API_CHAT, API_TOOLS)
    bash = WRITERS[fmt](BASH_CHAT, [BASH_TOOL])
    return [api, bash, api, bash, api]


@pytest.mark.parametrize("fmt", [Format.OPENAI, Format.SHAREGPT])
def test_format_reads_as_the_same_conversation(tmp_path: Path, fmt: Format) -> None:
    ours = write(
        tmp_path / "ours.jsonl",
        [episode("api", API_CHAT, API_TOOLS, 0), episode("bash", BASH_CHAT, [BASH_TOOL], 1)],
    )
    theirs = write(
        tmp_path / "theirs.jsonl",
        [WRITERS[fmt](API_CHAT, API_TOOLS), WRITERS[fmt](BASH_CHAT, [BASH_TOOL])],
    )
    assert detect(ours) is Format.EPISODE and detect(theirs) is fmt
    expected, converted = read_episodes(ours), read_episodes(theirs)
    assert [e.env for e in converted] == ["api", "bash"]
    for mine, other in zip(expected, converted, strict=True):
        assert other.chat_messages() == mine.chat_messages()
        assert other.tools == mine.tools
        assert other.actions == mine.actions
    assert converted[0].metadata.steps == 2 and converted[0].policy == fmt.value
    assert to_dataset([theirs])[:] == to_dataset([ours])[:]


BAD = {
    Format.OPENAI: [
        (
            lambda row: row["messages"][2]["tool_calls"][0]["function"].update(arguments={}),
            r"messages\.2\.tool_calls\.0\.function\.arguments",
        ),
        (lambda row: row["messages"][3].update(tool_call_id="nope"), "answers no earlier call"),
        (
            lambda row: row["messages"][2]["tool_calls"][0]["function"].update(arguments="{x"),
            "bad JSON string",
        ),
        (lambda row: row.update(tools=[BASH_TOOL, *API_TOOLS]), "fit no env"),
    ],
    Format.SHAREGPT: [
        (lambda row: row["conversations"][0].update({"from": "user"}), r"conversations\.0\.from"),
        (lambda row: row["conversations"][1].update(value='{"id": 1}'), "function_call is not"),
        (lambda row: row.update(tools="{"), "bad JSON string"),
        (
            lambda row: row["conversations"].insert(1, row["conversations"][2]),
            "observation without",
        ),
    ],
}
LABEL = {Format.OPENAI: "OpenAI fine-tuning", Format.SHAREGPT: r"ShareGPT \(LLaMA-Factory\)"}


@pytest.mark.parametrize(
    ("fmt", "case"), [(fmt, n) for fmt, cases in BAD.items() for n in range(len(cases))]
)
def test_bad_line_names_the_line_and_format(tmp_path: Path, fmt: Format, case: int) -> None:
    spoil, reason = BAD[fmt][case]
    bad = WRITERS[fmt](API_CHAT, API_TOOLS)
    spoil(bad)
    path = write(tmp_path / "in.jsonl", [WRITERS[fmt](API_CHAT, API_TOOLS), bad])
    with pytest.raises(InputError, match=rf"in\.jsonl:2: expected {LABEL[fmt]} format .*{reason}"):
        read_episodes(path)


@pytest.mark.parametrize(
    ("first", "second", "found", "expected"),
    [
        (Format.EPISODE, Format.SHAREGPT, "ShareGPT", "episode"),
        (Format.EPISODE, Format.OPENAI, "OpenAI fine-tuning", "episode"),
        (Format.OPENAI, Format.EPISODE, "", "OpenAI fine-tuning"),
        (Format.SHAREGPT, Format.OPENAI, "OpenAI fine-tuning", "ShareGPT"),
        (Format.OPENAI, Format.SHAREGPT, "ShareGPT", "OpenAI fine-tuning"),
    ],
)
def test_mixed_formats_are_refused(
    tmp_path: Path, first: Format, second: Format, found: str, expected: str
) -> None:
    def row(fmt: Format) -> dict[str, Any]:
        if fmt is Format.EPISODE:
            return episode("api", API_CHAT, API_TOOLS, 0)
        return WRITERS[fmt](API_CHAT, API_TOOLS)

    path = tmp_path / "mixed.jsonl"
    path.write_text(f"\n{json.dumps(row(first))}\n{json.dumps(row(second))}\n")
    with pytest.raises(InputError, match=rf"mixed\.jsonl:3: {found}.*expected {expected}"):
        read_episodes(path)


def test_sanitize_writes_converted_episodes(tmp_path: Path) -> None:
    data = write(tmp_path / "in.jsonl", both_envs(Format.SHAREGPT))
    out = tmp_path / "out.jsonl"
    report = sanitize_file(data, out, Sanitizer(KeywordMatcher(list(DEFAULT_KEYWORDS))))
    assert report.episodes_in == 5 and report.kept == 5
    assert [e.env for e in read_episodes(out)] == ["api", "bash", "api", "bash", "api"]
    assert detect(out) is Format.EPISODE


def test_inspect_log_is_detected_and_read(tmp_path: Path) -> None:
    from trajectories.inspect_log import write_inspect_log

    require_inspect()

    episodes = read_episodes(write(tmp_path / "in.jsonl", both_envs(Format.OPENAI)))
    log = write_inspect_log(episodes, tmp_path / "logs")
    assert detect(log) is Format.INSPECT
    assert read_episodes(log) == episodes


@pytest.mark.parametrize("fmt", [Format.OPENAI, Format.SHAREGPT])
def test_data_is_split_by_env_each_episode_once(tmp_path: Path, fmt: Format) -> None:
    data = write(tmp_path / "mine.jsonl", both_envs(fmt))
    config = build_config("quick", {}, {"data": str(data), "env": "all"})
    pipe = AuditPipeline(config, StageRunner(root=tmp_path / "cache"), progress=False)
    split = {env: pipe.user_data(str(data), env) for env in config.envs}
    counts = {env: len(read_episodes(d.data.path)) for env, d in split.items()}
    assert counts == {"api": 3, "bash": 2}
    assert {env: d.report.episodes_in for env, d in split.items()} == counts
    assert all(e.env == env for env, d in split.items() for e in read_episodes(d.data.path))


def test_an_env_without_episodes_is_an_input_error(tmp_path: Path) -> None:
    rows = [openai_row(API_CHAT, API_TOOLS)] * 2
    data = write(tmp_path / "api-only.jsonl", rows)
    assert build_config("quick", {}, {"data": str(data), "env": "api"}).data == str(data)
    for env in ("bash", "all"):
        with pytest.raises(
            InputError, match=r"api-only\.jsonl has no bash episodes; use --env api"
        ):
            build_config("quick", {}, {"data": str(data), "env": env})


def test_cli_refuses_an_env_missing_from_the_data_within_seconds(tmp_path: Path) -> None:
    data = write(tmp_path / "api-only.jsonl", [sharegpt_row(API_CHAT, API_TOOLS)])
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "audit.run", "--data", str(data), "--env", "bash"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {data} has no bash episodes; use --env api"
    assert time.monotonic() - start < 30
