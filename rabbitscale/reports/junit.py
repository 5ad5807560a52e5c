"""JUnit XML of a run: one test case per SLO check (and, against a baseline, per compared
metric), so a CI system shows which target failed without anyone reading a terminal.

The Ant/Surefire format that Jenkins, GitLab CI and GitHub's test-report actions read
(tests/fixtures/junit/junit-10.xsd checks it): a failed check is a ``<failure>`` whose message
says target and measured value, a check that could not be made is ``<skipped>``, a WARN passes
with its detail in ``<system-out>``; the run's verdict and targets are suite properties.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rabbitscale.core import rundir
from rabbitscale.core.errors import BadInput
from rabbitscale.core.verdicts import FAIL, INVALID, SKIP
from rabbitscale.results.check import Check
from rabbitscale.results.summary import read as read_summary


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _suite(name: str, cases: list[ET.Element], props: dict[str, Any], timestamp: float,
           duration_s: float) -> ET.Element:
    failures = sum(c.find("failure") is not None for c in cases)
    skipped = sum(c.find("skipped") is not None for c in cases)
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(len(cases)), "failures": str(failures),
        "errors": str(sum(c.find("error") is not None for c in cases)),
        "skipped": str(skipped), "time": _seconds(duration_s),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)),
        "hostname": socket.gethostname()})
    properties = ET.SubElement(suite, "properties")
    for key, value in props.items():
        ET.SubElement(properties, "property", {"name": key, "value": str(value)})
    suite.extend(cases)
    return suite


def check_case(classname: str, check: Check) -> ET.Element:
    case = ET.Element("testcase", {"classname": classname, "name": check.name, "time": "0"})
    text = (f"target {check.target}, measured {check.measured}, verdict {check.verdict}"
            + (f": {check.detail}" if check.detail else ""))
    if check.verdict == FAIL:
        failure = ET.SubElement(case, "failure", {
            "type": "SLO", "message": f"{check.name}: measured {check.measured}, "
                                      f"target {check.target}"})
        failure.text = text
    elif check.verdict == INVALID:  # the measurement, not the system: an <error>
        ET.SubElement(case, "error", {
            "type": "INVALID", "message": f"{check.name}: measured {check.measured}, "
                                          f"bound {check.target}: the run is invalid"}
                      ).text = text
    elif check.verdict == SKIP:
        ET.SubElement(case, "skipped", {"message": check.detail or "not measured"})
    ET.SubElement(case, "system-out").text = text
    return case


def delta_case(classname: str, delta: dict[str, Any]) -> ET.Element:
    case = ET.Element("testcase", {"classname": classname, "name": delta["metric"],
                                   "time": "0"})
    text = (f"baseline {delta['baseline']}, current {delta['current']}, change "
            f"{delta.get('change_pct')}% ({delta.get('better')} is better)")
    if delta.get("regression"):
        ET.SubElement(case, "failure", {"type": "regression",
                                        "message": f"{delta['metric']}: {text}"}).text = text
    ET.SubElement(case, "system-out").text = text
    return case


def build(run_dir: str | Path, deltas: list[dict[str, Any]] | None = None,
          baseline: str = "") -> ET.ElementTree:
    p = Path(run_dir)
    s = read_summary(p / rundir.SUMMARY)
    run, scenario = s.run or p.name, s.scenario
    started = s.started_at or time.time()
    duration = s.duration_s
    props = {"run": run, "scenario": scenario, "verdict": s.verdict,
             "instances": s.instances, **{
                 f"target.{k}": v for k, v in s.targets.model_dump().items()
                 if not isinstance(v, dict | list)}}
    suites = ET.Element("testsuites", {"name": f"rabbitscale {run}"})
    checks = [check_case(f"rabbitscale.slo.{scenario}", c) for c in s.checks]
    suites.append(_suite(f"rabbitscale.{scenario}.{run}", checks, props, started, duration))
    if deltas is not None:
        cases = [delta_case(f"rabbitscale.baseline.{scenario}", d) for d in deltas]
        suites.append(_suite(f"rabbitscale.baseline.{run}", cases,
                             {"run": run, "baseline": baseline}, started, 0.0))
    all_cases = suites.iter("testcase")
    cases_list = list(all_cases)
    suites.set("tests", str(len(cases_list)))
    suites.set("failures", str(sum(c.find("failure") is not None for c in cases_list)))
    suites.set("errors", str(sum(c.find("error") is not None for c in cases_list)))
    suites.set("time", _seconds(duration))
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(path: str | Path, run_dir: str | Path,
                deltas: list[dict[str, Any]] | None = None, baseline: str = "") -> Path:
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        build(run_dir, deltas, baseline).write(out, encoding="UTF-8", xml_declaration=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot write the JUnit report: {exc.strerror or exc}") \
            from None
    return out
