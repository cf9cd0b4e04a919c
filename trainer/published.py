"""A published model card used as a user would: loaded for inference from its folder alone, and re-scored.

:func:`load_published` takes the base model by the name ``provenance.json`` records (the built-in ``tiny-bert`` and
MiniLM through this project's loaders, anything else from a local folder the caller names), refuses it unless its
weights hash to the card's ``base_model_sha256``, and puts the ``adapter/`` folder on it with peft's own loader.
:func:`score_card` writes the run's held-out rows in the card's recorded input format
(``input_format.loader``/``options``, split as ``training.held_out`` records) and scores the adapter on them, so a
card whose text format, base model or adapter is not what was trained shows in its metrics. Nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.trainer.data import DataError, TextDataset, load_text, train_test_split
from fedledger.trainer.models import (
    MINILM_ALIASES,
    TINY_BERT,
    ModelLoadError,
    base_model_sha256,
    load_model,
    minilm_path,
    tiny_model,
)
from fedledger.trainer.provenance import ADAPTER_DIR, PROVENANCE

__all__ = ["CardError", "Published", "card_folder", "card_metrics", "held_out_rows", "load_published", "score_card"]

#: The metrics a re-score compares with the card's: all the held-out metrics the ledger committed with the final
#: model. Accuracy alone misses a wrong format on a model that predicts one class (same accuracy, other loss).
COMPARED = ("accuracy", "precision", "recall", "f1", "loss", "n")
#: Decimals the card's metrics are rounded to (``run_federation``'s ``evaluate_state``).
DECIMALS = 6


class CardError(ValueError):
    """The card cannot be loaded or scored as it is; the message (one line) says why and what to do."""


@dataclass(frozen=True)
class Published:
    """A card's adapter on its base model, ready for inference, with the card's provenance record."""

    model: Any
    tokenizer: Any
    record: dict[str, Any]
    card_dir: Path


def card_folder(path: Path | str) -> Path:
    """The card folder of ``path``: a run folder (its ``model/``) or the card folder itself."""
    path = Path(path)
    for folder in (path / "model", path):
        if (folder / PROVENANCE).is_file():
            return folder
    raise CardError(f"{path} holds no model card ({PROVENANCE}); give a finished run folder or its model/ folder")


def _read_record(card_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((card_dir / PROVENANCE).read_text())
    except (OSError, ValueError) as exc:
        raise CardError(
            f"{card_dir / PROVENANCE} cannot be read ({exc}); re-run the demo or restore the card"
        ) from None


def _base_model(name: str, *, path: Path | None, num_labels: int, seed: int) -> tuple[Any, Any]:
    try:
        if path is not None:
            return load_model(path, num_labels=num_labels, seed=seed)
        if name in (TINY_BERT, "tiny-bert"):
            return tiny_model("bert", num_labels=num_labels, seed=seed)
        if name.lower() in MINILM_ALIASES:
            return load_model(minilm_path(), num_labels=num_labels, seed=seed)
        if Path(name).is_dir():
            return load_model(name, num_labels=num_labels, seed=seed)
    except ModelLoadError as exc:
        raise CardError(f"the base model cannot be loaded: {str(exc).splitlines()[0]}") from None
    raise CardError(
        f"the card's base model {name!r} is not built in and no such folder; pass its local Hugging Face folder "
        "with --base-model"
    )


def load_published(card_dir: Path | str, *, base_model: Path | str | None = None) -> Published:
    """The card's adapter on its base model (``base_model``: a local folder holding it, for a base model that is
    not built in). Refuses (:class:`CardError`) a base model whose weights are not the card's."""
    card_dir = card_folder(card_dir)
    record = _read_record(card_dir)
    name, recorded = record.get("base_model"), record.get("base_model_sha256")
    if not isinstance(name, str) or not isinstance(recorded, str):
        raise CardError(f"{PROVENANCE} records no base model and weights hash (a run before issue 12); re-run it")
    labels = (record.get("input_format") or {}).get("labels") or []
    # the seed initialises the new classification head, which the hash covers; runs that do not record it used 0
    seed = int((record.get("training") or {}).get("base_model_seed") or 0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # loaders are offline anyway; keep transformers from probing
    model, tokenizer = _base_model(
        name, path=None if base_model is None else Path(base_model), num_labels=len(labels) or 2, seed=seed
    )
    found = base_model_sha256(model)
    if found != recorded:
        given = name if base_model is None else str(base_model)
        raise CardError(
            f"base model {given} has weights sha256 {found[:16]}…, the card's is {recorded[:16]}…: not the model the "
            "adapter was trained on; pass that model with --base-model"
        )
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(model, str(card_dir / ADAPTER_DIR))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CardError(f"{card_dir / ADAPTER_DIR} is not a peft adapter for this base model ({exc})") from None
    model.eval()
    return Published(model, tokenizer, record, card_dir)


def held_out_rows(record: Mapping[str, Any]) -> TextDataset:
    """The run's held-out rows, written as the card's ``input_format`` says."""
    text = record.get("input_format") or {}
    split = (record.get("training") or {}).get("held_out")
    if "loader" not in text:
        raise CardError(
            f"{PROVENANCE} input_format names no text loader (a user's own table, or a run before `fedledger score`); "
            "score the adapter on your own rows with fedledger.trainer.published.load_published"
        )
    if not split:
        raise CardError(f"{PROVENANCE} records no held-out split (training.held_out); re-run to score it")
    try:
        rows = load_text(text["loader"], text.get("options") or {})
        return train_test_split(
            rows, test_fraction=split["test_fraction"], seed=split["seed"], stratify=split.get("stratified", True)
        )[1]
    except (DataError, TypeError) as exc:
        raise CardError(f"{PROVENANCE} input_format cannot be rebuilt: {exc}") from None


def card_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The held-out metrics the card (and the ledger) records for its final adapter."""
    last = next((r for r in reversed(record.get("rounds") or []) if r.get("model") is not None), None)
    if last is None or not last.get("metrics"):
        raise CardError(f"{PROVENANCE} records no committed model with metrics; nothing to compare with")
    return dict(last["metrics"])


def score_card(published: Published) -> dict[str, float]:
    """The adapter's metrics on the run's held-out rows, rounded as the card rounds them."""
    from fedledger.trainer.evaluate import evaluate

    rows = held_out_rows(published.record)
    text = published.record["input_format"]
    metrics = evaluate(
        published.model,
        rows,
        tokenizer=published.tokenizer,
        max_length=int(text["max_length"]),
        num_labels=rows.num_labels,
    )
    return {k: round(float(v), DECIMALS) for k, v in metrics.items()}
