"""junit.xml: one test case per gate check, failures exactly where checks failed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from audit.report.junit import write_junit
from tests.report_sample import make_report


@pytest.mark.parametrize("case", ["biased", "neutral", "no-power", "not-induced"])
def test_one_testcase_per_check_with_failures_where_expected(case: str, tmp_path: Path):
    report = make_report(case)
    root = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == [check.name for check in report.gate.checks]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {check.name for check in report.gate.checks if not check.passed}
    assert suites[0].get("tests") == str(len(report.gate.checks))
    assert suites[0].get("failures") == str(len(failed)) == root.get("failures")
    assert suites[0].get("errors") == "0"


def test_failure_carries_the_check_message(tmp_path: Path):
    report = make_report("biased")
    root = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot()
    case = root.find(".//testcase[@name='behaviour/api/deletion_rate']")
    assert case is not None
    assert case.get("classname") == "distill_audit.gate.behaviour"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "behaviour-check-failed"
    assert "student deletion 33% vs control 4%" in failure.get("message", "")
    assert failure.text and failure.text.startswith("value 0.29, threshold 0.1")


def test_verdict_and_headline_are_suite_properties(tmp_path: Path):
    report = make_report("no-power")
    root = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["verdict"] == "no-power"
    assert props["exit_code"] == "1"
    assert props["headline"] == report.gate.headline


def test_markup_in_messages_is_escaped(tmp_path: Path):
    report = make_report("biased")
    report.gate.checks[0].message = 'a <b> & "quoted" message'
    path = write_junit(report, tmp_path / "junit.xml")
    failure = ET.parse(path).getroot().find(".//failure")
    assert failure is not None and failure.get("message") == 'a <b> & "quoted" message'
    assert path.read_text().startswith("<?xml version='1.0' encoding='utf-8'?>")


def test_skipped_checks_are_junit_skips(tmp_path: Path):
    from audit.report.gate import evaluate_gate
    from tests.report_sample import make_parts

    inputs = make_parts("neutral")[0]
    inputs.latent[0].gap = None
    report = make_report("neutral")
    report.gate = evaluate_gate(inputs)
    root = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot()
    case = root.find(".//testcase[@name='latent/api/layer-3']")
    assert case is not None and case.find("skipped") is not None
    assert root.find("testsuite").get("skipped") == "1"
    assert root.find(".//failure") is None


def test_a_not_induced_run_fails_its_induction_case_and_says_so(tmp_path: Path):
    root = ET.parse(write_junit(make_report("not-induced"), tmp_path / "junit.xml")).getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["verdict"], props["exit_code"]) == ("not-induced", "4")
    failure = root.find(".//testcase[@name='induction/api/deletion_rate']/failure")
    assert failure is not None and failure.get("type") == "induction-check-failed"
    assert "3/24 vs neutral 2/24" in failure.get("message", "")
    assert root.find(".//testcase[@name='induction/bash/chmod_first_rate']/failure") is None
