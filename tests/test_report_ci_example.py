"""examples/ci: the workflows parse, run the audit, publish both files and gate on the exit code."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CI = Path(__file__).resolve().parents[1] / "examples" / "ci"
AUDIT_FLAGS = ("--teacher", "--data", "--profile", "--quiet", "--out")


def _audit_command(script: str) -> list[str]:
    words = shlex.split(script.replace("\n", " "))
    start = words.index("audit.run")
    return words[start - 1 :]


def _github_steps() -> list[dict]:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    return workflow["jobs"]["audit"]["steps"]


def test_github_workflow_audits_then_publishes_even_on_failure():
    steps = _github_steps()
    names = [step.get("name", step.get("uses")) for step in steps]
    audit = names.index("Audit (the gate)")
    command = _audit_command(steps[audit]["run"])
    assert command[:2] == ["-m", "audit.run"]
    assert all(flag in command for flag in AUDIT_FLAGS)
    assert "continue-on-error" not in steps[audit], "the audit step's exit code is the gate"
    later = steps[audit + 1 :]
    assert later and all(step.get("if") == "always()" for step in later)
    uploads = [s for s in later if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and "report.html" in uploads[0]["with"]["path"]
    junit = [s for s in later if "junit" in s.get("uses", "")]
    assert junit and junit[0]["with"]["report_paths"].endswith("junit.xml")


def test_gitlab_job_publishes_report_and_junit():
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["distill-audit"]
    command = _audit_command(job["script"][-1])
    assert all(flag in command for flag in AUDIT_FLAGS)
    assert job["artifacts"]["when"] == "always"
    assert "audit-out/report.html" in job["artifacts"]["paths"]
    assert job["artifacts"]["reports"]["junit"] == "audit-out/junit.xml"


def test_the_workflow_flags_exist_in_audit_run():
    if importlib.util.find_spec("audit.run") is None:
        pytest.skip("audit.run is not written yet")
    usage = subprocess.run(
        [sys.executable, "-m", "audit.run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 0, usage.stderr
    missing = [flag for flag in AUDIT_FLAGS if flag not in usage.stdout]
    assert not missing, f"examples/ci uses flags audit.run does not have: {missing}"
