"""`fedledger score` on real small runs: a user following the model card gets the card's held-out metrics; the
same adapter fed the library's default text, or put on another base model, does not, and the command says so."""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from .commands import fedledger_cli, tree


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory) -> Path:
    """A run whose adapter learned the task (no DP, more local epochs). The shared DP run's tiny model stays at the
    majority class, where every text format scores the same accuracy and only the loss can tell them apart."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("learned") / "run"
    argv = ["--model", "tiny-bert", "--rounds", "2", "--epochs", "4", "--epsilon", "0", "--learning-rate", "0.01"]
    argv += ["--plaintext"]  # a fixed sketch seed: the run, and the accuracy it reaches, repeat exactly
    made = fedledger_cli("demo", "--out", str(out), *argv)
    assert made.returncode == 0, made.stderr[-3000:]
    return out


def _card_copy(run: Path, tmp_path: Path, change: Callable[[dict], None]) -> Path:
    card = tmp_path / "model"
    shutil.copytree(run / "model", card)
    record = json.loads((card / "provenance.json").read_text())
    change(record)
    (card / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return card


def _final_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "model" / "provenance.json").read_text())["rounds"][-1]["metrics"]


def _default_style(record: dict) -> None:
    from fedledger.trainer.data import load_breast_cancer_text

    default = inspect.signature(load_breast_cancer_text).parameters["style"].default
    assert record["input_format"]["options"]["style"] != default  # the demo records a style other than the default
    record["input_format"]["options"]["style"] = default


def test_score_reproduces_the_cards_metrics_and_writes_nothing(demo_run):
    before = tree(demo_run)
    done = fedledger_cli("score", str(demo_run), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] and summary["differs"] == []
    assert summary["metrics"] == summary["card_metrics"] == _final_metrics(demo_run)
    assert tree(demo_run) == before


def test_score_prints_the_cards_accuracy_beside_the_rescored_one(learned_run):
    done = fedledger_cli("score", str(learned_run / "model"))
    assert done.returncode == 0, done.stderr[-2000:]
    card, rescored, verdict = done.stdout.splitlines()
    accuracy = _final_metrics(learned_run)["accuracy"]
    assert accuracy > 0.75  # it learned: a wrong text format has something to lose
    assert card.startswith(f"card:      accuracy {accuracy:.6f} on 113 held-out rows")
    assert rescored.startswith(f"re-scored: accuracy {accuracy:.6f} on 113 held-out rows")
    assert "style='levels'" in rescored and verdict.startswith("OK: ")
    assert "`fedledger score <run dir>`" in (learned_run / "model" / "README.md").read_text()  # the card says how


def test_the_librarys_default_text_style_scores_lower_and_fails(learned_run, tmp_path):
    card = _card_copy(learned_run, tmp_path, _default_style)
    done = fedledger_cli("score", str(card), "--json")
    assert done.returncode == 1, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert not summary["ok"] and "accuracy" in summary["differs"]
    assert summary["metrics"]["accuracy"] < summary["card_metrics"]["accuracy"] - 0.2


def test_a_wrong_style_fails_even_where_accuracy_cannot_tell(demo_run, tmp_path):
    # the shared DP run predicts one class: same accuracy under any format, so score compares every metric
    done = fedledger_cli("score", str(_card_copy(demo_run, tmp_path, _default_style)), "--json")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "loss" in json.loads(done.stdout)["differs"]


def test_a_base_model_with_other_weights_is_refused_in_one_line(learned_run, tmp_path):
    from fedledger.trainer.models import tiny_model

    other = tmp_path / "other-base"
    model, tokenizer = tiny_model("bert", seed=1)  # the card's architecture, other weights
    cast(Any, model).save_pretrained(other)  # a transformers model; tiny_model's signature says nn.Module
    tokenizer.save_pretrained(other)
    before = tree(learned_run), tree(other)
    done = fedledger_cli("score", str(learned_run), "--base-model", str(other))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"fedledger: error: base model {other} has weights sha256 ")
    assert "not the model the adapter was trained on; pass that model with --base-model" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (tree(learned_run), tree(other)) == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r["input_format"].pop("loader"), "input_format names no text loader"),
        (lambda r: r["training"].pop("held_out"), "records no held-out split (training.held_out)"),
        (lambda r: r.update(base_model="my-llm"), "base model 'my-llm' is not built in and no such folder"),
    ],
    ids=["no loader", "no split", "unknown base model"],
)
def test_what_a_card_does_not_record_is_refused_in_one_line(demo_run, tmp_path, change, named):
    done = fedledger_cli("score", str(_card_copy(demo_run, tmp_path, change)))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("fedledger: error: ") and named in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
