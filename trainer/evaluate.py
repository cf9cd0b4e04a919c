"""Held-out evaluation: accuracy/precision/recall/F1 for classification, perplexity for causal LMs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedledger.trainer.data import TextDataset, to_tensor_dataset
from fedledger.trainer.models import Task
from fedledger.trainer.privacy import per_sample_loss

__all__ = ["classification_metrics", "evaluate", "evaluate_causal_lm", "evaluate_classification"]


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, num_labels: int = 2
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 (scikit-learn).

    Binary tasks report the positive class 1 (``average="binary"``); more classes use macro averages.
    Undefined ratios (no predicted positives) count as 0.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    average = "binary" if num_labels == 2 else "macro"
    labels = list(range(num_labels)) if num_labels > 2 else None
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true,
        y_pred,
        average=average,
        labels=labels,
        zero_division=0,  # pyright: ignore[reportArgumentType]
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def _loader(dataset: Dataset[Any], batch_size: int) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


@torch.no_grad()
def evaluate_classification(
    model: nn.Module, dataset: Dataset[Any], *, num_labels: int = 2, batch_size: int = 64, device: str = "cpu"
) -> dict[str, float]:
    """Metrics of :func:`classification_metrics` plus mean cross-entropy ``loss`` and sample count ``n``."""
    was_training = model.training
    model.eval()
    loss_fn = per_sample_loss("sum")
    preds: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    total_loss = 0.0
    for input_ids, mask, labels in _loader(dataset, batch_size):
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        total_loss += float(loss_fn(logits, labels.to(device)))
        preds.append(logits.argmax(dim=-1).cpu().numpy())
        truth.append(labels.numpy())
    model.train(was_training)
    y_true, y_pred = np.concatenate(truth), np.concatenate(preds)
    metrics = classification_metrics(y_true, y_pred, num_labels=num_labels)
    metrics["loss"] = total_loss / len(y_true)
    metrics["n"] = float(len(y_true))
    return metrics


@torch.no_grad()
def evaluate_causal_lm(
    model: nn.Module, dataset: Dataset[Any], *, batch_size: int = 32, device: str = "cpu"
) -> dict[str, float]:
    """Token-level mean next-token cross-entropy ``loss``, ``perplexity = exp(loss)`` and ``tokens``."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for input_ids, mask, labels in _loader(dataset, batch_size):
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits[:, :-1, :]
        target = labels[:, 1:].to(device)
        total += float(
            nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
        )
        tokens += int((target != -100).sum())
    model.train(was_training)
    loss = total / max(tokens, 1)
    return {"loss": loss, "perplexity": float(math.exp(min(loss, 700.0))), "tokens": float(tokens)}


def evaluate(
    model: nn.Module,
    data: TextDataset | Dataset[Any],
    *,
    task: Task = "classification",
    tokenizer: Any = None,
    max_length: int = 128,
    num_labels: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, float]:
    """Evaluate on a :class:`TextDataset` (tokenised with ``tokenizer``) or a tokenised ``TensorDataset``."""
    if isinstance(data, TextDataset):
        if tokenizer is None:
            raise ValueError("evaluate() got a TextDataset but no tokenizer; pass tokenizer=.")
        labels = num_labels if num_labels is not None else data.num_labels
        dataset = to_tensor_dataset(data, tokenizer, task=task, max_length=max_length)
    else:
        labels = num_labels if num_labels is not None else 2
        dataset = data
    if task == "classification":
        return evaluate_classification(model, dataset, num_labels=labels, batch_size=batch_size, device=device)
    return evaluate_causal_lm(model, dataset, batch_size=batch_size, device=device)
