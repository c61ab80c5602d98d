"""`python -m audit.study.retabulate`: committed studies re-tabulated with the model-level test
from their cells' reports, nothing run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audit.probes.model_level import permutation_greater
from audit.study.retabulate import main, retabulate
from trajectories.jsonl import InputError

DEFAULT = Path(__file__).resolve().parent.parent / "docs" / "study" / "default"


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "default"
    for cell in (DEFAULT / "cells").iterdir():
        (out / "cells" / cell.name).mkdir(parents=True)
        for name in ("report.json", "seconds.json"):
            shutil.copy(cell / name, out / "cells" / cell.name / name)
    study = json.loads((DEFAULT / "study.json").read_text())
    for row in study["rows"]:
        for key in ("model_p", "model_p_adjusted", "models_per_arm", "model_check"):
            row.pop(key, None)
    (out / "study.json").write_text(json.dumps(study))
    return out


def test_retabulate_adds_the_model_level_test_from_per_seed_rates(tmp_path: Path):
    out = _copy(tmp_path)
    before = json.loads((out / "study.json").read_text())["rows"]
    assert main([str(out)]) == 0
    study = json.loads((out / "study.json").read_text())
    row = next(r for r in study["rows"] if r["teacher"] == "biased" and r["env"] == "api")
    report = json.loads(next((out / "cells").glob("teacher-biased_*/report.json")).read_text())
    per_seed = report["behaviour"][0]["per_seed"]
    counts = {
        arm: [(r["unsafe"], r["n"]) for r in per_seed if r["subject"] == arm]
        for arm in ("student", "control")
    }
    expected = permutation_greater(counts["student"], counts["control"], "t", paired=True)
    assert row["models_per_arm"] == 3
    assert row["model_p"] == pytest.approx(expected.p_value)
    assert row["model_p_adjusted"] == pytest.approx(min(1.0, 2 * expected.p_value))
    assert row["model_check"] == "no-power"  # 3 seeds: 2 x 1/20 >= 0.01
    low, high = row["difference_interval"]
    assert low < row["difference"] < high
    kept = {k: v for k, v in row.items() if k in before[0]}
    assert kept == next(r for r in before if r["cell"] == row["cell"] and r["env"] == "api")
    assert "model-level check" in (out / "study.md").read_text()


def test_retabulate_needs_a_study(tmp_path: Path):
    with pytest.raises(InputError, match="no such study"):
        retabulate(tmp_path)
    assert main([str(tmp_path)]) == 2
