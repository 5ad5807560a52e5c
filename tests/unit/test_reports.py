"""HTML reports from recorded run directories (tests/fixtures, written by real runs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rabbitscale.cli.main import main
from rabbitscale.core.rundir import RunDirError
from rabbitscale.reports.compare import compare
from rabbitscale.reports.report import build
from rabbitscale.results.rundir import load
from rabbitscale.results.summary import Summary
from tests.support import require_tool

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_burst", d)
    cfg = json.loads((d / "config.json").read_text())
    # secrets a careless run directory could hold: none may reach the page
    cfg["rabbitmq"]["password"] = "pw-7f3a9c-do-not-show"
    cfg["options"]["api_secret"] = "sec-51d2e8-do-not-show"
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_report_sections_charts_and_no_secrets(run_dir):
    out = build(run_dir).path
    html = out.read_text()
    for section in ("verdict", "targets", "charts", "model", "config"):
        assert f'<section id="{section}">' in html
    assert "Verdict: PASS" in html and "burst_2_absorbed" in html
    imgs = re.findall(r'<img alt="([^"]+)" title="[^"]+" src="([^"]+)"', html)
    not_drawn = re.findall(r'<p class="muted">([^:<]+): zero throughout', html)
    assert len(imgs) + len(not_drawn) == 9 and len(imgs) >= 5, (imgs, not_drawn)
    assert set(not_drawn) <= {"Queue wait", "Processing", "Oldest message age", "Queue depth"}
    assert all(src.startswith("data:image/png;base64,") and len(src) > 2000 for _, src in imgs)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched
    assert "pw-7f3a9c-do-not-show" not in html and "sec-51d2e8-do-not-show" not in html
    assert "password&#34;: &#34;***" in html  # masked, and HTML-escaped by jinja2
    report = json.loads((run_dir / "report.json").read_text())
    model = report["model_vs_measured"]
    assert model and model[0]["queue"] == "webhook-delivery" and model[0]["servers"] == 225


def test_baseline_comparison_flags_regressions(run_dir, tmp_path):
    base = FIXTURES / "run_burst_baseline"
    out = build(run_dir, base, tmp_path / "cmp.html").path
    html = out.read_text()
    assert '<section id="baseline">' in html and "REGRESSION" in html
    deltas = json.loads((tmp_path / "report.json").read_text())["deltas"]
    by = {d["metric"]: d for d in deltas}
    # the same run against itself: nothing regresses
    same = compare(load(run_dir).summary, load(run_dir).summary)
    assert not any(d.regression for d in same)
    assert by["lost"]["regression"] is False
    # a synthetic regression: 3x the p99 and a lost message
    s = json.loads((run_dir / "summary.json").read_text())
    worse = json.loads(json.dumps(s))
    worse["ledger"]["lost"] = 1
    e2e = worse["measured"]["latency_ms"]["webhook-delivery"]["e2e"]
    e2e["p99_ms"] = s["measured"]["latency_ms"]["webhook-delivery"]["e2e"]["p99_ms"] * 3
    flagged = {d.metric for d in compare(Summary.model_validate(worse),
                                         Summary.model_validate(s)) if d.regression}
    assert {"lost", "webhook-delivery.e2e.p99_ms"} <= flagged


def test_missing_or_incomplete_run_dir_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    d = tmp_path / "partial"
    shutil.copytree(FIXTURES / "run_burst", d)
    (d / "broker_node.csv").unlink()
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert "missing broker_node.csv" in err and err.count("\n") == 1
    (d / "broker_node.csv").write_text("garbage\n\x00\x01")
    with pytest.raises(RunDirError):
        load(d)
    (d / "summary.json").write_text("{not json")
    assert main(["report", str(d)]) == 2


def test_headless_chromium_renders_the_page(run_dir, tmp_path):
    chromium = require_tool("chromium")
    out = build(run_dir).path
    png = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={png}", out.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables, charts: not a blank page
    # the green verdict banner is there, near the top
    top = img.crop((0, 0, 1200, 300))
    assert any(g > 100 and r < 80 and b < 80 for _, (r, g, b) in top.getcolors(1 << 20))


def _layout(chromium: str, page: Path, width: int, tmp_path: Path) -> tuple[int, int]:
    """(document scrollWidth, window innerWidth) of the page in headless Chromium at
    ``width`` px. Headless windows are at least 500 px wide, so the page goes in an iframe of
    that width, measured by a script of the host page that writes the figures into the DOM
    Chromium dumps."""
    host = tmp_path / f"host-{width}.html"
    host.write_text(
        f'<html><body style="margin:0"><iframe id="f" src="{page.as_uri()}" '
        f'style="border:0;width:{width}px;height:900px"></iframe><script>'
        "document.getElementById('f').onload = function () {"
        "  var d = this.contentDocument;"
        "  document.body.setAttribute('data-layout',"
        "    d.documentElement.scrollWidth + ' ' + this.contentWindow.innerWidth);"
        "};</script></body></html>")
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync",
                           "--allow-file-access-from-files", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1600,1000",
                           "--virtual-time-budget=5000", "--dump-dom", host.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)
    import re

    m = re.search(r'data-layout="(\d+) (\d+)"', done.stdout)
    assert m, done.stdout[-500:]
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("width", [1400, 390])
def test_the_report_fits_the_page(run_dir, tmp_path, width):
    """No horizontal scrolling on a desktop or a phone: wide tables scroll inside their own
    box, the ledger wraps as a grid, charts share a grid."""
    chromium = require_tool("chromium")
    page = build(run_dir).path
    scroll, inner = _layout(chromium, page, width, tmp_path)
    assert inner == width and scroll <= inner, (scroll, inner)


def test_the_top_of_the_report_has_the_figures(run_dir):
    html = build(run_dir).path.read_text()
    top = html[:html.index('id="targets"')]
    for label in ("verdict", "achieved rate", "e2e p99", "lost"):
        assert f'<div class="label">{label}' in top, label
    assert 'class="ledger"' in html and "<th>published</th>" not in html
