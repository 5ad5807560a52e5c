"""Where a command writes, checked once, before any work: a directory that is new or empty
(or ``--force``), never ``/``, and writable; a file that is not a directory and not one of a
run directory's own files (a report or a calibration never overwrites the summary it read).
Every refusal is one ``BadInput`` line (exit 2) naming the flag."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rabbitscale.core import rundir
from rabbitscale.core.errors import BadInput


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path("/")


def _writable_from(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` is a directory we may create files in."""
    base = _existing_ancestor(path.parent if not path.exists() else path)
    if not base.is_dir():
        raise BadInput(f"{flag}: {str(path)!r}: {str(base)!r} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise BadInput(f"{flag}: {str(path)!r}: {str(base)!r} is not writable")


def new_dir(path: Path, flag: str = "--out", force: bool = False) -> Path:
    """``path`` as a directory a command may fill: new, or empty, or ``force`` (the files a
    run writes are removed first, so none of the last run's is left beside the new ones)."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise BadInput(f"{flag}: {str(path)!r} is the filesystem's root: give a directory "
                       f"of its own")
    if path.exists() and not path.is_dir():
        raise BadInput(f"{flag}: {str(path)!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise BadInput(f"{flag}: {str(path)!r} is not empty (its files would be "
                           f"overwritten): give a new directory, or --force to replace a "
                           f"run's files there")
        _clear_run_files(path)
    _writable_from(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{flag}: cannot create {str(path)!r}: {exc.strerror}") from None
    return path


def _clear_run_files(path: Path) -> None:
    for name in rundir.OWN_NAMES:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def new_file(path: Path, flag: str) -> Path:
    """``path`` as a file a command may write: not a directory, its directory creatable, and
    not one of the files of the run directory it is in (``report RUN --out RUN/summary.json``
    would overwrite what the report is made from)."""
    if path.is_dir():
        raise BadInput(f"{flag}: {str(path)!r} is a directory: give a file name")
    if (path.parent / rundir.SUMMARY).exists() and path.name in rundir.OWN_NAMES and \
            path.name not in (rundir.REPORT_HTML, rundir.JUNIT_XML):
        raise BadInput(f"{flag}: {str(path)!r} is a file of the run directory "
                       f"{str(path.parent)!r}: write elsewhere")
    _writable_from(path, flag)
    return path
