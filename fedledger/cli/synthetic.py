"""``fedledger demo --synthetic``: the whole flow on the embedded ledger without training (no torch).

The updates are SYNTHETIC: honest members send a shared direction plus
noise (what LoRA deltas of members with similar data look like), one member sends a scaled,
sign-flipped update (a model-replacement attack). Everything else is real: signed transactions,
the contract hashing and featurising every update on the peer side, the seeded IsolationForest at
FinalizeRound, sample-weighted FedAvg of the accepted updates only, the aggregate committed with
its lineage, rewards, trust, and a final verification of the chain. Updates are kept in the encrypted,
content-addressed update store, as in every other run.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.privacy_budget import SPENT_HEADING, spent_of_budget, steps_within
from fedledger.cli.output import Outcome
from fedledger.cli.summary import demo_summary
from fedledger.cli.tables import privacy_line, render
from fedledger.experiments.run_folder import new_run
from fedledger.sdk.client import grant_role
from fedledger.sdk.connection import LedgerLocation
from fedledger.sdk.embedded import forget_ledger
from fedledger.sdk.store import UpdateStore, create_key
from fedledger.tensors import encode
from fedledger.trainer.aggregator import Aggregator  # numpy only: no torch needed
from fedledger.trainer.member import seal_update
from fedledger.trainer.rounds import RoundDriver, RoundOutcome
from fedledger.trainer.share_holder import ShareHolder, load_or_create_share_key

TRAINERS = [
    ("Org1MSP", "hospital-a", 420),
    ("Org2MSP", "hospital-b", 380),
    ("Org1MSP", "clinic-c", 210),
    ("Org2MSP", "clinic-d", 260),
    ("Org2MSP", "mallory", 300),  # the malicious member
]
MALICIOUS = "mallory"
# What each member declares: DP-SGD at noise 2.0 and sample rate 0.01 for as many steps as ε 1.0 allows (RDP)
PRIVACY = steps_within(1.0, noise_multiplier=2.0, sample_rate=0.01, delta=1e-5)
LAYERS = 6
RANK, HIDDEN = 8, 384  # LoRA rank 8 on a 384-wide encoder (all-MiniLM-L6-v2's shape)


def _shapes() -> dict[str, tuple[int, int]]:
    shapes = {}
    for layer in range(LAYERS):
        for module in ("query", "value"):
            prefix = f"encoder.layer.{layer}.attention.self.{module}"
            shapes[f"{prefix}.lora_A.weight"] = (RANK, HIDDEN)
            shapes[f"{prefix}.lora_B.weight"] = (HIDDEN, RANK)
    return shapes


def _honest(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (0.01 * direction + 0.004 * rng.normal(size=direction.shape)).astype(np.float32)


def _cosine(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    dot = sum(float(np.sum(a[k] * b[k])) for k in a)
    return dot / float(np.sqrt(sum(np.sum(a[k] ** 2) for k in a) * sum(np.sum(b[k] ** 2) for k in b)))


def run_synthetic(args: argparse.Namespace) -> Outcome:
    started = time.perf_counter()
    print("fedledger demo --synthetic — embedded ledger, SYNTHETIC updates (drop --synthetic for LoRA + DP-SGD)")
    with new_run(args.out) as folder:
        verified, summary = _federate(args, folder)
    print(f"run folder: {args.out.resolve()}  ({time.perf_counter() - started:.1f} s)")
    return Outcome(0 if verified else 1, summary)


def _federate(args: argparse.Namespace, folder: Path) -> tuple[bool, dict[str, Any]]:
    """The synthetic federation in ``folder``: whether its ledger verifies, and the ``--json`` summary (read
    before the ledger is closed, naming the folder the run will have after the swap)."""
    # no key when the rounds are secret-shared: no update enters the store; --plaintext seals updates under one
    store = UpdateStore(folder / "store", create_key(folder / "store.key") if args.plaintext else None)
    consortium = create_consortium(folder / "consortium")
    location = LedgerLocation("embedded", consortium.base)
    admin = location.client("Org1MSP", "Admin", admin=True)
    rules = admin.init_consortium(
        {
            "member_msps": ["Org1MSP", "Org2MSP"],
            "detector_min_updates": 4,
            "epsilon_total": 10.0,
            "secure_aggregation": not args.plaintext,
        }
    )
    print(
        f"privacy budget ε = {rules.epsilon_total:g} per member over all rounds at δ = {rules.dp_delta:g} "
        "(composed and enforced by the ledger)"
    )
    admins = {mspid: location.client(mspid, "Admin", admin=True) for mspid in ("Org1MSP", "Org2MSP")}
    holders = [
        ShareHolder(admin, store, load_or_create_share_key(folder / "organizations" / org / "share-key.pem"), org=org)
        for org, admin in admins.items()
        if not args.plaintext
    ]
    for holder in holders:
        holder.register()
    aggregator = Aggregator(location.client("Org1MSP", "aggregator"), store, holders=holders)
    aggregator.ensure_registered(list(admins.values()))
    auditor = location.client("Org2MSP", "auditor")
    grant_role(list(admins.values()), auditor.whoami()["id"], "auditor")
    auditor.register("auditor")
    trainers = {}
    for mspid, name, size in TRAINERS:
        trainers[name] = location.client(mspid, name)
        admins[mspid].enrol_trainer(
            trainers[name].whoami()["id"].partition(":")[2], dataset_size=size, schema_hash="5" * 64
        )
        trainers[name].register("trainer")

    client = aggregator.client
    events: list[str] = []
    stream = client.events(start_block=1)
    threading.Thread(target=lambda: events.extend(e.name for e in stream), daemon=True).start()

    rng = np.random.default_rng(args.seed)
    shapes = _shapes()
    direction = {k: rng.normal(size=s) for k, s in shapes.items()}
    genesis = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    base = aggregator.publish_genesis(genesis, name="all-MiniLM-L6-v2 LoRA r8 (synthetic)")
    print(f"genesis adapter {base.hash[:16]}… registered ({len(shapes)} tensors)")

    def collect(number: int) -> None:
        for mspid, name, size in tqdm(TRAINERS, desc=f"round {number}: members submit", unit="update", leave=False):
            delta = {k: _honest(direction[k], rng) for k in shapes}
            if name == MALICIOUS:
                delta = {k: (-8.0 * v).astype(np.float32) for k, v in delta.items()}
            try:
                record = trainers[name].round(number)
                if record.shared:
                    pid = trainers[name].whoami()["id"]
                    commitments = seal_update(trainers[name], store, record, delta, participant=pid)
                    trainers[name].submit_shared_update(
                        number, commitments, samples=size, privacy=PRIVACY, train_loss=0.5
                    )
                else:
                    payload = encode(delta)
                    store.put(payload)
                    trainers[name].submit_update(number, payload, samples=size, privacy=PRIVACY, train_loss=0.5)
            except Exception as exc:  # a suspended member is refused by the contract: show it, carry on
                tqdm.write(f"  {mspid}:{name} refused: {getattr(exc, 'contract_message', exc)}")

    def evaluate(state: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {"cosine_to_true_direction": round(_cosine(state, direction), 4)}

    def record(outcome: RoundOutcome) -> None:
        block = client.last_result.block_number if client.last_result else "?"
        balances = client.balances()
        trust = {p.id: p for p in client.participants()}
        rows = [
            (
                u.participant,
                u.status.upper(),
                f"{u.score:.3f}" if u.score is not None else "-",
                u.samples,
                spent_of_budget(u.epsilon_spent, rules.epsilon_total),
                balances.get(u.participant, 0),
                f"{trust[u.participant].trust:.3f}",
                trust[u.participant].status,
            )
            for u in client.updates(outcome.number)
        ]
        model = outcome.model
        print(
            render(
                ["participant", "verdict", "score", "samples", SPENT_HEADING, "balance", "trust", "status"],
                rows,
                title=(
                    f"\nRound {outcome.number}: {len(outcome.accepted)} accepted, {len(outcome.rejected)} rejected → "
                    f"model v{model.version} {model.hash[:16]}… (cosine to honest direction "
                    f"{outcome.metrics['cosine_to_true_direction']:.3f}, block {block})"
                    if model is not None
                    else f"\nRound {outcome.number}: abandoned (no update accepted)"
                ),
            )
        )
        print(privacy_line(client.round(outcome.number)))

    RoundDriver(aggregator, collect=collect, evaluate=evaluate, record=record).run(args.rounds)

    stream.close()
    anomalies = client.anomalies()
    print(f"\n{len(anomalies)} anomaly record(s) on the ledger:")
    for anomaly in anomalies:
        print(f"  round {anomaly.round} {anomaly.participant}: {anomaly.reason}")
    lineage = client.lineage(client.latest_model().hash)
    print("lineage: " + " ← ".join(f"v{m.version}({m.hash[:8]})" for m in lineage))
    checks = {"ledger verify": f"fedledger ledger verify {args.out}", "report": f"fedledger report {args.out}"}
    summary = demo_summary(client, args.out, checks=checks)
    forget_ledger(consortium.ledger_dir)  # closed before the run folder is swapped in
    report = verify_ledger(consortium.ledger_dir)
    print(f"ledger verify: {report}")
    print(f"events seen by a subscriber: {len(events)}")
    return report.ok, summary
