"""Text classification data: the breast-cancer demo table, users' CSV/JSONL files, splits and partitions.

A :class:`TextDataset` is a list of texts with integer labels and the label names. Partitioning returns index
arrays (one per client) so that any dataset can be split the same way. Every random choice takes a ``seed``
and uses its own ``numpy.random.Generator``: the same seed gives the same split on every machine.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "BREAST_CANCER_LABELS",
    "TEXT_LOADERS",
    "DataError",
    "TextDataset",
    "load_breast_cancer_text",
    "load_table",
    "load_text",
    "partition_dirichlet",
    "partition_iid",
    "synthetic_keyword_dataset",
    "to_tensor_dataset",
    "train_test_split",
]

logger = logging.getLogger(__name__)

#: Label names of :func:`load_breast_cancer_text`; 1 = malignant is the positive class for precision/recall.
BREAST_CANCER_LABELS: tuple[str, str] = ("benign", "malignant")


class DataError(ValueError):
    """Input data is unusable; the message names the file, row or column and the fix."""


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels ``0..len(label_names)-1``."""

    texts: tuple[str, ...]
    labels: np.ndarray
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "texts", tuple(self.texts))
        if len(self.texts) != len(labels):
            raise DataError(f"{len(self.texts)} texts but {len(labels)} labels; they must be equally many.")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.label_names)):
            raise DataError(
                f"Labels must lie in 0..{len(self.label_names) - 1} for label names {self.label_names}; "
                f"got values from {labels.min()} to {labels.max()}."
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return TextDataset(tuple(self.texts[i] for i in idx), self.labels[idx], self.label_names)


_MEAN_FEATURES = 10


def load_breast_cancer_text(
    *, features: Literal["mean", "all"] = "mean", style: Literal["values", "levels"] = "values"
) -> TextDataset:
    """scikit-learn's breast-cancer Wisconsin (diagnostic) table as text rows, 569 patients.

    Each row becomes e.g. ``"radius 17.99, texture 10.38, perimeter 122.8, ..."``. ``features="mean"`` uses the
    10 "mean ..." measurements (about 60 tokens a row); ``"all"`` uses all 30 (about 200 tokens). Labels follow
    :data:`BREAST_CANCER_LABELS` (0 benign, 1 malignant: note this is the reverse of scikit-learn's target).
    The table ships inside scikit-learn; nothing is downloaded.

    ``style="levels"`` writes each measurement as its tertile in the table instead of the number ("radius
    high, texture low, ..."): words a language model reads far more easily than numbers, so it learns the
    task in fewer steps, which matters under DP-SGD's noise. The tertile cut points come from the whole
    public table.
    """
    if style not in ("values", "levels"):
        raise ValueError(
            f"The 'style' parameter of load_breast_cancer_text must be 'values' or 'levels'. Got {style!r} instead."
        )
    if features not in ("mean", "all"):
        raise ValueError(
            f"The 'features' parameter of load_breast_cancer_text must be 'mean' or 'all'. Got {features!r} instead."
        )
    from sklearn.datasets import load_breast_cancer

    bunch: Any = load_breast_cancer()  # a Bunch (its stub also allows the return_X_y tuple)
    names = [str(n) for n in bunch.feature_names]
    columns = range(_MEAN_FEATURES) if features == "mean" else range(len(names))
    cuts = np.quantile(bunch.data, [1 / 3, 2 / 3], axis=0)
    texts = []
    for row in bunch.data:
        parts = []
        for j in columns:
            label = names[j][5:] if features == "mean" and names[j].startswith("mean ") else names[j]
            if style == "levels":
                level = ("low", "medium", "high")[int(row[j] > cuts[0, j]) + int(row[j] > cuts[1, j])]
                parts.append(f"{label} {level}")
            else:
                parts.append(f"{label} {float(f'{row[j]:.4g}'):g}")
        texts.append(", ".join(parts))
    labels = 1 - np.asarray(bunch.target, dtype=np.int64)  # sklearn: 0 malignant, 1 benign
    return TextDataset(tuple(texts), labels, BREAST_CANCER_LABELS)


#: The functions that turn a public table's rows into text, by the name a model card records (``input_format.loader``,
#: with their keyword arguments as ``input_format.options``), so that a card's text format is code, not only prose.
TEXT_LOADERS: dict[str, Callable[..., TextDataset]] = {"breast_cancer_text": load_breast_cancer_text}


def load_text(loader: str, options: Mapping[str, Any]) -> TextDataset:
    """The rows of ``loader`` (a name in :data:`TEXT_LOADERS`) written as text with ``options``."""
    if loader not in TEXT_LOADERS:
        raise DataError(f"Unknown text loader {loader!r}; this fedledger knows {sorted(TEXT_LOADERS)}.")
    return TEXT_LOADERS[loader](**options)


_FILLER = [
    "the",
    "a",
    "of",
    "patient",
    "report",
    "shows",
    "normal",
    "tissue",
    "sample",
    "with",
    "and",
    "in",
    "on",
    "for",
    "scan",
    "result",
    "cell",
    "size",
    "shape",
    "texture",
    "area",
    "value",
    "measured",
    "noted",
    "by",
    "doctor",
    "clinic",
    "visit",
    "follow",
    "up",
]


def synthetic_keyword_dataset(
    num_samples: int = 200, *, keywords: Sequence[str] = ("calm", "storm"), length: int = 12, seed: int = 0
) -> TextDataset:
    """An easy synthetic task for fast tests: filler words plus the keyword of the row's class.

    Row ``i`` has a uniformly drawn label ``k`` and contains ``keywords[k]`` at a random position; the label
    names are the keywords. Even a tiny randomly initialised model learns it in a few steps.
    """
    if len(keywords) < 2:
        raise ValueError("synthetic_keyword_dataset needs at least two keywords.")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(keywords), size=num_samples)
    texts = []
    for label in labels:
        words = [str(w) for w in rng.choice(_FILLER, size=length - 1)]
        words.insert(int(rng.integers(0, length)), keywords[int(label)])
        texts.append(" ".join(words))
    return TextDataset(tuple(texts), labels, tuple(keywords))


def load_table(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
) -> TextDataset:
    """Load a user's own ``.csv`` or ``.jsonl`` file with a text column and a label column.

    Labels may be strings or integers. Without ``label_names`` the distinct labels, sorted, become the label
    names (integers keep their numeric order). With ``label_names`` every label must be one of them (or an
    index into them).
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file} does not exist. Pass the path of a .csv or .jsonl file.")
    suffix = file.suffix.lower()
    rows: list[dict[str, Any]]
    if suffix == ".csv":
        with file.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    elif suffix in (".jsonl", ".ndjson"):
        rows = []
        with file.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{file}:{lineno} is not valid JSON ({exc.msg}).") from exc
    else:
        raise DataError(f"{file} has suffix {file.suffix!r}; use .csv or .jsonl (one JSON object per line).")
    if not rows:
        raise DataError(f"{file} has no rows.")
    texts: list[str] = []
    raw: list[Any] = []
    for i, row in enumerate(rows, start=1):
        if text_column not in row or label_column not in row:
            raise DataError(
                f"{file} row {i} lacks column {text_column!r} or {label_column!r} (has {sorted(row)}). Pass "
                "text_column=/label_column= with the right names."
            )
        texts.append(str(row[text_column]))
        raw.append(row[label_column])
    labels, names = _encode_labels(raw, label_names, file)
    logger.info("loaded %d rows from %s, labels %s", len(texts), file, names)
    return TextDataset(tuple(texts), labels, names)


def _encode_labels(raw: list[Any], label_names: Sequence[str] | None, file: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    def as_int(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return None

    ints = [as_int(v) for v in raw]
    if label_names is not None:
        names = tuple(str(n) for n in label_names)
        index = {n: i for i, n in enumerate(names)}
        out = []
        for v, iv in zip(raw, ints, strict=True):
            if str(v) in index:
                out.append(index[str(v)])
            elif iv is not None and 0 <= iv < len(names):
                out.append(iv)
            else:
                raise DataError(f"{file}: label {v!r} is not one of {names}.")
        return np.asarray(out, dtype=np.int64), names
    if all(i is not None for i in ints):
        distinct = sorted({int(i) for i in ints if i is not None})
    else:
        distinct = sorted({str(v) for v in raw})
        ints = [None] * len(raw)
    if len(distinct) < 2:
        raise DataError(f"{file}: all rows have the same label {distinct}; classification needs two or more.")
    index = {v: i for i, v in enumerate(distinct)}
    labels = [index[i] if i is not None else index[str(v)] for v, i in zip(raw, ints, strict=True)]
    return np.asarray(labels, dtype=np.int64), tuple(str(d) for d in distinct)


def train_test_split(
    dataset: TextDataset, *, test_fraction: float = 0.2, seed: int = 0, stratify: bool = True
) -> tuple[TextDataset, TextDataset]:
    """Split into (train, held-out); stratified by label unless ``stratify=False``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"The 'test_fraction' parameter must be in (0, 1). Got {test_fraction!r} instead.")
    rng = np.random.default_rng(seed)
    test: list[int] = []
    groups = (
        [np.flatnonzero(dataset.labels == c) for c in range(dataset.num_labels)]
        if stratify
        else [np.arange(len(dataset))]
    )
    for group in groups:
        perm = rng.permutation(group)
        test.extend(perm[: round(len(perm) * test_fraction)].tolist())
    test_idx = np.sort(np.asarray(test, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(dataset)), test_idx)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"test_fraction={test_fraction} leaves an empty split of {len(dataset)} rows.")
    return dataset.subset(rng.permutation(train_idx)), dataset.subset(test_idx)


def partition_iid(num_samples: int, num_clients: int, *, seed: int = 0) -> list[np.ndarray]:
    """Shuffle ``0..num_samples-1`` and deal it into ``num_clients`` parts whose sizes differ by at most 1."""
    _check_clients(num_samples, num_clients)
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(perm, num_clients)]


def partition_dirichlet(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    *,
    alpha: float,
    seed: int = 0,
    min_size: int = 1,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Non-IID label-skew partition: each class is split across clients by proportions ~ Dirichlet(alpha).

    Small ``alpha`` (0.1) gives clients few classes each; large ``alpha`` (100) approaches IID. Draws are
    repeated (up to ``max_tries``) until every client has at least ``min_size`` samples.
    """
    y = np.asarray(labels, dtype=np.int64)
    _check_clients(len(y), num_clients)
    if not alpha > 0:
        raise ValueError(f"The 'alpha' parameter of partition_dirichlet must be > 0. Got {alpha!r} instead.")
    if min_size * num_clients > len(y):
        raise ValueError(f"min_size={min_size} for {num_clients} clients needs more than {len(y)} samples.")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            proportions = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(idx)).astype(np.int64)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise DataError(
        f"Could not give each of {num_clients} clients at least {min_size} samples in {max_tries} Dirichlet "
        f"draws with alpha={alpha}. Raise alpha, lower min_size, or use fewer clients."
    )


def _check_clients(num_samples: int, num_clients: int) -> None:
    if num_clients < 1:
        raise ValueError(f"The 'num_clients' parameter must be >= 1. Got {num_clients!r} instead.")
    if num_samples < num_clients:
        raise DataError(f"Cannot split {num_samples} samples across {num_clients} clients.")


def to_tensor_dataset(
    dataset: TextDataset,
    tokenizer: Any,
    *,
    task: Literal["classification", "causal_lm"] = "classification",
    max_length: int = 128,
) -> Any:
    """Tokenise into a ``torch.utils.data.TensorDataset`` of (input_ids, attention_mask, labels).

    Rows are padded to the longest row (at most ``max_length`` tokens). For ``"classification"`` labels are
    the class ids; for ``"causal_lm"`` they are the input ids with padding set to -100 (ignored).
    """
    import torch
    from torch.utils.data import TensorDataset

    if len(dataset) == 0:
        raise DataError("Cannot tokenise an empty dataset.")
    encoded = tokenizer(
        list(dataset.texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
    )
    input_ids = encoded["input_ids"]
    mask = encoded["attention_mask"]
    if task == "classification":
        labels = torch.as_tensor(dataset.labels, dtype=torch.long)
    else:
        labels = input_ids.masked_fill(mask == 0, -100)
    return TensorDataset(input_ids, mask, labels)
