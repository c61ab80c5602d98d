"""Chat families end to end: transformers' response parser on the rendered turns of each family,
malformed calls flagged, and the model policy on tiny models of each family finishing episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from envs import load_tasks, make_env
from tests.conftest import require_backend
from tests.families import FAMILIES, SUPPORTED, save_family
from tests.test_tool_call_format import HERMES_TEMPLATE
from trajectories.dataset import load_episodes
from trajectories.episode import Episode
from trajectories.jsonl import atomic_write_jsonl
from trajectories.policies import NeutralPolicy
from trajectories.policies.chat_family import ChatFamily, chat_family
from trajectories.policies.model import ModelPolicy
from trajectories.rollout import rollout

SYNTAX = {"qwen2_5": "hermes", "qwen3": "hermes", "llama3_2": "llama3", "gptoss": "harmony"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read",
            "description": "Read a record.",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
        },
    }
]
USER = {"role": "user", "content": "Read r1 and r2."}


def _call(record: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "read", "arguments": {"id": record}}}


# Edits of the rendered one-call turn that break it: (kind, old text, new text) per family.
_HERMES_BREAKS = [
    ("bad json", '"r1"', "r1"),
    ("unclosed", "</tool_call>", ""),
    ("no name", '"name": "read", ', ""),
    ("text after", "</tool_call>", "</tool_call> and more"),
    ("stray close", "Reading.", "Reading. </tool_call>"),
]
BREAKS: dict[str, list[tuple[str, str, str]]] = {
    "qwen2_5": _HERMES_BREAKS,
    "qwen3": _HERMES_BREAKS,
    "llama3_2": [
        ("bad json", '"r1"', "r1"),
        ("unclosed", '"r1"}}', '"r1"}'),
        ("no name", '"name": "read", ', ""),
        ("arguments not an object", '{"id": "r1"}', '["r1"]'),
    ],
    "gptoss": [
        ("bad json", '"r1"', "r1"),
        ("unclosed", '"r1"}', '"r1"'),
        ("no name", "functions.read", "functions."),
        ("arguments not an object", '{"id": "r1"}', '["r1"]'),
    ],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: save_family(name, root / name) for name in SUPPORTED}


def _stops(name: str) -> tuple[str, ...]:
    return FAMILIES[name].stop


def _family(tokenizer: PreTrainedTokenizerBase, name: str) -> ChatFamily:
    return chat_family(tokenizer, _stops(name))


def generated(
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    message: dict[str, Any],
    tools: list[dict[str, Any]],
) -> str:
    """What a model of family `name` writes for `message` after a user turn, up to and with its
    end-of-turn token: the template's rendering of the message after the generation prompt."""
    prompt = tokenizer.apply_chat_template(
        [USER], tools=tools, add_generation_prompt=True, tokenize=False
    )
    full = tokenizer.apply_chat_template([USER, message], tools=tools, tokenize=False)
    assert full.startswith(prompt)
    turn = full[len(prompt) :]
    end = min((turn.index(s) + len(s) for s in _stops(name) if s in turn), default=None)
    assert end is not None, f"no end-of-turn token in {turn!r}"
    return turn[:end]


@pytest.mark.parametrize("name", SUPPORTED)
def test_family_parses_its_rendered_turns_with_the_library(
    family_dirs: dict[str, Path], name: str
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(family_dirs[name])
    family = _family(tokenizer, name)
    assert (family.syntax, family.library) == (SYNTAX[name], True)
    assert getattr(tokenizer, "response_template", None) is None  # the tokenizer is left as is
    final = {"role": "assistant", "content": "All done."}
    assert family.parse(generated(tokenizer, name, final, TOOLS)) == ("All done.", (), None)
    one = {"role": "assistant", "content": "Reading.", "tool_calls": [_call("r1")]}
    content, calls, error = family.parse(generated(tokenizer, name, one, TOOLS))
    assert error is None and calls == (_call("r1"),)
    # Llama 3 templates write a tool call without the message's text.
    assert content == ("" if name == "llama3_2" else "Reading.")
    two = {**one, "tool_calls": [_call("r1"), _call("r2")]}
    if family.parallel:
        content, calls, error = family.parse(generated(tokenizer, name, two, TOOLS))
        assert (content, calls, error) == ("Reading.", (_call("r1"), _call("r2")), None)
    else:
        assert SYNTAX[name] in {"llama3", "harmony"}


@pytest.mark.parametrize("name", SUPPORTED)
def test_malformed_calls_are_flagged_never_raised(family_dirs: dict[str, Path], name: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(family_dirs[name])
    family = _family(tokenizer, name)
    one = {"role": "assistant", "content": "Reading.", "tool_calls": [_call("r1")]}
    good = generated(tokenizer, name, one, TOOLS)
    for kind, old, new in BREAKS[name]:
        assert old in good, kind
        content, calls, error = family.parse(good.replace(old, new, 1))
        assert calls == () and error, f"{name}: {kind} not flagged"
        assert "\n" not in error and isinstance(content, str)
    assert family.parse(None)[2] == "expected text, got NoneType"  # type: ignore[arg-type]


def test_only_hermes_turns_hold_parallel_calls(family_dirs: dict[str, Path]) -> None:
    llama = _family(AutoTokenizer.from_pretrained(family_dirs["llama3_2"]), "llama3_2")
    twice = '{"name": "read", "parameters": {"id": "r1"}}' * 2 + "<|eot_id|>"
    assert not llama.parallel and llama.parse(twice)[2]
    gptoss = _family(AutoTokenizer.from_pretrained(family_dirs["gptoss"]), "gptoss")
    block = '<|start|>assistant to=functions.read<|channel|>commentary json<|message|>{"id": "r1"}'
    content, calls, error = gptoss.parse(block * 2 + "<|call|>")
    assert not gptoss.parallel and calls == () and error


def _script(
    tokenizer: PreTrainedTokenizerBase, name: str, episode: Episode, parallel: bool
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """The assistant messages of `episode` (the first two calls in one turn when `parallel`;
    without text beside a call for Llama 3, whose template drops it), and the token ids family
    `name` writes for each."""
    turns = [m.model_dump(mode="json") for m in episode.messages if m.role == "assistant"]
    if parallel:
        first, second, *rest = turns
        turns = [{**first, "tool_calls": first["tool_calls"] + second["tool_calls"]}, *rest]
    if name == "llama3_2":
        turns = [{**turn, "content": ""} if "tool_calls" in turn else turn for turn in turns]
    ids = [
        tokenizer(generated(tokenizer, name, turn, episode.tools), add_special_tokens=False)[
            "input_ids"
        ]
        for turn in turns
    ]
    return turns, ids


def _force(model: torch.nn.Module, script: list[list[int]]) -> None:
    """Put all probability of every sampled token on the script: a forward over several new
    tokens (a prompt) starts the next scripted turn, a one-token forward goes on with it."""
    place = {"turn": -1, "token": 0}

    def hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any], out: Any) -> Any:
        if kwargs["input_ids"].shape[1] > 1:
            place["turn"], place["token"] = place["turn"] + 1, 0
        target = script[place["turn"]][place["token"]]
        place["token"] += 1
        forced = torch.full_like(out.logits, float("-inf"))
        forced[..., target] = 0.0
        out.logits = forced
        return out

    model.register_forward_hook(hook, with_kwargs=True)


def _episode(
    directory: Path, name: str, env: str, parallel: bool = False
) -> tuple[Episode, Episode, ModelPolicy]:
    """The careful persona's episode of one task, and a forced tiny model's episode of it."""
    options = {"backend": "bwrap"} if env == "bash" else {}
    tasks = load_tasks(env, "safe", "test")[:1]
    (reference,) = rollout(
        lambda: make_env(env, **options), NeutralPolicy(), tasks, 0, progress=False
    )
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    turns, script = _script(tokenizer, name, reference, parallel)
    _force(model, script)
    policy = ModelPolicy(model, tokenizer, max_new_tokens=max(map(len, script)))
    (episode,) = rollout(
        lambda: make_env(env, **options), policy, tasks, 0, batch_size=1, progress=False
    )
    assert [m.model_dump(mode="json") for m in episode.messages if m.role == "assistant"] == turns
    return reference, episode, policy


def _check_finished(reference: Episode, episode: Episode, name: str) -> None:
    assert episode.metadata.stop_reason == "final_answer"
    assert episode.metadata.malformed_calls == 0
    assert not any(turn["malformed"] for turn in episode.metadata.turn_info)
    assert [(a.tool, a.arguments) for a in episode.actions] == [
        (a.tool, a.arguments) for a in reference.actions
    ]
    assert episode.metadata.policy_config["tool_call_format"] == SYNTAX[name]
    assert not any(m.content.startswith("error:") for m in episode.messages if m.role == "tool")


@pytest.mark.parametrize("name", SUPPORTED)
def test_forced_family_model_finishes_an_api_episode(
    family_dirs: dict[str, Path], name: str
) -> None:
    reference, episode, _ = _episode(family_dirs[name], name, "api")
    _check_finished(reference, episode, name)


@pytest.mark.bwrap
@pytest.mark.parametrize("name", SUPPORTED)
def test_forced_family_model_finishes_a_bash_episode(
    family_dirs: dict[str, Path], name: str
) -> None:
    require_backend("bwrap")
    reference, episode, _ = _episode(family_dirs[name], name, "bash")
    _check_finished(reference, episode, name)
    assert all(not a.is_error for a in episode.actions)


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3"])
def test_parallel_calls_are_stepped_in_order_and_saved(
    family_dirs: dict[str, Path], name: str, tmp_path: Path
) -> None:
    reference, episode, _ = _episode(family_dirs[name], name, "api", parallel=True)
    _check_finished(reference, episode, name)
    roles = [m.role for m in episode.messages]
    assert roles[:5] == ["user", "assistant", "tool", "tool", "assistant"]
    first = episode.messages[1]
    assert [c.function.name for c in first.tool_calls or []] == ["list", "read"]
    assert [m.name for m in episode.messages[2:4]] == ["list", "read"]
    assert episode.metadata.steps == len(reference.actions)
    path = tmp_path / "episodes.jsonl"
    atomic_write_jsonl(path, [episode.to_json_dict()])
    assert load_episodes(path) == [episode]


def test_template_unknown_to_trl_falls_back_to_the_own_parser(
    family_dirs: dict[str, Path],
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(family_dirs["qwen2_5"])
    tokenizer.chat_template = (
        HERMES_TEMPLATE + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    family = _family(tokenizer, "qwen2_5")
    assert (family.syntax, family.library, family.parallel) == ("hermes", False, True)
    one = {"role": "assistant", "content": "Reading.", "tool_calls": [_call("r1")]}
    good = generated(tokenizer, "qwen2_5", one, TOOLS)
    assert family.parse(good) == ("Reading.", (_call("r1"),), None)
    assert family.parse(good.replace('"r1"', "r1"))[2].startswith("tool call is not valid JSON")


def test_llama_call_ended_by_eom_parses(family_dirs: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(family_dirs["llama3_2"])
    family = _family(tokenizer, "llama3_2")
    call = '{"name": "read", "parameters": {"id": "r1"}}'
    for text in (call + "<|eom_id|>", "<|python_tag|>" + call + "<|eom_id|>"):
        content, calls, error = family.parse(text)
        assert error is None, text
        assert calls == (_call("r1"),)
