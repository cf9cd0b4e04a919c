"""`fedledger audit` on a real small run: it passes untouched, and each single altered item a user loads or
trusts (the peft adapter, its config, the card, the provenance, the ledger's blocks, state and history) fails it,
named by file and field."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from fedledger.cli.main import main
from tests.cli.conftest import EPSILON

LEDGER = Path("consortium") / "ledger" / "ledger.sqlite"


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(demo_run, copy)
    return copy


def _audit(run: Path, capsys) -> tuple[int, str]:
    code = main(["audit", str(run)])
    return code, capsys.readouterr().out


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=2, sort_keys=True))


def _edit_ledger(run: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(run / LEDGER) as db:
        assert db.execute(sql, args).rowcount == 1


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # inside the last tensor's data: the file still parses
    path.write_bytes(bytes(raw))


def _replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _final_hash(run: Path) -> str:
    return json.loads((run / "model" / "provenance.json").read_text())["final_adapter"]["hash"]


def _accuracy_in_card(run: Path) -> str:
    line = next(x for x in (run / "model" / "README.md").read_text().splitlines() if x.startswith("- final metrics"))
    return line.split("accuracy ", 1)[1].split(",", 1)[0]


def test_the_untouched_run_passes_every_check(run_copy, capsys):
    code, out = _audit(run_copy, capsys)
    assert code == 0, out
    for checked in ("blocks verified", "10 updates", "2 models recomputed", "adapter tensors", "card identity fields"):
        assert checked in out
    assert "2 card files" in out  # model/README.md and model/adapter/README.md


TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "peft weights": (
        lambda run: _flip_last_byte(run / "model" / "adapter" / "adapter_model.safetensors"),
        "adapter/adapter_model.safetensors tensor base_model.model.",
    ),
    "lora_alpha": (
        lambda run: _edit_json(
            run / "model" / "adapter" / "adapter_config.json", lambda c: c.update(lora_alpha=c["lora_alpha"] * 4)
        ),
        "adapter/adapter_config.json field lora_alpha is",
    ),
    "card final hash": (
        lambda run: _replace_in(run / "model" / "README.md", f"`{_final_hash(run)}`", f"`{'0' * 64}`"),
        "README.md line ",
    ),
    "card accuracy": (
        lambda run: _replace_in(run / "model" / "README.md", f"accuracy {_accuracy_in_card(run)}", "accuracy 0.9900"),
        "README.md line ",
    ),
    "peft folder card": (
        lambda run: _replace_in(run / "model" / "adapter" / "README.md", "lora_alpha=", "lora_alpha=4"),
        "adapter/README.md line ",
    ),
    "provenance metric": (
        lambda run: _edit_json(
            run / "model" / "provenance.json", lambda r: r["rounds"][1]["metrics"].update(accuracy=0.99)
        ),
        "provenance.json round 2 field metrics.accuracy is 0.99",
    ),
    "provenance score": (
        lambda run: _edit_json(
            run / "model" / "provenance.json", lambda r: r["rounds"][0]["rejected"][0].update(score=0.5)
        ),
        "field score is 0.5",
    ),
    "provenance input format": (
        lambda run: _edit_json(
            run / "model" / "provenance.json", lambda r: r["input_format"].update(description="numbers, as they are")
        ),
        "provenance.json fields base_model, base_model_sha256, adapter_config, input_format hash to",
    ),
    "provenance identity removed": (
        lambda run: _edit_json(run / "model" / "provenance.json", lambda r: r.pop("adapter_config")),
        "provenance.json has no card identity, but the genesis model on the ledger anchors",
    ),
    "block signature": (
        lambda run: _edit_ledger(run, "UPDATE blocks SET signature = ? WHERE number = 5", b"0" * 70),
        "TAMPERED at block 5: orderer signature does not verify",
    ),
    "block data": (
        lambda run: _edit_ledger(run, "UPDATE blocks SET data = data || ' ' WHERE number = 7"),
        "TAMPERED at block 7: block data does not match the data hash in its header",
    ),
    "history row": (
        lambda run: _edit_ledger(
            run, "UPDATE history SET value = CAST('{}' AS BLOB) WHERE rowid = (SELECT MAX(rowid) FROM history)"
        ),
        "history differs from the blocks at key",
    ),
    "world state": (
        lambda run: _edit_ledger(
            run, "UPDATE state SET value = CAST('{}' AS BLOB) WHERE key = (SELECT MIN(key) FROM state)"
        ),
        "world state differs from the blocks at key",
    ),
}


@pytest.mark.parametrize("item", list(TAMPERING))
def test_one_altered_item_fails_the_audit_naming_it(run_copy, capsys, item):
    tamper, named = TAMPERING[item]
    tamper(run_copy)
    code, out = _audit(run_copy, capsys)
    assert code == 1, out
    assert out.startswith("MISMATCH: ") and named in out, out


def test_ledger_verify_checks_the_history_table(run_copy, capsys):
    TAMPERING["history row"][0](run_copy)
    assert main(["ledger", "verify", str(run_copy)]) == 1
    assert "history differs from the blocks at key" in capsys.readouterr().out


def test_the_card_says_what_was_trained_and_the_text_the_model_expects(demo_run):
    from fedledger.report.rundir import connect_ledger, locate
    from fedledger.trainer.provenance import anchored_identity, identity_sha256

    card = demo_run / "model"
    record = json.loads((card / "provenance.json").read_text())
    config = json.loads((card / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == record["base_model"] == "tiny-bert (random init)"
    assert len(record["base_model_sha256"]) == 64
    assert record["input_format"]["description"].startswith(
        "fedledger.trainer.data.load_breast_cancer_text(style='levels')"
    )
    assert record["input_format"]["labels"] == ["benign", "malignant"]
    readme = (card / "README.md").read_text()
    assert (card / "adapter" / "README.md").read_text() == readme  # not peft's empty template
    final = record["final_adapter"]
    last_metrics = record["rounds"][-1]["metrics"]
    for fact in (
        final["hash"],
        f"accuracy {last_metrics['accuracy']:.4f}",
        record["base_model_sha256"],
        record["input_format"]["example"],
        "2 rounds",
        f"target ε {EPSILON}",
        f"v2 `{final['hash'][:12]}`",  # the lineage
    ):
        assert fact in readme
    client = connect_ledger(locate(demo_run))
    genesis = client.lineage(client.latest_model().hash)[-1]
    assert anchored_identity(genesis.name) == identity_sha256(record)
