"""report.html: rendered from report.json alone, self-contained, and clean in headless Chromium.

The Chromium tests skip only where /usr/bin/chromium is missing and
DISTILL_AUDIT_REQUIRE_CHROMIUM is not "1" (CI sets it, so there they fail instead).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from audit.report.render import main, render_html, render_report
from audit.report.schema import write_report
from tests.report_sample import make_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
COLOURS = {"fail": (0xB9, 0x1C, 0x1C), "pass": (0x15, 0x80, 0x3D), "no-power": (0xB4, 0x53, 0x09)}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("DISTILL_AUDIT_REQUIRE_CHROMIUM") == "1":
        pytest.fail("Chromium required (DISTILL_AUDIT_REQUIRE_CHROMIUM=1) but /usr/bin/chromium")
    pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")


def run_chromium(page: Path, tmp_path: Path, *args: str) -> tuple[str, list[str]]:
    """Load `page` from file:// in a fresh headless Chromium; its stdout and console lines."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(
        [*command, page.resolve().as_uri()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish loading {page} in 60 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers of this Chromium still alive, if any
    assert proc.returncode == 0, err[-2000:]
    console = [line for line in err.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return out, console


def png_pixels(path: Path, top: int) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB pixels of the `top` rows of an 8-bit RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), "only 8-bit RGB or RGBA screenshots are decoded"
    step = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * step, [], bytes(width * step)
    for y in range(min(top, height)):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (
                    line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                ) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [row[i : i + 3] for row in rows for i in range(0, stride, step)]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """report.json and report.html for each case, the HTML rendered from the JSON file."""
    out = tmp_path_factory.mktemp("reports")
    rendered = {}
    for case in ("biased", "neutral", "no-power", "not-induced"):
        report_json = write_report(make_report(case), out / f"{case}.json")
        rendered[case] = render_report(report_json, out / f"{case}.html")
    return rendered


def test_html_is_self_contained(pages: dict[str, Path]):
    html = pages["biased"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html
    assert html.count("<svg") == 4  # 2 rate plots, 1 propensity, 1 latent


def test_html_shows_verdict_setup_and_highlighted_decision(pages: dict[str, Path]):
    html = pages["biased"].read_text()
    assert '<div class="verdict-word">FAIL</div>' in html
    assert '<p class="headline">The student inherited the teacher&#39;s deletion bias' in html
    assert "embedded:tiny-llama-linked" in html and ">linked<" in html
    decision = re.search(r'<li class="message role-assistant decision">(.*?)</li>', html, re.S)
    assert decision and "delete({&#34;id&#34;: &#34;b-17&#34;})" in decision.group(1)
    assert html.count("decision point</span>") == 1
    assert "build-0413.tar &lt;current&gt;" in html


def _method_row(html: str) -> str:
    row = re.search(r"<tr><th>Method</th><td>(.*?)</td></tr>", html)
    assert row, "report.html has no Method row"
    return row.group(1)


def test_method_row_names_the_training_recipe(pages: dict[str, Path]):
    assert "builtin" in _method_row(pages["biased"].read_text())
    report = make_report("biased")
    report.config.distill = "cmd:python train.py --data {data} --out {out} <x>"
    row = _method_row(render_html(report))
    assert "<code>cmd:python train.py --data {data} --out {out} &lt;x&gt;</code>" in row
    assert "builtin" not in row


def test_no_power_banner_only_when_a_control_is_missed(pages: dict[str, Path]):
    assert 'id="no-power"' in pages["no-power"].read_text()
    assert 'id="no-power"' not in pages["neutral"].read_text()
    assert 'id="no-power"' not in pages["biased"].read_text()


def test_not_induced_page_shows_the_teacher_rates_and_checks_not_run(pages: dict[str, Path]):
    html = pages["not-induced"].read_text()
    assert '<div class="verdict-word">NOT INDUCED</div>' in html
    assert '<header id="verdict" class="verdict verdict-not-induced">' in html
    assert 'id="not-induced"' in html and "Power not checked" not in html
    assert '<td class="result">NOT BIASED</td>' in html and '<td class="result">biased</td>' in html
    assert '<td class="result">not run</td>' in html
    assert "not distilled, the teacher was not induced" in html
    teachers = re.search(r'<section id="teachers">(.*?)</section>', html, re.S)
    assert teachers and "3 / 24" in teachers.group(1) and "2 / 24" in teachers.group(1)
    assert 'id="behaviour"' not in html and "<svg" not in html
    for case in ("biased", "neutral", "no-power"):
        assert 'id="not-induced"' not in pages[case].read_text()


def test_without_controls_the_report_says_power_was_not_checked():
    report = make_report("neutral")
    report.positive_controls, report.power_ok = [], None
    html = render_html(report)
    assert "Power not checked" in html and "A pass here is not evidence of no transfer" in html


def test_same_report_renders_the_same_html():
    assert render_html(make_report("biased")) == render_html(make_report("biased"))


def test_cli_renders_and_rejects_bad_input(pages: dict[str, Path], tmp_path: Path, capsys):
    out = tmp_path / "again.html"
    assert main([str(pages["biased"].with_suffix(".json")), str(out)]) == 0
    assert out.read_text() == pages["biased"].read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1.0"}')
    assert main([str(bad), str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("case", ["biased", "neutral", "no-power", "not-induced"])
def test_chromium_renders_the_verdict_without_console_errors(
    case: str, pages: dict[str, Path], tmp_path: Path
):
    require_chromium()
    dom, console = run_chromium(pages[case], tmp_path, "--dump-dom")
    assert console == []
    words = {
        "biased": "FAIL",
        "neutral": "PASS",
        "no-power": "NO POWER",
        "not-induced": "NOT INDUCED",
    }
    assert f'<div class="verdict-word">{words[case]}</div>' in dom
    assert dom.count("<svg") == (0 if case == "not-induced" else 4) and "Gate checks" in dom


def test_screenshot_shows_the_coloured_verdict(pages: dict[str, Path], tmp_path: Path):
    require_chromium()
    shot = tmp_path / "report.png"
    _, console = run_chromium(
        pages["biased"], tmp_path, f"--screenshot={shot}", "--window-size=1200,1600"
    )
    assert console == []
    assert shot.stat().st_size > 50_000
    width, height, top = png_pixels(shot, top=200)
    assert (width, height) == (1200, 1600)
    banner = sum(pixel == bytes(COLOURS["fail"]) for pixel in top)
    text = sum(pixel == b"\xff\xff\xff" for pixel in top)
    assert banner > 0.5 * len(top), "the top of the page is not the red FAIL banner"
    assert text > 0.01 * len(top), "no white verdict text in the banner"


def test_console_errors_are_detected(tmp_path: Path):
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        "<img src='https://example.invalid/x.png'><script>missing();</script></body></html>"
    )
    _, console = run_chromium(page, tmp_path, "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console)
    assert any("Content Security Policy" in line for line in console)


def test_a_minimal_report_renders():
    report = make_report("neutral")
    empty = {"behaviour": [], "propensity": [], "latent": [], "dataset_audit": [], "examples": []}
    minimal = report.model_copy(update={**empty, "teacher_rates": [], "notes": []})
    html = render_html(minimal)
    assert "<svg" not in html and 'id="behaviour"' not in html
    assert 'id="controls"' in html


def test_distribution_plot_with_one_value_and_a_flat_subject():
    from audit.report.figures import distribution_plot

    plot = distribution_plot("t", "y", {"student": [0.5], "control": [0.2, 0.2]}, reference=0.0)
    assert plot is not None and [g.subject for g in plot.groups] == ["student", "control"]
    student = plot.groups[0].box
    assert student is not None and student.q1 == student.median == student.q3
    assert distribution_plot("t", "y", {"student": []}) is None


def test_latent_without_a_probe_renders_as_not_measured():
    report = make_report("neutral")
    latent = report.latent[0]
    latent.gap, latent.probe_cv_auroc, latent.probe_note = None, None, "all teacher choices safe"
    html = render_html(report)
    assert "not measured" in html and "no probe" in html and "all teacher choices safe" in html
