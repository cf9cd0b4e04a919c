"""Fixtures the ML studies share (robustness, privacy-utility, trust, overhead): the offline model set-up, the
data set, a held-out evaluator, a fresh embedded ledger to connect to, and stored commands in today's form."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedledger.sdk.client import FedLedgerClient
    from fedledger.sdk.connection import LedgerLocation
    from fedledger.trainer.data import TextDataset

Evaluator = Callable[[Mapping[str, Any]], dict[str, float]]
#: ``(mspid, user name, admin?) -> client``, what :func:`fedledger.experiments.federation.run_federation` takes.
Connect = Callable[[str, str, bool], "FedLedgerClient"]


def offline() -> None:
    """Models and tokenizers come from the local cache only (the studies never download)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def breast_cancer() -> TextDataset:
    """The studies' data set: breast-cancer Wisconsin as text, the demo's ``levels`` style."""
    from fedledger.trainer.data import load_breast_cancer_text

    return load_breast_cancer_text(style="levels")


def held_out_evaluator(
    model: Any, tensors: Any, *, num_labels: int = 2, device: str = "cpu", digits: int | None = None
) -> Evaluator:
    """Metrics of a global adapter state on the held-out ``tensors`` (rounded to ``digits`` when given)."""
    from fedledger.trainer.evaluate import evaluate
    from fedledger.trainer.models import set_adapter_state

    def evaluate_state(state: Mapping[str, Any]) -> dict[str, float]:
        set_adapter_state(model, state)
        metrics = evaluate(model, tensors, task="classification", num_labels=num_labels, device=device)
        return {k: round(float(v), digits) for k, v in metrics.items()} if digits is not None else metrics

    return evaluate_state


def connector(location: LedgerLocation) -> Connect:
    """``location``'s clients in the ``(mspid, name, admin)`` form the federation code takes."""
    return lambda mspid, name, admin: location.client(mspid, name, admin=admin)


@contextlib.contextmanager
def embedded_ledger(folder: Path) -> Iterator[LedgerLocation]:
    """A fresh embedded consortium in ``folder`` (created here), released from this process at the end."""
    from fedledger.chaincode.embedded.bootstrap import create_consortium
    from fedledger.sdk.connection import LedgerLocation
    from fedledger.sdk.embedded import forget_ledger

    consortium = create_consortium(folder)
    try:
        yield LedgerLocation("embedded", folder)
    finally:
        forget_ledger(consortium.ledger_dir)
