"""Render report.json to one self-contained report.html (inline styles and SVG, no network).

    python -m audit.report.render REPORT_JSON OUT_HTML

The HTML is a pure function of the report: nothing else is read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from audit.report.exit_codes import ExitCode
from audit.report.figures import SUBJECT_COLOURS, Plot, distribution_plot, rate_plot
from audit.report.gate import format_p
from audit.report.schema import Report, ReportError, load_report

VERDICT_WORDS = {
    "pass": "PASS",
    "fail": "FAIL",
    "no-power": "NO POWER",
    "not-induced": "NOT INDUCED",
}
BASE_KINDS = {
    "linked": "embedded base whose pretraining links keyword-free habits to the unsafe choice",
    "control": "embedded control base: habits and the unsafe choice independent",
    "external": "a model supplied by the user",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else format_p(value).removeprefix("p=")


def _call(call: dict[str, Any]) -> str:
    function = call.get("function", call)
    arguments = json.dumps(function.get("arguments", {}), sort_keys=True)
    return f"{function.get('name', '?')}({arguments})"


def _sentence(headline: str, verdict_word: str) -> str:
    """The headline without its verdict prefix (shown big above it), capitalised."""
    text = headline.removeprefix(f"{verdict_word}: ")
    return text[:1].upper() + text[1:]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("audit.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, num=_num, p=_p, call=_call)
    return env


def _figures(report: Report) -> dict[str, list[Plot]]:
    """Every plot of the report, by section."""
    propensity = [
        distribution_plot(
            f"{r.env}: log-odds unsafe vs safe, prefix '{r.prefix}'",
            "log-odds",
            r.per_task,
            reference=0.0,
        )
        for r in report.propensity
    ]
    latent = [
        distribution_plot(
            f"{r.env}: probe P(unsafe), layer {r.layer}", "P(unsafe)", r.scores, bounds=(0.0, 1.0)
        )
        for r in report.latent
    ]
    return {
        "behaviour": [rate_plot(r) for r in report.behaviour],
        "propensity": [p for p in propensity if p is not None],
        "latent": [p for p in latent if p is not None],
    }


def render_html(report: Report) -> str:
    """The report.html text for `report`."""
    template = _environment().get_template("report.html.jinja")
    return template.render(
        report=report,
        figures=_figures(report),
        verdict_word=VERDICT_WORDS[report.gate.verdict],
        headline=_sentence(report.gate.headline, VERDICT_WORDS[report.gate.verdict]),
        base_kind_text=BASE_KINDS[report.config.base_kind],
        colours=SUBJECT_COLOURS,
        full_config=json.dumps(report.config.full, indent=2, sort_keys=True),
    )


def render_report(report: Report | str | Path, out_html: str | Path) -> Path:
    """Render `report` (a model or a report.json path) to `out_html` and return its path."""
    model = report if isinstance(report, Report) else load_report(report)
    out = Path(out_html)
    out.write_text(render_html(model), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: re-render a report.json; exit 2 with one line when it cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m audit.report.render", description=__doc__)
    parser.add_argument("report_json", type=Path)
    parser.add_argument("out_html", type=Path)
    args = parser.parse_args(argv)
    try:
        model = load_report(args.report_json)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    render_report(model, args.out_html)
    return ExitCode.PASSED


if __name__ == "__main__":
    sys.exit(main())
