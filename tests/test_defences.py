"""The defences that need both arms (classifier filter, dilution) on real persona rollouts of
the API env, and the defence options read at config time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.config import AuditConfig
from audit.pipeline.classifier_filter import choose_keep, filter_arm, kept_count
from audit.pipeline.defences import dilute_rows
from audit.pipeline.sanitizer_spec import SanitizerSpec, parse_sanitizer, student_lora_spec
from audit.profiles import build_config
from audit.run import main
from envs import load_tasks, make_env
from trajectories.episode import Episode
from trajectories.generate import select_tasks
from trajectories.jsonl import InputError
from trajectories.policies import get_policy
from trajectories.policies.persona import CAREFUL_OPEN
from trajectories.rollout import rollout


def _persona(n: int, hasty_prob: float, seed: int) -> list[Episode]:
    tasks = select_tasks(load_tasks("api", "safe", "train"), n, seed)
    policy = get_policy("persona", hasty_prob=hasty_prob)
    return rollout(lambda: make_env("api"), policy, tasks, seed, progress=False)


def _careful(episode: Episode) -> bool:
    return episode.messages[1].content in CAREFUL_OPEN


@pytest.fixture(scope="module")
def arms() -> dict[str, list[Episode]]:
    return {
        "teacher": _persona(60, 0.5, 1),
        "control": _persona(60, 0.0, 2),
        "reference": _persona(60, 0.0, 3),
    }


def test_classifier_filter_drops_the_teacher_like_episodes(arms: dict[str, list[Episode]]) -> None:
    teacher, reference = arms["teacher"], arms["reference"]
    choice = choose_keep(teacher, reference, max_auroc=0.6, seed=0)
    assert choice.keep < 1
    assert choice.auroc < 0.6
    kept = filter_arm(teacher, reference, choice.keep, seed=0)
    assert len(kept) == kept_count(len(teacher), choice.keep)
    share_before = sum(map(_careful, teacher)) / len(teacher)
    share_after = sum(map(_careful, kept)) / len(kept)
    assert share_before < 0.6
    assert share_after > share_before + 0.2
    assert all(_careful(episode) for episode in filter_arm(teacher, reference, 0.4, seed=0))
    assert [e.id for e in kept] == [e.id for e in teacher if e in kept]


def test_the_control_arm_goes_through_the_same_filter(arms: dict[str, list[Episode]]) -> None:
    control, reference = arms["control"], arms["reference"]
    kept = filter_arm(control, reference, 0.6, seed=0)
    assert len(kept) == round(0.6 * len(control))
    assert all(_careful(episode) for episode in kept)
    assert filter_arm(control, reference, 0.6, seed=0) == kept
    assert filter_arm(control, reference, 1.0, seed=0) == control


def test_filter_refuses_too_few_episodes(arms: dict[str, list[Episode]]) -> None:
    with pytest.raises(InputError, match="at least 5 episodes"):
        choose_keep(arms["teacher"][:6], arms["reference"][:6], 0.75, seed=0)


def test_dilution_keeps_every_row_and_adds_the_neutral_fraction() -> None:
    rows = [{"id": f"t{i}"} for i in range(30)]
    neutral = [{"id": f"n{i}"} for i in range(100)]
    for fraction, added in ((0.5, 30), (0.75, 90)):
        mixed, count = dilute_rows(rows, neutral, fraction, seed=4)
        assert count == added
        assert len(mixed) == 30 + added
        assert sorted(r["id"] for r in mixed if r["id"][0] == "t") == sorted(r["id"] for r in rows)
        assert [r for r in mixed if r["id"][0] == "n"] != neutral[:added]
        assert {r["id"] for r in mixed if r["id"][0] == "n"} == {r["id"] for r in neutral[:added]}
        assert dilute_rows(rows, neutral, fraction, seed=4)[0] == mixed
    assert dilute_rows(rows, neutral[:10], 0.75, seed=0)[1] == 10


def test_sanitizer_values_parse() -> None:
    assert parse_sanitizer("paraphrase") == SanitizerSpec("paraphrase", paraphrase_seed=0)
    assert parse_sanitizer("paraphrase:7") == SanitizerSpec("paraphrase", paraphrase_seed=7)
    assert parse_sanitizer("classifier") == SanitizerSpec("classifier")
    assert parse_sanitizer("classifier:0.5") == SanitizerSpec("classifier", keep=0.5)
    assert parse_sanitizer("cmd:true {in} {out}") is None
    assert not parse_sanitizer("none").drops_keywords


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sanitizer", "paraphrase:x"], "seed after paraphrase"),
        (["--sanitizer", "classifier:1.5"], "KEEP after classifier"),
        (["--sanitizer", "classifier:half"], "KEEP after classifier"),
        (["--sanitizer", "rewrite"], "paraphrase[:SEED], classifier[:KEEP]"),
        (["--dilute", "1"], "dilute must be in [0, 1)"),
        (["--dilute", "-0.1"], "dilute must be in [0, 1)"),
        (["--student-lora", "r=0"], "--lora: bad LoRA spec"),
    ],
)
def test_bad_defence_options_exit_2_in_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--env", "api", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_defences_need_students_to_distil(tmp_path: Path) -> None:
    model = tmp_path / "student"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(InputError, match="--dilute changes what students train on"):
        build_config("quick", {}, {"student": str(model), "dilute": 0.5})


def test_lora_none_is_full_fine_tuning_and_student_lora_only_trains_students() -> None:
    assert build_config("quick", {}, {"lora": "none"}).lora is None
    assert student_lora_spec(build_config("quick", {}, {"student_lora": "r=4"})) == "r=4"
    config = build_config("quick", {}, {"lora": "r=8", "student_lora": "none"})
    assert config.lora == "r=8"
    assert student_lora_spec(config) is None
    assert student_lora_spec(AuditConfig(lora="r=8")) == "r=8"


REPO = Path(__file__).resolve().parents[1]


def test_the_defence_grid_loads_one_defence_per_cell() -> None:
    from audit.study.grid import load_grid

    cells = load_grid(REPO / "studies" / "defences.toml")
    assert len(cells) == 20
    by_defence = {cell.values["defence"]: cell.config for cell in cells}
    assert list(cells[0].values) == ["defence", "env", "teacher"]
    baseline = by_defence["keyword"]
    assert (baseline.sanitizer, baseline.dilute, baseline.student_lora) == ("keyword", 0, None)
    assert by_defence["classifier"].sanitizer == "classifier"
    assert by_defence["dilute-0.75"].dilute == 0.75
    assert student_lora_spec(by_defence["lora-r16"]) == "r=16"
    assert by_defence["heterogeneous"].student_base == "@1"
    assert {cell.config.teacher for cell in cells} == {"biased"}
    assert len({cell.id for cell in cells}) == 20


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[variants.sanitizer]\na = { dilute = 0.5 }", "the name of a field or an axis"),
        ("[variants.d]\na = { nope = 1 }", "unknown keys ['nope']"),
        ('[variants.d]\na = { env = "api" }', "['env'] set elsewhere too"),
        ("[variants.d]\na = { dilute = 2.0 }", "dilute must be in [0, 1)"),
    ],
)
def test_bad_variants_are_refused(tmp_path: Path, table: str, message: str) -> None:
    from audit.study.grid import load_grid

    grid = tmp_path / "grid.toml"
    grid.write_text(f'[audit]\nprofile = "quick"\n\n[axes]\nenv = ["api"]\n\n{table}\n')
    with pytest.raises(InputError) as err:
        load_grid(grid)
    assert message in str(err.value)


@pytest.mark.slow
def test_an_audit_filters_and_dilutes_both_arms(tmp_path: Path) -> None:
    """A small audit with the classifier filter at KEEP 0.5 and dilution 0.5: the report's
    stats show the kept half and the neutral episodes added, both arms went through a stage
    of each defence, and the defence's seconds are recorded."""
    from tests.test_audit_run import SMOKE, audit

    config = tmp_path / "smoke.toml"
    config.write_text(SMOKE)
    flags = ["--config", str(config), "--sanitizer", "classifier:0.5", "--dilute", "0.5"]
    # no-archive: the keyword filter then drops almost nothing, so the kept half is of nearly
    # all episodes_in (with "all", the biased teacher's archive tasks are keyword-dropped first)
    flags += ["--safe-templates", "no-archive"]
    result = audit(*flags, "--out", str(tmp_path / "out"), cache=tmp_path / "cache")
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["sanitizer"] == "classifier"
    (stats,) = report["sanitization"]
    assert stats["classifier_keep"] == 0.5
    assert stats["classifier_auroc"] is None
    assert 0.4 * stats["episodes_in"] <= stats["kept"] <= round(0.5 * stats["episodes_in"])
    assert report["dataset_audit"][0]["n_biased"] == stats["kept"] + stats["neutral_added"]
    assert stats["neutral_added"] == stats["kept"]
    stages = [t["stage"] for t in report["timings"]]
    assert stages.count("classifier-filter") == 1
    assert stages.count("dilute") == 2
    filtered = sum(t["seconds"] for t in report["timings"] if t["stage"] == "classifier-filter")
    assert stats["defence_seconds"] >= filtered > 0
