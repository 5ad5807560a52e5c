"""The package's shape holds: the layer and Locust contracts (pyproject's import-linter
contracts) are kept and can fail; every module lives in a real folder and has one name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rabbitscale"
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _broken_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package with ``line`` appended to ``module``."""
    copy = tmp_path / "src" / "rabbitscale"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return _lint(tmp_path, pythonpath=tmp_path / "src")


def test_the_contracts_are_kept():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    done = _broken_copy(tmp_path, "core/units.py", "from rabbitscale.judge import slo")
    assert done.returncode != 0
    assert "rabbitscale.core.units -> rabbitscale.judge.slo" in done.stdout


def test_the_capacity_model_may_not_use_the_reference_system(tmp_path):
    done = _broken_copy(tmp_path, "capacity/model.py", "from rabbitscale.harness import stack")
    assert done.returncode != 0 and "rabbitscale.capacity.model -> rabbitscale.harness" \
        in done.stdout


def test_locust_outside_the_locustfiles_breaks_the_contract(tmp_path):
    done = _broken_copy(tmp_path, "engine/stack.py", "import gevent")
    assert done.returncode != 0 and "rabbitscale.engine.stack -> gevent" in done.stdout


def test_the_locust_contract_names_every_other_module():
    """Its source list is explicit (import-linter has no "all but"): a new module outside the
    locustfiles must be covered by it."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    sources = next(c for c in contracts if c["type"] == "forbidden")["source_modules"]
    uncovered = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        if ".locustfiles" in name or name in ("rabbitscale", "rabbitscale.__main__",
                                               "rabbitscale.scenarios"):
            continue
        if not any(name == s or name.startswith(s + ".") for s in sources):
            uncovered.append(name)
    assert not uncovered, f"add to the forbidden contract in pyproject.toml: {uncovered}"


def test_every_module_lives_in_a_real_folder():
    links = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True,
                           text=True).stdout.splitlines()
    assert not [x for x in links if x.startswith("120000")], "symbolic links in the repository"
    assert not any(p.is_symlink() for p in PACKAGE.rglob("*"))


def test_no_module_is_importable_under_a_second_name():
    """From the repository root (where Locust, pytest and `python -m` put the working
    directory first on sys.path) each module has one name: rabbitscale.X.Y, never X.Y."""
    code = ("import importlib.util, sys, pathlib; sys.path.insert(0, '.'); bad = []\n"
            "for p in pathlib.Path('rabbitscale').rglob('*.py'):\n"
            "    parts = p.with_suffix('').parts[1:]\n"
            "    for i in range(len(parts)):\n"
            "        name = '.'.join(x for x in parts[i:] if x != '__init__')\n"
            "        if not name: continue\n"
            "        try: spec = importlib.util.find_spec(name)\n"
            "        except (ImportError, ValueError): spec = None\n"
            "        same = spec and spec.origin and pathlib.Path(spec.origin).resolve()\n"
            "        if same == p.resolve(): bad.append(name)\n"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_runtime_dependency_is_imported_and_every_import_declared():
    """pyproject's dependencies are exactly what the package imports (a dependency's own
    dependency, used through it, named with it); test-only packages stay in `dev`."""
    import ast
    import re
    import sys
    import tomllib

    declared = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower()
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())
                ["project"]["dependencies"]}
    import_name = {"aio-pika": "aio_pika", "hdrhistogram": "hdrh", "tomli-w": "tomli_w",
                   "prometheus-client": "prometheus_client"}
    through = {"aiormq": "aio-pika", "gevent": "locust", "yarl": "aiohttp"}
    imported: set[str] = set()
    for path in (ROOT / "rabbitscale").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported
                   if m not in sys.stdlib_module_names and m not in ("rabbitscale", "hdrh")
                   } | ({"hdrh"} & imported)
    wanted = {import_name.get(d, d) for d in declared}
    undeclared = {m for m in third_party if m not in wanted and through.get(m) not in declared}
    unused = wanted - third_party
    assert not undeclared, f"imported, not in dependencies: {sorted(undeclared)}"
    assert not unused, f"in dependencies, never imported: {sorted(unused)}"
