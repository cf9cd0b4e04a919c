"""The run folder of ``fedledger demo``: arguments checked before the disk is touched, and only a previous
fedledger run is ever replaced.

A run folder carries a marker file (:data:`MARKER`) written when the folder is created. ``--out`` may name a
missing path, an empty folder, or a folder with that marker; anything else (a file, a symlink, a folder of
the user's) is refused without being touched.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

from fedledger import __version__

#: The file that makes a folder provably a fedledger run (and so replaceable by the next run).
MARKER = ".fedledger-run"
BUILT_IN_MODELS = ("minilm", "tiny-bert")


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


def claim(out: Path) -> Path:
    """Create ``out`` as a new run folder, replacing a previous fedledger run there (and nothing else)."""
    refuse_foreign(out)
    if out.exists():
        shutil.rmtree(out)  # empty, or a run this tool made (refuse_foreign)
    out.mkdir(parents=True)
    (out / MARKER).write_text(json.dumps({"fedledger": __version__, "created": time.time()}) + "\n")
    return out
