"""`fedledger report`: a self-contained HTML page built from the ledger of a finished run."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys

import pytest

from fedledger.cli.main import main
from fedledger.report import plots
from fedledger.report.facts import gather
from fedledger.sdk.store import UpdateStore, create_key

torch = pytest.importorskip("torch")

from fedledger.chaincode.embedded.bootstrap import create_consortium  # noqa: E402
from fedledger.experiments.attacks import Attack, AttackConfig  # noqa: E402
from fedledger.experiments.federation import FederationConfig, run_federation  # noqa: E402
from fedledger.sdk.client import FedLedgerClient  # noqa: E402
from fedledger.sdk.connection import LedgerLocation  # noqa: E402
from fedledger.trainer.data import load_breast_cancer_text  # noqa: E402
from fedledger.trainer.local_trainer import TrainConfig  # noqa: E402
from fedledger.trainer.models import apply_lora, tiny_model  # noqa: E402
from fedledger.trainer.provenance import ROUND_STEPS, TIMINGS  # noqa: E402
from tests.cli.html_page import facts_table, read_page, table_with  # noqa: E402

ROUNDS = 2
IMAGE = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The federation tests' tiny run (tiny BERT, 5 members, one scaling attacker), laid out as a demo run folder."""
    base = tmp_path_factory.mktemp("report-run")
    consortium = create_consortium(base / "consortium")
    store = UpdateStore(base / "store", create_key(base / "store.key"))

    def client(mspid: str, name: str, admin: bool = False) -> FedLedgerClient:
        return LedgerLocation("embedded", consortium.base).client(mspid, name, admin=admin)

    model, tokenizer = tiny_model("bert", seed=0)
    result = run_federation(
        client,
        store,
        apply_lora(model, seed=0),
        tokenizer,
        load_breast_cancer_text(),
        out_dir=base,
        model_name="tiny-bert",
        config=FederationConfig(
            rounds=ROUNDS,
            members=5,
            attacks={4: AttackConfig(kind=Attack.SCALING, scale=-10.0)},
            rules={"detector_min_updates": 4},
        ),
        train=TrainConfig(epochs=1, batch_size=16, learning_rate=5e-3, max_length=48),
        ledger_info=LedgerLocation("embedded", consortium.base).record(),
        progress=False,
    )
    return base, result, client("Org2MSP", "observer")


def _text(page: str) -> str:
    """The page's visible text (tags and inline images removed)."""
    page = IMAGE.sub("", page)
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_federation_records_a_latency_breakdown_per_round(finished):
    _base, result, _ = finished
    timings = json.loads((result.card_dir / TIMINGS).read_text())
    assert [r["round"] for r in timings["rounds"]] == list(range(1, ROUNDS + 1))
    assert timings["steps"] == list(ROUND_STEPS)  # the order the report draws them in
    for entry in timings["rounds"]:
        assert set(entry["steps"]) == set(ROUND_STEPS)
        assert entry["steps"]["local_training"] > 0 and entry["steps"]["commit_aggregate"] > 0
        assert sum(entry["steps"].values()) <= entry["wall"] + 1e-6  # parts of the round, never more than it
        assert set(entry["members"]) == set(result.members)


def test_report_shows_the_ledger_facts_in_one_self_contained_page(finished, tmp_path, capsys):
    base, result, observer = finished
    target = tmp_path / "out" / "report.html"
    assert main(["report", str(base), "-o", str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    page = target.read_text()

    for section in ("summary", "performance", "anomalies", "trust", "rewards", "latency"):
        assert f'<section id="{section}">' in page
    # self-contained: no script, stylesheet link, external URL or remote image
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "url(" not in page
    images = IMAGE.findall(page)
    assert len(images) >= 6  # metrics, scores, trust, rewards, latency, ledger timeline
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)

    text = _text(page)
    latest = observer.latest_model()
    assert latest.hash in text and f"v{latest.version}" in text
    assert "OK:" in text  # the embedded ledger re-verified
    for number in range(1, ROUNDS + 1):
        model = observer.model(observer.round(number).aggregate)
        assert f"{model.metrics['accuracy']:.4f}".rstrip("0").rstrip(".") in text
        for update in observer.updates(number):
            assert update.hash[:16] in text
            assert f"{update.score:.4f}".rstrip("0").rstrip(".") in text
    assert text.count("mallory (Org1MSP)") >= ROUNDS  # the fifth member is Org1 (members alternate orgs)
    # whatever the detector decided, the page says what the ledger recorded
    for number in range(1, ROUNDS + 1):
        record = observer.round(number)
        row = re.search(rf"<tr><td class=\"num\">{number}</td><td>aggregated</td>(.*?)</tr>", page)
        assert row and re.findall(r'class="num">(\d+)<', row.group(1))[:2] == [
            str(len(record.accepted)),
            str(len(record.rejected)),
        ]
    anomalies = observer.anomalies()
    assert ("anomaly record on the ledger" in text) == bool(anomalies)
    for anomaly in anomalies:
        assert anomaly.reason in text
    for pid, balance in observer.balances().items():
        row = re.search(
            rf"<tr><td>{re.escape(result.members[pid])} \(Org\dMSP\)</td>(.*?)</tr>", page.split('id="rewards"')[1]
        )
        assert row and f'class="num">{balance}</td>' in row.group(1)
    assert "local training" in text and "commit aggregate" in text


def test_report_shows_overlapping_trust_lines_round_0_a_headed_summary_and_a_readable_strategy(finished, tmp_path):
    base, result, observer = finished
    assert main(["report", str(base), "-o", str(tmp_path / "r.html")]) == 0
    tables, images = read_page((tmp_path / "r.html").read_text())

    # trust: the honest members share one trust history; each still has its own style, named in the text
    trust_by_round = gather(observer).trust
    histories: dict[tuple, list[str]] = {}
    for pid, points in trust_by_round.items():
        histories.setdefault(tuple(sorted(points.items())), []).append(result.members[pid])
    shared = max(histories.values(), key=len)
    assert len(shared) >= 2  # the premise: some lines would lie on top of each other
    (trust,) = [i for i in images if i.section == "trust"]
    legend = dict(item.split(": ", 1) for item in trust.alt.split(": ", 1)[1].split("; "))
    assert sorted(legend) == sorted(result.members.values())
    assert len(set(legend.values())) == len(legend)  # a distinct marker and line style per member
    offsets = {result.members[pid]: s.offset for pid, s in plots.series_styles(trust_by_round).items()}
    assert len({offsets[name] for name in shared}) == len(shared)  # equal lines drawn side by side, not stacked
    section = _text((tmp_path / "r.html").read_text()).split("Trust scores", 2)[2]
    assert all(name in section.split("have the same trust")[0] for name in shared)  # and the page says so
    text = " ".join(cell for t in tables for row in t.rows for cell in row)

    # round 0: the starting model's accuracy, as the federation measured it before round 1
    performance = table_with(tables, "performance", "round", containing="accuracy")
    first = performance.rows[0]
    assert first[0] == "0 (starting model)" and len(performance.rows) == ROUNDS + 1
    assert float(first[performance.column("accuracy")]) == pytest.approx(result.initial_metrics["accuracy"], abs=1e-4)

    # no empty header row anywhere; the summary is a list of facts, each headed by its name
    assert all(all(cell for cell in row) for t in tables for row in t.header)
    summary = facts_table(tables, "summary")
    assert all(summary) and "run folder" in summary
    # the strategy reads as a name and its parameters, not as a Python dict
    assert summary["strategy"] == "FedAvg (server_lr 1)" and "{" not in text


def test_report_of_a_run_folder_without_timings_still_reads_the_ledger(finished, tmp_path):
    base, _, _ = finished
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(base), str(copy)], check=True)
    (copy / "model" / TIMINGS).unlink()
    assert main(["report", str(copy)]) == 0
    text = _text((copy / "report.html").read_text())
    assert "has no model/timings.json" in text and "Timeline from the ledger" in text


def test_synthetic_demo_is_reportable(tmp_path):
    run = tmp_path / "synthetic"
    demo = subprocess.run(
        [sys.executable, "-m", "fedledger.cli.main", "demo", "--synthetic", "--out", str(run), "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    # a folder inside the run: the hint names the run, and the command it gives works
    inside = subprocess.run(
        [sys.executable, "-m", "fedledger.cli.main", "report", str(run / "store")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inside.returncode == 2 and len(inside.stderr.strip().splitlines()) == 1
    hint = inside.stderr.split("`")[1]
    assert hint == f"fedledger report {run}"
    assert main(hint.split()[1:]) == 0
    text = _text((run / "report.html").read_text())
    assert "cosine_to_true_direction" in text and "mallory (Org2MSP)" in text
    assert "round 1 secret-shared across Org1MSP, Org2MSP; round 2 secret-shared across Org1MSP, Org2MSP" in text
    assert "secret-shared across Org1MSP, Org2MSP: members sent sealed shares" in demo.stdout
    plain = tmp_path / "plain"
    made = subprocess.run(
        [sys.executable, "-m", "fedledger.cli.main", "demo", "--synthetic", "--plaintext", "--out", str(plain)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    assert "plaintext round" in made.stdout and (plain / "store.key").is_file()
    assert main(["report", str(plain)]) == 0
    assert "round(s) 1, 2, 3 plaintext" in _text((plain / "report.html").read_text())


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "is not a fedledger run folder"),
        ("file", "is a file, not a run folder"),
        ("bad-json", "is not valid JSON"),
    ],
)
def test_a_wrong_folder_is_a_usage_error_and_writes_nothing(tmp_path, capsys, layout, message):
    run = tmp_path / "run"
    if layout == "empty":
        run.mkdir()
    elif layout == "file":
        run.write_text("not a folder")
    elif layout == "bad-json":
        (run / "model").mkdir(parents=True)
        (run / "model" / "provenance.json").write_text("{")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_fabric_run_without_its_network_fails_the_check_and_says_what_is_missing(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    record = {"ledger": {"kind": "fabric", "channel": "mychannel", "chaincode": "fedledger"}, "rounds": []}
    (run / "model" / "provenance.json").write_text(json.dumps(record))
    assert main(["report", str(run), "--network-dir", str(tmp_path / "no-network")]) == 1
    err = capsys.readouterr().err
    assert "--network-dir" in err and "make network-up" in err
    assert not (run / "report.html").exists()


def test_an_embedded_ledger_without_a_federation_fails_the_check(tmp_path, capsys):
    create_consortium(tmp_path / "run" / "consortium")  # a ledger, but InitConsortium never ran
    assert main(["report", str(tmp_path / "run")]) == 1
    assert "holds no federation to report" in capsys.readouterr().err
    assert not (tmp_path / "run" / "report.html").exists()
