"""The run folder of ``fedledger demo``: arguments checked before the disk is touched (the folder itself is
replaced only as :mod:`fedledger.experiments.run_folder` allows)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from fedledger.experiments.run_folder import refuse_foreign

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
