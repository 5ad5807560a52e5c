"""The layering rule (pyproject's import-linter contract) holds, and the check can fail: a copy
of the package with one deliberate upward import is rejected. Every import uses the one
namespace, never a bare top-level folder name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = str(Path(sys.executable).with_name("lint-imports"))
FOLDERS = ("core", "harness", "scenarios", "capacity", "reports")


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_layer_contract_is_kept():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy = tmp_path / "src" / "rabbitscale"
    shutil.copytree(ROOT / "rabbitscale", copy, symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    units = copy / "core" / "units.py"
    units.write_text(units.read_text() + "\nfrom rabbitscale.scenarios import slo  # upward\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = _lint(tmp_path, pythonpath=tmp_path / "src")
    assert done.returncode != 0
    assert "rabbitscale.core.units -> rabbitscale.scenarios.slo" in done.stdout


def test_no_bare_top_level_imports():
    bare = re.compile(rf"^\s*(from|import)\s+({'|'.join(FOLDERS)})(\.|\s|$)", re.M)
    offenders = []
    for folder in (*FOLDERS, "rabbitscale", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if bare.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"import these through rabbitscale.*: {offenders}"


def test_run_processes_never_import_locust():
    """Locust monkey-patches the process for gevent when imported: the asyncio processes
    (run, target run, stack, find-max) must reach it only through a subprocess."""
    code = ("import sys, rabbitscale.cli, rabbitscale.scenarios.run, rabbitscale.scenarios.target, "
            "rabbitscale.find_max, rabbitscale.harness.stack; "
            "bad = [m for m in ('locust', 'gevent') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
