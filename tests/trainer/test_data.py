"""Datasets, loaders, splits and partitions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.trainer.data import (
    BREAST_CANCER_LABELS,
    DataError,
    TextDataset,
    load_breast_cancer_text,
    load_table,
    partition_dirichlet,
    partition_iid,
    synthetic_keyword_dataset,
    to_tensor_dataset,
    train_test_split,
)


def test_breast_cancer_rows_are_text_with_malignant_as_positive():
    data = load_breast_cancer_text()
    assert len(data) == 569
    assert data.label_names == BREAST_CANCER_LABELS == ("benign", "malignant")
    assert int(data.labels.sum()) == 212  # malignant cases in the Wisconsin table
    assert data.texts[0].startswith("radius 17.99, texture 10.38, perimeter 122.8, area 1001")
    assert data.labels[0] == 1  # first patient is malignant
    full = load_breast_cancer_text(features="all")
    assert full.texts[0].count(",") == 29


def _assert_partition(parts, n):
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(n))  # disjoint and covering


@given(n=st.integers(1, 300), clients=st.integers(1, 12), seed=st.integers(0, 10))
@settings(max_examples=60, deadline=None)
def test_iid_partition_properties(n, clients, seed):
    if clients > n:
        with pytest.raises(DataError):
            partition_iid(n, clients, seed=seed)
        return
    parts = partition_iid(n, clients, seed=seed)
    assert len(parts) == clients
    _assert_partition(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition_iid(n, clients, seed=seed), strict=True))


@given(
    clients=st.integers(2, 8),
    alpha=st.floats(0.3, 100.0),  # very small alpha may legitimately fail (tested below)
    seed=st.integers(0, 10),
)
@settings(max_examples=40, deadline=None)
def test_dirichlet_partition_properties(clients, alpha, seed):
    labels = np.repeat([0, 1, 2], 40)
    parts = partition_dirichlet(labels, clients, alpha=alpha, seed=seed, min_size=2)
    assert len(parts) == clients
    _assert_partition(parts, len(labels))
    assert min(len(p) for p in parts) >= 2
    again = partition_dirichlet(labels, clients, alpha=alpha, seed=seed, min_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_small_alpha_skews_labels_more_than_large_alpha():
    labels = np.repeat([0, 1], 500)

    def skew(alpha):
        parts = partition_dirichlet(labels, 10, alpha=alpha, seed=0)
        return np.mean([abs(labels[p].mean() - 0.5) for p in parts])

    assert skew(0.1) > 0.3 > 0.05 > skew(1000.0)


def test_dirichlet_gives_up_with_a_clear_message():
    with pytest.raises(DataError, match="Raise alpha"):
        partition_dirichlet(np.repeat([0, 1], 10), 5, alpha=0.01, seed=0, min_size=4, max_tries=3)
    with pytest.raises(ValueError, match="alpha"):
        partition_dirichlet([0, 1, 0, 1], 2, alpha=0.0)


def test_train_test_split_is_stratified_disjoint_and_seeded():
    data = load_breast_cancer_text()
    train, test = train_test_split(data, test_fraction=0.2, seed=3)
    assert len(train) + len(test) == len(data)
    assert not set(train.texts) & set(test.texts)
    assert abs(test.labels.mean() - data.labels.mean()) < 0.01
    train2, test2 = train_test_split(data, test_fraction=0.2, seed=3)
    assert train.texts == train2.texts and test.texts == test2.texts


def test_load_csv_with_string_labels(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('note,outcome\n"fever, cough",sick\nall fine,healthy\nheadache,sick\n', encoding="utf-8")
    data = load_table(path, text_column="note", label_column="outcome")
    assert data.texts == ("fever, cough", "all fine", "headache")
    assert data.label_names == ("healthy", "sick")
    assert data.labels.tolist() == [1, 0, 1]


def test_load_jsonl_with_integer_labels_and_given_names(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"row {i}", "label": i % 2}) for i in range(4)) + "\n\n")
    data = load_table(path, label_names=["no", "yes"])
    assert data.labels.tolist() == [0, 1, 0, 1] and data.label_names == ("no", "yes")
    assert load_table(path).label_names == ("0", "1")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("a.txt", "x", "use .csv or .jsonl"),
        ("a.csv", "text,other\nhello,1\n", "lacks column"),
        ("a.csv", "text,label\n", "has no rows"),
        ("a.csv", "text,label\nx,1\ny,1\n", "same label"),
        ("a.jsonl", "{bad json}\n", "a.jsonl:1 is not valid JSON"),
    ],
)
def test_bad_tables_say_what_is_wrong(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=fragment):
        load_table(path)


def test_missing_file_and_bad_labels():
    with pytest.raises(DataError, match="does not exist"):
        load_table("/nonexistent/data.csv")
    with pytest.raises(DataError, match="Labels must lie in"):
        TextDataset(("a",), np.array([3]), ("x", "y"))


def test_synthetic_keyword_rows_contain_their_keyword():
    data = synthetic_keyword_dataset(50, seed=2)
    for text, label in zip(data.texts, data.labels, strict=True):
        assert data.label_names[label] in text.split()


def test_tensor_dataset_shapes(tiny_llama):
    _, tokenizer = tiny_llama
    data = synthetic_keyword_dataset(10, length=5)
    ids, mask, labels = to_tensor_dataset(data, tokenizer, max_length=8).tensors
    assert ids.shape == mask.shape and ids.shape[0] == 10 and ids.shape[1] <= 8
    assert labels.tolist() == data.labels.tolist()
    _, _, lm_labels = to_tensor_dataset(data, tokenizer, task="causal_lm", max_length=8).tensors
    assert (lm_labels[mask == 0] == -100).all()


def test_breast_cancer_levels_style_uses_tertile_words():
    data = load_breast_cancer_text(style="levels")
    assert data.texts[0].startswith("radius high, texture low, perimeter high")
    words = {part.rsplit(" ", 1)[1] for text in data.texts for part in text.split(", ")}
    assert words == {"low", "medium", "high"}
    assert (data.labels == load_breast_cancer_text().labels).all()
    with pytest.raises(ValueError, match="'style' parameter"):
        load_breast_cancer_text(style="prose")  # type: ignore[arg-type]
