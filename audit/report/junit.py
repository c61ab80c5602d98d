"""Write the gate as junit.xml: one test case per gate check, a failure element when it fails.

The layout is the common JUnit XML one (testsuites > testsuite > testcase, with `failure`
carrying `message` and `type`) that GitHub Actions reporters, GitLab, Jenkins and Azure read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from audit.report.schema import Report

SUITE_NAME = "distill-audit gate"
CLASS_PREFIX = "distill_audit.gate"


def junit_tree(report: Report) -> ET.ElementTree:
    """The junit.xml document for `report`'s gate."""
    checks = report.gate.checks
    failures = sum(not check.passed for check in checks)
    skipped = sum(check.skipped for check in checks)
    root = ET.Element(
        "testsuites",
        name="distill-audit",
        tests=str(len(checks)),
        failures=str(failures),
        skipped=str(skipped),
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=SUITE_NAME,
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time="0",
        timestamp=report.created,
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", report.gate.verdict),
        ("headline", report.gate.headline),
        ("exit_code", str(report.exit_code)),
        ("teacher", report.config.teacher),
        ("profile", report.config.profile),
        ("schema_version", report.schema_version),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for check in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{CLASS_PREFIX}.{check.kind}",
            name=check.name,
            time="0",
        )
        if check.skipped:
            ET.SubElement(case, "skipped", message=check.message)
        elif check.passed:
            ET.SubElement(case, "system-out").text = check.message
        else:
            failure = ET.SubElement(
                case, "failure", message=check.message, type=f"{check.kind}-check-failed"
            )
            threshold = "none" if check.threshold is None else f"{check.threshold:g}"
            failure.text = f"value {check.value:g}, threshold {threshold}\n{check.message}"
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(report: Report, path: str | Path) -> Path:
    """Write `report`'s gate as junit.xml to `path` and return the path."""
    out = Path(path)
    junit_tree(report).write(out, encoding="utf-8", xml_declaration=True)
    return out
