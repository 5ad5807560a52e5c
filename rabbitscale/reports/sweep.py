"""The HTML page of a sweep: the latency curve, measured points over the model's line, the
knee and the headroom at the SLO, and the verdict on the model (one self-contained file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from rabbitscale.reports import charts

TEMPLATES = Path(__file__).parent / "templates"
SWEEP_HTML = "sweep.html"


def write_report(doc: dict[str, Any], out_dir: Path) -> Path:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    within = doc["model"]["within"]
    page = env.get_template("sweep.html.j2").render(
        doc=doc, chart=charts.latency_curve(doc),
        verdict="INVALID" if within is None else "PASS" if within else "FAIL")
    path = out_dir / SWEEP_HTML
    path.write_text(page, encoding="utf-8")
    return path
