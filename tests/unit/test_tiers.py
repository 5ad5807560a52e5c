"""The e2e tier relies on pytest-xdist's ``--dist loadgroup`` to keep an ``xdist_group`` on one
worker (the validation cases one at a time, the exclusive tests beside the nemesis only).
pytest 9.2 with pytest-xdist 3.8 ignored the mark without a word (pytest-dev/pytest-xdist#1386):
this runs a small suite the way the Makefile runs the e2e tier and checks the groups held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SUITE = '''
import json, os, time
from pathlib import Path

import pytest

def _record(name):
    time.sleep(0.3)  # long enough for the other worker to take work meanwhile
    out = Path(os.environ["TIERS_OUT"]) / f"{name}.json"
    out.write_text(json.dumps(os.environ.get("PYTEST_XDIST_WORKER")))

@pytest.mark.xdist_group("one")
@pytest.mark.parametrize("i", range(3))
def test_grouped(i):
    _record(f"grouped{i}")

@pytest.mark.xdist_group("one")
def test_grouped_elsewhere():
    _record("grouped_elsewhere")

@pytest.mark.parametrize("i", range(4))
def test_free(i):
    _record(f"free{i}")
'''


def test_xdist_groups_stay_on_one_worker(tmp_path):
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist",
                           "loadgroup", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith("PYTEST_")}, "TIERS_OUT": str(out)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    workers = {p.stem: json.loads(p.read_text()) for p in Path(out).glob("*.json")}
    grouped = {w for name, w in workers.items() if name.startswith("grouped")}
    assert len(workers) == 8 and len(grouped) == 1, workers
    assert len(set(workers.values())) == 2  # the rest did spread: the suite ran two at a time
