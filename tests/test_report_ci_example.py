"""examples/ci: the workflows parse, run the audit with positive controls, publish both files and
gate on the exit code; the README states measured times and the exit codes."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml

from audit.config import AuditConfig
from audit.profiles import PROFILE_PRESETS, load_toml
from audit.report.exit_codes import ExitCode
from audit.run import build_parser

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "examples" / "ci"
AUDIT_FLAGS = ("--teacher", "--data", "--profile", "--quiet", "--out")


def _audit_command(script: str) -> list[str]:
    words = shlex.split(script.replace("\n", " "))
    start = words.index("audit.run")
    return words[start - 1 :]


def _resolved(command: list[str], variables: dict[str, str]) -> AuditConfig:
    """The config `command` runs with: its `$VARIABLES` filled in, parsed by audit.run's own
    parser, layered as `build_config` does (preset, `--config` file, flags) without the checks
    of the teacher and data paths, which exist only in the user's repository."""
    argv = [variables.get(w[1:], w) if w.startswith("$") else w for w in command[2:]]
    args = build_parser().parse_args(argv)
    file_values = load_toml(CI / args.config) if args.config else {}
    flags = {f.name: getattr(args, f.name, None) for f in fields(AuditConfig)}
    profile = args.profile or file_values.get("profile") or "default"
    given = {k: v for k, v in flags.items() if v is not None}
    return replace(AuditConfig(), **{**PROFILE_PRESETS[profile], **file_values, **given})


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


def test_both_jobs_run_a_profile_with_positive_controls():
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = workflow["jobs"]["audit"]["steps"]
    github = _audit_command(next(s["run"] for s in steps if s.get("name") == "Audit (the gate)"))
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["distill-audit"]
    gitlab = _audit_command(job["script"][-1])
    for name, command, variables in (
        ("github-actions.yml", github, workflow["env"]),
        ("gitlab-ci.yml", gitlab, job["variables"]),
    ):
        config = _resolved(command, variables)
        assert config.positive_controls, f"{name}: {config.profile} has no controls"
        assert config.profile != "quick", f"{name} gates on the quick profile"


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


def test_readme_states_measured_times_exit_codes_and_what_a_pass_without_controls_means():
    text = (CI / "README.md").read_text()
    measured = (ROOT / "README.md").read_text().replace("\n", " ")
    times = re.findall(r"\d+ min \d+ s", text.replace("\n", " "))
    assert "13 min 25 s" in times, "the README gives the measured time of the default profile"
    unrecorded = [t for t in times if t not in measured]
    assert not unrecorded, f"times not measured in the project README: {unrecorded}"
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", text, flags=re.MULTILINE)}
    assert codes == {int(code) for code in ExitCode}
    rows = dict(re.findall(r"^\| (\d+) \|.*\| (passes|fails) \|$", text, flags=re.MULTILINE))
    assert rows == {str(int(code)): "fails" if code else "passes" for code in ExitCode}
    assert "not evidence" in text and "`quick`" in text
    assert "--profile default" in text
