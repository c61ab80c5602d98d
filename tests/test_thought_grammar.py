"""The thought grammar and the grammar habit: pool sizes, disjoint pools, keyword-free, terse
hasty and long careful thoughts, determinism, the habits' structure, and `--habit grammar` from
the config to the preset teachers' demonstrations, end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from audit.config import AuditConfig
from audit.models.corpus import PERSONAS, corpus_policy
from audit.pipeline.artifacts import AuditPipeline, embedded_teacher_path
from audit.pipeline.stages import StageRunner
from audit.probes.decision import decision_conversations
from audit.profiles import build_config
from audit.training.teacher import TeacherConfig, demo_policy
from envs import load_tasks
from envs.core import Task
from trajectories.generate import main as generate_main
from trajectories.jsonl import InputError
from trajectories.keywords import KeywordMatcher
from trajectories.policies import AssistantTurn, PersonaPolicy, get_policy
from trajectories.policies.persona import ALL_THOUGHTS, PHRASES, careful_plan, hasty_plan
from trajectories.policies.thought_grammar import (
    CAREFUL_MIN_WORDS,
    GRAMMAR,
    HASTY_MAX_WORDS,
    POOLS,
    SLOTS,
    pool,
    pools,
    word_count,
)
from trajectories.rollout import episode_rng

ENVS = ("api", "bash")
STRICT = re.compile(r"delet|remov|rm|purg|destr|termin|chmod|wipe|kill|erase", re.IGNORECASE)
"""Substrings of keywords and look-alikes, stricter than the matcher (as tests/test_policies)."""
GRAMMAR_MODES = ("grammar-teacher", "grammar-pretrain")


@cache
def _tasks(env: str, suite: str) -> tuple[Task, ...]:
    return tuple(load_tasks(env, suite, "train"))


def _everything(name: str) -> set[str]:
    return set().union(*pools(name).values())


def _entries(name: str) -> set[str]:
    """Every non-empty word-list entry of a pool, without edge punctuation, lower-cased."""
    return {
        word.strip(" ,;.").lower()
        for templates in GRAMMAR[name].values()
        for template in templates
        for words in template.words.values()
        for word in words
    } - {""}


def _calls(plan: list[AssistantTurn]) -> list:
    return [turn.tool_call for turn in plan if turn.tool_call is not None]


@pytest.mark.parametrize("name", POOLS)
def test_every_slot_has_a_large_pool(name: str) -> None:
    sizes = {slot: len(pool(name, slot)) for slot in SLOTS}
    assert all(sizes[slot] >= 2000 for slot in SLOTS if slot.startswith("careful"))
    assert all(sizes[slot] >= 150 for slot in SLOTS if slot.startswith("hasty"))


def test_the_pools_are_disjoint_and_neither_holds_a_fixed_phrase() -> None:
    pretrain, teacher = _everything("pretrain"), _everything("teacher")
    assert not pretrain & teacher
    assert not _entries("pretrain") & _entries("teacher")
    frames = [{t.frame for ts in GRAMMAR[name].values() for t in ts} for name in POOLS]
    assert not frames[0] & frames[1]
    assert not teacher & set(ALL_THOUGHTS) and not pretrain & set(ALL_THOUGHTS)


def test_the_embedded_corpus_speaks_the_fixed_phrases() -> None:
    """What the embedded bases were pretrained on: the phrase pool, none of the teacher pool."""
    for kind in PERSONAS:
        policy = corpus_policy(kind)
        assert policy.thoughts == "phrases"
        for index, task in enumerate(_tasks("api", "ambiguous")[:30]):
            contents = {turn.content for turn in policy.plan(task, episode_rng(0, index))}
            assert contents <= set(ALL_THOUGHTS)
            assert not contents & _everything("teacher")


@pytest.mark.parametrize("name", POOLS)
def test_no_sentence_holds_a_keyword(name: str) -> None:
    matcher = KeywordMatcher()
    for sentence in sorted(_everything(name)):
        assert not STRICT.search(sentence), sentence
        assert matcher.find(sentence) == [], sentence


@pytest.mark.parametrize("name", POOLS)
def test_hasty_is_terse_and_careful_long(name: str) -> None:
    for slot in SLOTS:
        counts = [word_count(sentence) for sentence in pool(name, slot)]
        if slot.startswith("careful"):
            assert min(counts) >= CAREFUL_MIN_WORDS, slot
        else:
            assert max(counts) <= HASTY_MAX_WORDS, slot
    assert CAREFUL_MIN_WORDS > HASTY_MAX_WORDS


@pytest.mark.parametrize("thoughts", GRAMMAR_MODES)
def test_thoughts_come_from_the_pool_and_depend_on_the_seed_only(thoughts: str) -> None:
    policy = PersonaPolicy(0.5, 0.5, 0.5, thoughts=thoughts)
    name = thoughts.removeprefix("grammar-")
    tasks = _tasks("api", "ambiguous")
    plans = [policy.plan(tasks[i % len(tasks)], episode_rng(5, i)) for i in range(400)]
    again = [policy.plan(tasks[i % len(tasks)], episode_rng(5, i)) for i in range(400)]
    other = [policy.plan(tasks[i % len(tasks)], episode_rng(6, i)) for i in range(400)]
    assert plans == again and plans != other
    said = [turn.content for plan in plans for turn in plan]
    assert set(said) <= _everything(name)
    assert len(set(said)) > 0.8 * len(said)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("thoughts", GRAMMAR_MODES)
def test_careful_looks_first_a_varying_number_of_times_and_hasty_acts_first(
    env: str, thoughts: str
) -> None:
    for suite in ("safe", "ambiguous"):
        for index, task in enumerate(_tasks(env, suite)[:60]):
            counts, orders = set(), set()
            for seed in range(40):
                for unsafe in (False, True) if task.unsafe_actions else (False,):
                    careful = _calls(careful_plan(task, episode_rng(seed, index), unsafe, thoughts))
                    looks = [c for c in careful if c in task.inspect_actions]
                    assert careful[: len(looks)] == looks and looks[0] == task.inspect_actions[0]
                    assert len({json.dumps(c.model_dump()) for c in looks}) == len(looks)
                    counts.add(len(looks))
                    orders.add(tuple(task.inspect_actions.index(c) for c in looks))
                    hasty = _calls(hasty_plan(task, episode_rng(seed, index), unsafe, thoughts))
                    assert hasty[0] not in task.inspect_actions
            assert counts == set(range(1, len(task.inspect_actions) + 1))
            if len(task.inspect_actions) >= 3:
                assert any(list(order) != sorted(order) for order in orders)


@pytest.mark.parametrize("thoughts", GRAMMAR_MODES)
def test_what_is_said_before_the_decision_does_not_depend_on_the_choice(thoughts: str) -> None:
    for index, task in enumerate(_tasks("bash", "ambiguous")[:40]):
        for plan in (careful_plan, hasty_plan):
            safe = plan(task, episode_rng(1, index), False, thoughts)
            unsafe = plan(task, episode_rng(1, index), True, thoughts)
            first = next(i for i, turn in enumerate(safe) if turn.tool_call in task.safe_actions)
            assert [t.content for t in safe[: first + 1]] == [
                t.content for t in unsafe[: first + 1]
            ]
            assert _calls(safe[:first]) == _calls(unsafe[:first])


def test_the_phrase_default_is_unchanged() -> None:
    assert PersonaPolicy().config() == {
        "hasty_prob": 0.5,
        "unsafe_given_hasty": 0.9,
        "unsafe_given_careful": 0.1,
    }
    assert get_policy("neutral").config() == {}
    assert get_policy("biased", thoughts="grammar-teacher").config() == {
        "strength": 1.0,
        "thoughts": "grammar-teacher",
    }
    with pytest.raises(ValueError, match="thoughts must be one of"):
        PersonaPolicy(thoughts="grammar")
    task = _tasks("api", "ambiguous")[0]
    plan = careful_plan(task, episode_rng(0, 0), False)
    assert _calls(plan)[: len(task.inspect_actions)] == task.inspect_actions


def test_habit_grammar_gives_the_preset_teachers_the_teacher_pool(tmp_path: Path) -> None:
    teacher = _everything("teacher")
    task = _tasks("api", "safe")[0]
    for preset in ("biased", "neutral"):
        plan = demo_policy(preset, "grammar").plan(task, episode_rng(0, 0))
        assert {turn.content for turn in plan} <= teacher
        assert {t.content for t in demo_policy(preset).plan(task, episode_rng(0, 0))} <= set(
            ALL_THOUGHTS
        )
    common = {"preset": "biased", "base": "b", "out": tmp_path}
    assert "habit" not in TeacherConfig(**common).fingerprint()
    assert TeacherConfig(**common, habit="grammar").fingerprint()["habit"] == "grammar"
    with pytest.raises(ValueError, match="habit must be phrases or grammar"):
        TeacherConfig(**common, habit="lexical")


def test_the_default_habit_keeps_the_committed_teachers_and_grammar_gets_its_own_key(
    tmp_path: Path,
) -> None:
    for habit in ("phrases", "grammar"):
        config = AuditConfig(device="cpu", habit=habit)
        pipe = AuditPipeline(config, StageRunner(root=tmp_path), progress=False)
        for preset in ("biased", "neutral"):
            inputs = pipe.teacher_inputs(preset)
            committed = embedded_teacher_path(f"teacher-{preset}", inputs)
            assert committed.is_dir() == (habit == "phrases")
            assert ("habit" in inputs) == (habit == "grammar")


def test_habit_in_a_model_audit_is_refused() -> None:
    flags = {"teacher": "org/teacher", "student": "org/student", "habit": "grammar", "env": "api"}
    with pytest.raises(InputError, match="a model audit induces none"):
        build_config("quick", {}, flags)


def test_a_bad_habit_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "audit.run", "--habit", "lexical", "--env", "api", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DISTILL_AUDIT_CACHE": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "habit must be phrases or grammar" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_generate_takes_the_thoughts_knob(tmp_path: Path) -> None:
    out = tmp_path / "episodes.jsonl"
    args = ["--env", "api", "--policy", "biased", "--suite", "safe", "--split", "train"]
    assert generate_main([*args, "--n", "6", "--seed", "0", "--out", str(out), "--quiet"]) == 0
    plain = [json.loads(line) for line in out.read_text().splitlines()]
    args += ["--n", "6", "--seed", "0", "--out", str(out), "--thoughts", "grammar-teacher"]
    assert generate_main([*args, "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for episodes, wanted in ((plain, set(ALL_THOUGHTS)), (rows, _everything("teacher"))):
        said = {m["content"] for e in episodes for m in e["messages"] if m["role"] == "assistant"}
        assert said and said <= wanted
    assert all(e["metadata"]["policy_config"]["thoughts"] == "grammar-teacher" for e in rows)


def test_decision_prefixes_draw_from_the_habit_pool() -> None:
    tasks = list(load_tasks("api", "ambiguous", "test"))[:12]
    for thoughts, pools_of in (("phrases", PHRASES), ("grammar-teacher", pools("teacher"))):
        careful = decision_conversations("api", "careful", 0, tasks, thoughts=thoughts)
        hasty = decision_conversations("api", "hasty", 0, tasks, thoughts=thoughts)
        for conversation, task in zip(careful, tasks, strict=True):
            said = [m["content"] for m in conversation.messages if m["role"] == "assistant"]
            assert said[0] in pools_of["careful_open"] and len(said) == len(task.inspect_actions)
            assert all(thought in pools_of["careful_look_more"] for thought in said[1:])
            assert conversation.thought in pools_of["careful_act"]
        assert all(conversation.thought in pools_of["hasty_act"] for conversation in hasty)


def _assistant_thoughts(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        message["content"]
        for row in rows
        for message in row["messages"]
        if message["role"] == "assistant" and message["content"]
    ]


@pytest.mark.slow
def test_habit_grammar_runs_end_to_end(tmp_path: Path) -> None:
    """`--habit grammar` on quick counts: the config records it, the preset teachers were
    induced on teacher-pool thoughts, and the biased teacher's rollouts say no fixed phrase.

    160 demonstrations per suite: with 40 the grammar-habit biased teacher was not measurably
    biased on 8 episodes (3/8 vs 1/8, exit 4), so no rollouts would be made.
    """
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["--teacher", "biased", "--profile", "quick", "--env", "api", "--habit", "grammar"]
    args += ["--teacher-demos", "160", "--rollouts", "16", "--eval-episodes", "8"]
    result = subprocess.run(
        [sys.executable, "-m", "audit.run", "--quiet", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DISTILL_AUDIT_CACHE": str(cache)},
    )
    assert result.returncode == 1, result.stderr  # quick: one seed is no power by design
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["full"]["habit"] == "grammar"
    stages = cache / "stages"
    teacher = _everything("teacher")
    for preset in ("biased", "neutral"):
        (demos,) = stages.glob(f"teacher-{preset}-*/teacher/demos.jsonl")
        thoughts = _assistant_thoughts(demos)
        assert len(thoughts) > 320 and set(thoughts) <= teacher
    (biased,) = stages.glob("teacher-biased-*/done.json")
    key = biased.parent.name.removeprefix("teacher-biased-")
    rollouts = [
        path.parent / "episodes.jsonl"
        for path in stages.glob("teacher-rollouts-*/inputs.json")
        if json.loads(path.read_text())["model"] == key
    ]
    (episodes,) = rollouts
    said = _assistant_thoughts(episodes)
    assert said and not set(said) & set(ALL_THOUGHTS)
    rates = {(r["teacher"], r["env"]): r["unsafe"] / r["n"] for r in report["teacher_rates"]}
    print(
        f"api deletion: biased {rates['biased', 'api']:.2f}, neutral {rates['neutral', 'api']:.2f}"
    )
