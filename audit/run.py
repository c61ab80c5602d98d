"""`python -m audit.run`: audit a distillation pipeline end to end and gate on the result.

    python -m audit.run --teacher biased                 # embedded defaults
    python -m audit.run --teacher PATH --data clean.jsonl --profile quick --quiet --out DIR
    python -m audit.run --teacher PATH --student PATH --student-base PATH   # model audit

Writes report.json (the truth), report.html and junit.xml to --out (default
audit-out/<timestamp>). A model audit (`--teacher PATH --student PATH`) compares the student
with its own base (`--student-base`, else `--base`); see audit.pipeline.model_audit. Exit
codes: 0 gate passed, 1 gate failed or no power, 2 bad usage or input (one line, no
traceback), 3 internal error (traceback in DIR/error.log), 4 not induced (pipeline test: the
biased preset is not measurably biased on this base; stopped early, with a report; a model
audit is never exit 4), 130 / 143 after Ctrl-C / SIGTERM. Finished stages are cached (see
audit.pipeline.stages): re-running a killed command resumes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from audit.config import AuditConfig
from audit.cores import usable_cores
from audit.profiles import build_config, load_toml
from audit.report.exit_codes import ExitCode, failure_exit, raise_on_sigterm
from trajectories.jsonl import InputError

GATE_KEYS = {
    "alpha": "alpha",
    "margin": "margin",
    "latent": "max_latent_gap",
    "auroc": "max_dataset_auroc",
    "decision": "min_decision_rate",
    "ceiling": "max_student_rate",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}", file=sys.stderr)
        sys.exit(ExitCode.BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m audit.run", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="TOML file; any option below, by its field name")
    parser.add_argument("--out", help="output directory (default audit-out/<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress, one summary line")
    parser.add_argument(
        "--gate",
        help="thresholds, e.g. alpha=0.01,margin=0.1,latent=0.15,auroc=0.75,decision=0.5; "
        "ceiling=0.2 adds an absolute ceiling on the student's unsafe rate (default: none)",
    )
    hints = get_type_hints(AuditConfig)
    for spec in fields(AuditConfig):
        if spec.name in GATE_KEYS.values():
            continue
        kind = _flag_type(hints[spec.name])
        flag = "--" + spec.name.replace("_", "-")
        if kind is None:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=spec.metadata["help"],
            )
        else:
            parser.add_argument(flag, type=kind, default=None, help=spec.metadata["help"])
    return parser


def _flag_type(hint: Any) -> type | None:
    """The argparse type of a field annotated `hint` (`float | None`: float); None for a bool."""
    kind = next((arg for arg in get_args(hint) if arg is not type(None)), hint)
    return None if kind is bool else kind


def _gate_values(spec: str | None) -> dict[str, float]:
    if not spec:
        return {}
    values = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in GATE_KEYS:
            raise InputError(f"--gate: unknown key {key!r}; known: {', '.join(GATE_KEYS)}")
        try:
            values[GATE_KEYS[key.strip()]] = float(value)
        except ValueError:
            raise InputError(f"--gate: {key}={value!r} is not a number") from None
    return values


def parse_config(argv: list[str] | None) -> tuple[AuditConfig, Path, bool]:
    """The run's config, output directory and quietness; `InputError` on bad input."""
    args = build_parser().parse_args(argv)
    file_values = load_toml(args.config) if args.config else {}
    flags: dict[str, Any] = {
        spec.name: getattr(args, spec.name)
        for spec in fields(AuditConfig)
        if spec.name not in GATE_KEYS.values()
    }
    flags.update(_gate_values(args.gate))
    config = build_config("default", file_values, flags)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("audit-out") / stamp
    return config, out, args.quiet


def torch_threads(requested: int) -> int:
    """`requested` if positive, else `$OMP_NUM_THREADS` when set to a positive integer, else
    every usable core (`audit.cores`); a malformed `$OMP_NUM_THREADS` is an `InputError`."""
    if requested > 0:
        return requested
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not value:
        return usable_cores()
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"OMP_NUM_THREADS={value!r} is not a positive integer")
    return int(value)


def execute(config: AuditConfig, out: Path, quiet: bool) -> int:
    """Run the audit and write report.json, report.html and junit.xml; return the exit code."""
    import torch
    from rich.console import Console

    from audit.pipeline.modes import make_audit
    from audit.pipeline.stages import StageRunner
    from audit.report.junit import write_junit
    from audit.report.render import render_report
    from audit.report.schema import write_report
    from audit.training.trl_setup import disable_progress_bars

    torch.set_num_threads(torch_threads(config.threads))
    if quiet:
        disable_progress_bars()
    console = Console(stderr=True, quiet=quiet)
    out.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(on_start=lambda name: console.log(f"stage {name}"))
    audit = make_audit(config, runner, lambda step: console.rule(step), progress=not quiet)
    report = audit.run()
    write_report(report, out / "report.json")
    render_report(report, out / "report.html")
    write_junit(report, out / "junit.xml")
    print(f"{report.gate.headline} ({out / 'report.html'})", file=sys.stderr)
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    try:
        config, out, quiet = parse_config(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    raise_on_sigterm()
    try:
        return execute(config, out, quiet)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - one line and an exit code
        return failure_exit(err, out / "error.log")


if __name__ == "__main__":
    sys.exit(main())
