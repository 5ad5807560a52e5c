"""A built wheel installs under one import name and works from any directory: no child
process needs a path patch. Dependencies come from this test environment (a .pth line), so
the test checks our package, not PyPI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support import assert_system_verdict, plan_exit

# one wheel and venv for the module, on one xdist worker
pytestmark = pytest.mark.xdist_group("packaging")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300, cwd=tmp)
    wheel = next((tmp / "dist").glob("rabbitscale-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
    assert tops == {"rabbitscale", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}, tops
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the test environment's packages (locust, aio-pika, ...), not its editable rabbitscale:
    # .pth files inside a directory added this way are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("CONDUITLLM__RABBITMQ__HOST", "127.0.0.1")
    return env


def test_the_installed_package_is_the_wheel(fresh_venv, tmp_path):
    done = subprocess.run([str(fresh_venv / "bin" / "python"), "-c",
                           "import rabbitscale.harness.stack as m; print(m.__file__)"],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(fresh_venv)), done.stdout


def test_plan_from_another_directory(fresh_venv, tmp_path):
    done = subprocess.run([str(fresh_venv / "bin" / "rabbitscale"), "plan"],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60)
    assert done.returncode == plan_exit(done.stdout), done.stderr
    assert "capacity plan: profile conduit" in done.stdout


def test_a_short_run_from_another_directory(fresh_venv, tmp_path):
    """Consumers and Locust start as `python -m rabbitscale...` from the installed wheel."""
    done = subprocess.run([str(fresh_venv / "bin" / "rabbitscale"), "run", "sustained_tasks",
                           "--duration", "5s", "--instances", "1", "--out",
                           str(tmp_path / "run"), "--drain-timeout", "20s"],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=180)
    s = json.loads((tmp_path / "run" / "summary.json").read_text()) \
        if (tmp_path / "run" / "summary.json").exists() else {}
    assert_system_verdict(done.returncode, s, "PASS", done.stdout + done.stderr)
