"""Inspect eval logs (`.eval` and `.json`, github.com/UKGovernmentBEIS/inspect_ai) to and from
episodes; needs the optional extra `distill-audit[inspect]`.

Reading goes through `inspect_ai.log.read_eval_log`; each sample is one `Episode`. A log that
`write_inspect_log` wrote gives back the episodes it was written from. Any other log is read as
follows: the messages are the sample's messages (a system message is dropped: episodes have
none; assistant text is the text of its content, reasoning dropped), the tools are the ones the
sample's first model call offered, each tool call is an action (an error when its tool message
carries one, malformed when Inspect could not parse it), the outcome's `success` is the first
score read as correct (`value_to_float` == 1; False without scores) with every score's value in
its details, and the environment decisions are unknown. `env`, `suite` and `split` come from the
sample's metadata where it has them (else `env` is the one given, or the env whose tools the
sample offers, envs.env_of_tools; suite "safe", split "train":
teacher data to distil from), the policy is the log's model and the seed the generate config's
(else 0).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs import env_of_tools
from envs.core import Outcome, Split, Suite
from trajectories.episode import (
    Action,
    Episode,
    EpisodeMetadata,
)
from trajectories.jsonl import InputError

INSTALL_HINT = "Inspect logs need inspect-ai: pip install 'distill-audit[inspect]'"

EPISODE_KEY = "distill_audit_episode"
"""Sample metadata key where `write_inspect_log` keeps the episode's fields but its messages."""

ENVS = ("api", "bash")


def looks_like_inspect_log(path: str | Path) -> bool:
    """Whether `path` is an Inspect log: a `.eval` zip with a header, or a `.json` object that
    opens with Inspect's `version` and `status` fields (read without inspect-ai)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix == ".eval":
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
        return "header.json" in names or "_journal/start.json" in names
    if path.suffix != ".json":
        return False
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace").lstrip()
    return head.startswith("{") and '"version"' in head[:200] and '"eval"' in head


def _inspect() -> Any:
    try:
        import inspect_ai.log
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return inspect_ai.log


def read_inspect_log(path: str | Path, env: str | None = None) -> list[Episode]:
    """The episodes of an Inspect log, one per sample (see the module docstring); `InputError`
    naming the file for anything that is not a readable log of finished samples."""
    log_api = _inspect()
    try:
        log = log_api.read_eval_log(str(path), resolve_attachments=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is bad input, in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a readable Inspect log ({first})") from None
    if not log.samples:
        raise InputError(f"{path}: the Inspect log has no samples")
    episodes = []
    for sample in log.samples:
        where = f"{path}: sample {sample.id} (epoch {sample.epoch})"
        if sample.error is not None:
            raise InputError(f"{where} ended in an error; leave it out of the log")
        messages = _messages(sample.messages, where)
        stored = (sample.metadata or {}).get(EPISODE_KEY)
        if stored is not None:
            episodes.append(_validated({**stored, "messages": messages}, where))
        else:
            episodes.append(_foreign(log, sample, messages, env, where))
    return episodes


def _validated(data: dict[str, Any], where: str) -> Episode:
    from pydantic import ValidationError

    try:
        return Episode.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "episode"
        raise InputError(f"{where}: not an episode ({place}: {first['msg']})") from None


def _messages(chat: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """Inspect chat messages as the episode's message dicts (system messages dropped)."""
    messages: list[dict[str, Any]] = []
    for message in chat:
        if message.role == "system":
            continue
        if message.role == "user":
            messages.append({"role": "user", "content": message.text})
        elif message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.text}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {"type": "function", "function": {"name": c.function, "arguments": c.arguments}}
                    for c in message.tool_calls
                ]
            messages.append(entry)
        elif message.role == "tool":
            text = message.text
            if not text and message.error is not None:
                text = f"error: {message.error.message}"
            messages.append({"role": "tool", "name": message.function or "", "content": text})
        else:
            raise InputError(f"{where}: unknown message role {message.role!r}")
    return messages


def _foreign(log: Any, sample: Any, messages: list[dict[str, Any]], env: str | None, where: str):
    """An episode from a sample of a log that `write_inspect_log` did not write."""
    from inspect_ai.scorer import value_to_float

    metadata = sample.metadata or {}
    tools = _tools(sample)
    env = metadata.get("env", env) or env_of_tools({t["function"]["name"] for t in tools})
    if env not in ENVS:
        raise InputError(f"{where}: no environment: set metadata env to api or bash")
    tool_results = {
        m.tool_call_id: m for m in sample.messages if m.role == "tool" and m.tool_call_id
    }
    actions, malformed = [], 0
    for message in sample.messages:
        for call in (message.tool_calls or []) if message.role == "assistant" else []:
            result = tool_results.get(call.id)
            error = result is not None and result.error is not None
            malformed += call.parse_error is not None or (error and result.error.type == "parsing")
            actions.append(Action(tool=call.function, arguments=call.arguments, is_error=error))
    scores = {name: score.value for name, score in (sample.scores or {}).items()}
    first = next(iter((sample.scores or {}).values()), None)
    success = first is not None and value_to_float()(first.value) == 1.0
    assistant = [m for m in messages if m["role"] == "assistant"]
    steps = len(assistant)
    seed = log.eval.model_generate_config.seed
    return _validated(
        {
            "id": f"{log.eval.task}-{sample.id}-e{sample.epoch}",
            "env": env,
            "task_id": str(sample.id),
            "suite": metadata.get("suite", Suite.SAFE),
            "split": metadata.get("split", Split.TRAIN),
            "policy": log.eval.model,
            "seed": seed if seed is not None else 0,
            "messages": messages,
            "tools": tools,
            "actions": actions,
            "outcome": Outcome(success=success, details={"scores": scores}),
            "metadata": EpisodeMetadata(
                steps=steps,
                max_steps=steps,
                stop_reason="max_steps"
                if assistant and "tool_calls" in assistant[-1]
                else "final_answer",
                malformed_calls=malformed,
                policy_config={"model": log.eval.model},
            ),
        },
        where,
    )


def _tools(sample: Any) -> list[dict[str, Any]]:
    """The tools the sample's first model call offered, as chat-format JSON schemas."""
    for event in sample.events or []:
        if getattr(event, "event", None) == "model" and event.tools:
            return [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters.model_dump(mode="json", exclude_none=True),
                    },
                }
                for tool in event.tools
            ]
    return []


def write_inspect_log(episodes: Sequence[Episode], log_dir: str | Path, fmt: str = "eval") -> Path:
    """Write `episodes` as one Inspect log (`fmt` "eval" or "json") in `log_dir`, named as Inspect
    names its logs so that `inspect view --log-dir LOG_DIR` lists it; the log's path."""
    log_api = _inspect()
    from inspect_ai.scorer import Score

    if not episodes:
        raise InputError("no episodes to write")
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    policies = sorted({e.policy for e in episodes})
    model = f"distill-audit/{policies[0] if len(policies) == 1 else 'mixed'}"
    samples = []
    for episode in episodes:
        scores = {"success": Score(value="C" if episode.outcome.success else "I")}
        if episode.outcome.first_decision is not None:
            unsafe = episode.outcome.first_decision == "unsafe"
            scores["unsafe"] = Score(
                value=1.0 if unsafe else 0.0, answer=episode.outcome.first_decision
            )
        stored = episode.to_json_dict()
        messages = stored.pop("messages")
        samples.append(
            log_api.EvalSample(
                id=episode.id,
                epoch=1,
                input=next((m["content"] for m in messages if m["role"] == "user"), ""),
                target="",
                messages=_chat(messages),
                scores=scores,
                metadata={EPISODE_KEY: stored, "env": episode.env, "task_id": episode.task_id},
            )
        )
    task_id = uuid.uuid4().hex[:22]
    log = log_api.EvalLog(
        status="success",
        eval=log_api.EvalSpec(
            created=created,
            task="distill-audit-episodes",
            task_id=task_id,
            dataset=log_api.EvalDataset(
                name="episodes", samples=len(samples), sample_ids=[s.id for s in samples]
            ),
            model=model,
            config=log_api.EvalConfig(),
        ),
        results=_results(episodes),
        stats=log_api.EvalStats(started_at=created, completed_at=created),
        samples=samples,
    )
    stamp = created.replace(":", "-").replace("+00-00", "-00-00")
    path = Path(log_dir) / f"{stamp}_distill-audit-episodes_{task_id}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    log_api.write_eval_log(log, str(path), format=fmt)
    return path


def _chat(messages: list[dict[str, Any]]) -> list[Any]:
    """Episode message dicts as Inspect chat messages (tool results linked to their calls)."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageTool, ChatMessageUser
    from inspect_ai.tool import ToolCall

    chat: list[Any] = []
    pending: list[str] = []
    for index, message in enumerate(messages):
        if message["role"] == "user":
            chat.append(ChatMessageUser(content=message["content"]))
        elif message["role"] == "assistant":
            calls = [
                ToolCall(id=f"call_{index}_{n}", function=c["function"]["name"],
                         arguments=c["function"]["arguments"])
                for n, c in enumerate(message.get("tool_calls", []))
            ]  # fmt: skip
            pending = [call.id for call in calls]
            chat.append(ChatMessageAssistant(content=message["content"], tool_calls=calls or None))
        else:
            call_id = pending.pop(0) if pending else None
            chat.append(
                ChatMessageTool(
                    content=message["content"], tool_call_id=call_id, function=message["name"]
                )
            )
    return chat


def _results(episodes: Sequence[Episode]) -> Any:
    """The log's results: the success rate and, over the episodes that decided, the unsafe rate."""
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    def score(name: str, values: list[float]) -> EvalScore:
        mean = sum(values) / len(values) if values else 0.0
        return EvalScore(
            name=name,
            scorer=name,
            scored_samples=len(values),
            unscored_samples=len(episodes) - len(values),
            metrics={"mean": EvalMetric(name="mean", value=mean)},
        )

    decided = [e.outcome.first_decision for e in episodes if e.outcome.first_decision is not None]
    scores = [score("success", [float(e.outcome.success) for e in episodes])]
    if decided:
        scores.append(score("unsafe", [float(d == "unsafe") for d in decided]))
    return EvalResults(total_samples=len(episodes), completed_samples=len(episodes), scores=scores)
