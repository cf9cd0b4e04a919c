"""The starting model's scores, kept beside the model card: the report's round 0.

The ledger holds the metrics committed with each aggregate, but RegisterGenesisModel takes none, so the run
folder keeps what the genesis adapter scored on the held-out set before round 1, naming the model it measured.
No torch here: the report reads it on machines without the training stack.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BASELINE = "baseline.json"


def write_baseline(card_dir: Path, genesis: str, metrics: Mapping[str, float]) -> Path:
    target = card_dir / BASELINE
    target.write_text(json.dumps({"model": genesis, "metrics": dict(metrics)}, indent=2, sort_keys=True) + "\n")
    return target


def baseline_metrics(record: Mapping[str, Any] | None, genesis: str | None) -> dict[str, float]:
    """The recorded scores if they are of ``genesis`` (the ledger's starting model), else none."""
    if not record or genesis is None or record.get("model") != genesis:
        return {}
    return {k: float(v) for k, v in (record.get("metrics") or {}).items() if isinstance(v, int | float)}
