"""``fedledger score <run or card>``: does a user following the model card get the card's scores?

The published adapter is loaded from the card folder alone (base model by its recorded name and weights hash,
``adapter/`` with peft), the run's held-out rows are written in the card's recorded text format, and the metrics
are compared with the card's. Exit 0 when every metric the card records equals the re-scored one (to the card's 6
decimals: the same weights, rows and batches give the same forward pass on CPU), 1 when one differs.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from fedledger.cli.output import Outcome, add_json_option

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score",
        help="re-score a published adapter on its run's held-out rows and compare with its model card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("card", type=Path, help="run folder (e.g. demo-out) or its model card folder (demo-out/model)")
    parser.add_argument(
        "--base-model",
        type=Path,
        help="local Hugging Face folder of the card's base model, when it is not built in (tiny-bert, MiniLM)",
    )
    add_json_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> Outcome:
    # CardError is a ValueError: main() reports it as one line, exit 2, before anything is scored.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight-loading bar, on every load
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")  # says nothing to a user
    try:
        from fedledger.trainer.published import COMPARED, card_metrics, load_published, score_card
    except ImportError as exc:
        raise ValueError(f"fedledger score needs the training stack ({exc}); pip install 'fedledger[train]'") from exc

    published = load_published(args.card, base_model=args.base_model)
    card = card_metrics(published.record)
    scored = score_card(published)
    differs = [k for k in COMPARED if k in card and card[k] != scored.get(k)]
    text = published.record["input_format"]
    print(f"card:      {_line(card)}  ({published.card_dir / 'provenance.json'})")
    print(
        f"re-scored: {_line(scored)}  ({published.record['base_model']} + adapter/, text "
        f"{text['loader']}{_options(text.get('options') or {})})"
    )
    if differs:
        print(f"MISMATCH: {', '.join(differs)} differ from the card; the adapter was fed other text or weights")
    else:
        print("OK: the published adapter reproduces the card's held-out metrics")
    summary = {
        "card": str(published.card_dir),
        "card_metrics": card,
        "metrics": scored,
        "differs": differs,
    }
    return Outcome(EXIT_FAILED if differs else EXIT_OK, summary)


def _line(metrics: dict[str, float]) -> str:
    rest = ", ".join(f"{k} {metrics[k]:.6f}" for k in ("loss", "f1") if k in metrics)
    return f"accuracy {metrics.get('accuracy', float('nan')):.6f} on {int(metrics.get('n', 0))} held-out rows ({rest})"


def _options(options: dict[str, object]) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) + ")"
