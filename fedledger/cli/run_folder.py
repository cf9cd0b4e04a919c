"""The run folder of ``fedledger demo``: arguments checked before the disk is touched, and only a previous
fedledger run is ever replaced.

A run folder carries a marker file (:data:`MARKER`) written when the folder is created. ``--out`` may name a
missing path, an empty folder, or a folder with that marker; anything else (a file, a symlink, a folder of
the user's) is refused without being touched.

A new run is built beside ``--out`` in a marked staging folder and swapped in only once it finished
(:func:`new_run`): a run that fails or is interrupted leaves the previous run as it was. Building elsewhere and
renaming works because every path a run records is relative to its run folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedledger import __version__

#: The file that makes a folder provably a fedledger run (and so replaceable by the next run).
MARKER = ".fedledger-run"
BUILT_IN_MODELS = ("minilm", "tiny-bert")

logger = logging.getLogger(__name__)


def check_demo_arguments(args: argparse.Namespace) -> None:
    """Refuse values the demo would otherwise ignore or misread, before anything is written (ValueError,
    one line: the cause and what to do)."""
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}")
    if args.members < 2:
        raise ValueError(f"--members must be at least 2 (the last one plays --attack), got {args.members}")
    if not math.isfinite(args.epsilon) or args.epsilon < 0:
        raise ValueError(f"--epsilon must be 0 (no DP) or a positive ε, got {args.epsilon}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    if args.learning_rate is not None and not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.synthetic and args.ledger != "embedded":
        raise ValueError("--synthetic runs on the embedded ledger only; drop --ledger fabric or --synthetic")
    if not args.synthetic and args.model not in BUILT_IN_MODELS and not Path(args.model).is_dir():
        raise ValueError(
            f"--model {args.model}: not {' or '.join(BUILT_IN_MODELS)} and no such folder; "
            "give a local Hugging Face model folder"
        )
    refuse_foreign(args.out)


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
