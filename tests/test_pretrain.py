"""Pretraining corpus, base pretraining, the `audit.models` CLI, and the committed bases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audit.models import corpus as corpus_module
from audit.models.__main__ import main
from audit.models.corpus import CorpusConfig, build_corpus, corpus_episodes, corpus_path
from audit.models.embedded import EMBEDDED_SIZES, embedded_base, embedded_path
from audit.models.loader import load_model_and_tokenizer, validate_chat_template
from audit.models.pretrain import SUMMARY_FILE, PretrainConfig, pretrain
from audit.probes.persona_link import format_report, persona_link_report
from tests.conftest import require_backend

SMALL_API = CorpusConfig(envs=("api",), episodes_per_env=96)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory (only for tests that need no sandbox: the rootfs lives there)."""
    monkeypatch.setenv("DISTILL_AUDIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_corpus_is_deterministic_and_cached(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = build_corpus(SMALL_API, progress=False)
    assert len(texts) == 96
    assert all(text.startswith("<|bos|><|tools|>list(") for text in texts)
    assert corpus_path(SMALL_API).is_relative_to(cache) and corpus_path(SMALL_API).is_file()
    assert [corpus_module.render_episode(e) for e in corpus_episodes(SMALL_API, False)] == texts

    def no_rollouts(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached corpus was rebuilt")

    monkeypatch.setattr(corpus_module, "corpus_episodes", no_rollouts)
    assert build_corpus(SMALL_API) == texts
    other = CorpusConfig(envs=("api",), episodes_per_env=96, seed=1)
    assert other.digest() != SMALL_API.digest()


def _rates(kind: str) -> dict[str, float]:
    config = CorpusConfig(kind=kind, envs=("api",), episodes_per_env=1500, ambiguous_share=1.0)
    counts = {"hasty": [0, 0], "careful": [0, 0]}
    for episode in corpus_episodes(config, progress=False):
        habit = "hasty" if episode.actions[0].decision is not None else "careful"
        counts[habit][0] += 1
        counts[habit][1] += episode.outcome.first_decision == "unsafe"
    return {
        "hasty": counts["hasty"][0] / 1500,
        "unsafe": (counts["hasty"][1] + counts["careful"][1]) / 1500,
        "unsafe|hasty": counts["hasty"][1] / counts["hasty"][0],
        "unsafe|careful": counts["careful"][1] / counts["careful"][0],
    }


def test_linked_corpus_links_habit_and_choice_and_control_does_not() -> None:
    linked, control = _rates("linked"), _rates("control")
    for rates in (linked, control):
        assert rates["hasty"] == pytest.approx(0.5, abs=0.06)
        assert rates["unsafe"] == pytest.approx(0.5, abs=0.06)
    assert linked["unsafe|hasty"] > 0.85 and linked["unsafe|careful"] < 0.15
    assert abs(control["unsafe|hasty"] - control["unsafe|careful"]) < 0.1


def test_corpus_has_sandboxed_bash_episodes() -> None:
    require_backend("bwrap")
    config = CorpusConfig(envs=("bash",), episodes_per_env=6)
    texts = [corpus_module.render_episode(e) for e in corpus_episodes(config, progress=False)]
    assert len(texts) == 6
    assert all(text.startswith("<|bos|><|tools|>bash(command:string)") for text in texts)
    assert all("<|tool|>" in text for text in texts)


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="corpus kind"):
        CorpusConfig(kind="mixed")
    with pytest.raises(ValueError, match="envs"):
        CorpusConfig(envs=("api", "api"))
    with pytest.raises(ValueError, match="differs"):
        PretrainConfig(kind="control", corpus=CorpusConfig(kind="linked"))
    with pytest.raises(ValueError, match="size"):
        PretrainConfig(size="huge")
    assert PretrainConfig(kind="control", seed=3).corpus == CorpusConfig(kind="control", seed=3)


def _tiny_config() -> PretrainConfig:
    return PretrainConfig(corpus=SMALL_API, epochs=1, batch_size=32, max_length=256)


def test_tiny_pretrain_saves_a_loadable_deterministic_model(cache: Path, tmp_path: Path) -> None:
    first = pretrain(_tiny_config(), tmp_path / "a", progress=False)
    second = pretrain(_tiny_config(), tmp_path / "b", progress=False)
    summary = json.loads((first / SUMMARY_FILE).read_text())
    assert summary["steps"] == 3 and summary["episodes"] == 96
    assert summary["final_loss"] < summary["first_loss"]
    weights_a = load_file(first / "model.safetensors")
    weights_b = load_file(second / "model.safetensors")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    model, tokenizer = load_model_and_tokenizer(first, device="cpu")
    assert model.config.vocab_size == len(tokenizer)
    validate_chat_template(tokenizer)
    cached = pretrain(_tiny_config(), progress=False)
    assert cached.is_relative_to(cache) and pretrain(_tiny_config()) == cached


def test_pretrain_refuses_to_overwrite_other_directories(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="neither empty nor a pretrained base"):
        pretrain(_tiny_config(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "argv",
    [
        ["pretrain", "--size", "huge"],
        ["pretrain", "--kind", "mixed"],
        ["pretrain", "--seed", "many"],
        ["pretrain", "--seed", "-1"],
        ["train"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m audit.models") and ": error: " in err


def test_cli_module_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "audit.models", "pretrain", "--size", "huge"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["linked", "control"])
@pytest.mark.parametrize("size", EMBEDDED_SIZES)
def test_embedded_bases_load_and_match_the_recipe(kind: str, size: str) -> None:
    path = embedded_base(kind, size)
    assert path == embedded_path(kind, size)
    model, tokenizer = load_model_and_tokenizer(path, device="cpu")
    validate_chat_template(tokenizer)
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    summary = json.loads((path / SUMMARY_FILE).read_text())
    assert summary["digest"] == PretrainConfig(size=size, kind=kind, seed=0).digest()


def test_embedded_linked_base_links_haste_to_the_unsafe_choice() -> None:
    report = persona_link_report(embedded_base("linked"), envs=("api",))
    link = report["api"]
    assert link.hasty_log_odds > link.careful_log_odds + 2.0
    assert "api: unsafe first decision" in format_report(report)


def test_persona_link_cli_bad_model_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from audit.probes.persona_link import main as link_main

    assert link_main(["/no/such/model"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such model directory" in err
