"""Run folders that fedledger may replace: only a folder it made itself (it carries :data:`MARKER`), and only
once the new run is complete.

A run folder gets its marker when it is created. A path the user names may be missing, an empty folder, or a
folder with that marker; anything else (a file, a symlink, a folder of the user's) is refused without being
touched.

A new run is built beside the named path in a marked staging folder and swapped in only once it finished
(:func:`new_run`): a run that fails or is interrupted leaves the previous run as it was. Building elsewhere and
renaming works because every path a run records is relative to its run folder. ``fedledger demo`` and the
benchmark studies that keep a ledger (``bench/trust``) both use it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedledger import __version__

#: The file that makes a folder provably a fedledger run (and so replaceable by the next run).
MARKER = ".fedledger-run"

logger = logging.getLogger(__name__)


def is_run(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def refuse_foreign(out: Path) -> None:
    """FileExistsError unless ``out`` is missing, an empty folder, or a previous fedledger run."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a run folder; choose another --out")
    if not is_run(out) and any(out.iterdir()):
        raise FileExistsError(
            f"--out {out} is a folder that no fedledger run made (no {MARKER} in it); "
            "fedledger leaves it alone: choose another --out"
        )


def _mark(folder: Path) -> Path:
    (folder / MARKER).write_text(json.dumps({"fedledger": __version__, "created": time.time()}) + "\n")
    return folder


@contextmanager
def new_run(out: Path) -> Iterator[Path]:
    """A new run folder for ``out``: yields a marked staging folder beside it to build the run in; when the block
    finishes, the staging folder replaces ``out`` (missing, empty, or a previous fedledger run, and nothing else).
    When the block raises, the staging folder is removed and ``out`` is left exactly as it was."""
    refuse_foreign(out)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = _mark(Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.absolute().parent)))
    try:
        yield staging
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # made above and marked: ours
        raise


def _swap(staging: Path, out: Path) -> None:
    refuse_foreign(out)  # again: the user may have put something there while the run was being built
    if not out.exists():
        staging.rename(out)
        return
    # Two renames on one file system: at every moment either the old or the new run is complete on disk.
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.absolute().parent))
    out.rename(retired / out.name)
    staging.rename(out)
    shutil.rmtree(retired)  # the previous run (marked, or an empty folder: refuse_foreign) inside our temp folder
    logger.info("replaced the previous run in %s", out)
