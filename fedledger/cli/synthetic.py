"""``fedledger demo --synthetic``: the whole flow on the embedded ledger without training (no torch).

The updates are SYNTHETIC: honest members send a shared direction plus
noise (what LoRA deltas of members with similar data look like), one member sends a scaled,
sign-flipped update (a model-replacement attack). Everything else is real: signed transactions,
the contract hashing and featurising every update on the peer side, the seeded IsolationForest at
FinalizeRound, sample-weighted FedAvg of the accepted updates only, the aggregate committed with
its lineage, rewards, trust, and a final verification of the chain.
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors
from tqdm import tqdm

from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.gateway import connect
from fedledger.trainer.aggregate import apply_delta, fedavg  # numpy only: no torch needed

from .tables import render

TRAINERS = [
    ("Org1MSP", "hospital-a", 420),
    ("Org2MSP", "hospital-b", 380),
    ("Org1MSP", "clinic-c", 210),
    ("Org2MSP", "clinic-d", 260),
    ("Org2MSP", "mallory", 300),  # the malicious member
]
MALICIOUS = "mallory"
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


def _client(consortium, mspid: str, name: str, *, admin: bool = False) -> FedLedgerClient:
    identity, signer = consortium.user(mspid, name, admin=admin)
    network = connect(identity, signer=signer, ledger_dir=consortium.ledger_dir).get_network("mychannel")
    return FedLedgerClient(network.get_contract("fedledger"), network)


def _honest(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (0.01 * direction + 0.004 * rng.normal(size=direction.shape)).astype(np.float32)


def _cosine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    dot = sum(float(np.sum(a[k] * b[k])) for k in a)
    return dot / float(np.sqrt(sum(np.sum(a[k] ** 2) for k in a) * sum(np.sum(b[k] ** 2) for k in b)))


def run_synthetic(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.out.exists():
        shutil.rmtree(args.out)
    store = args.out / "updates"
    store.mkdir(parents=True)
    print("fedledger demo --synthetic — embedded ledger, SYNTHETIC updates (drop --synthetic for LoRA + DP-SGD)")
    consortium = create_consortium(args.out / "consortium")
    admin = _client(consortium, "Org1MSP", "Admin", admin=True)
    admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"], "detector_min_updates": 4, "epsilon_total": 10.0})
    aggregator = _client(consortium, "Org1MSP", "aggregator")
    aggregator.register("aggregator", dataset_size=0, schema_hash="0" * 64)
    auditor = _client(consortium, "Org2MSP", "auditor")
    auditor.register("auditor", dataset_size=0, schema_hash="0" * 64)
    trainers = {}
    for mspid, name, size in TRAINERS:
        trainers[name] = _client(consortium, mspid, name)
        trainers[name].register("trainer", dataset_size=size, schema_hash="5" * 64)

    events: list[str] = []
    stream = aggregator.events(start_block=1)
    threading.Thread(target=lambda: events.extend(e.name for e in stream), daemon=True).start()

    rng = np.random.default_rng(args.seed)
    shapes = _shapes()
    direction = {k: rng.normal(size=s) for k, s in shapes.items()}
    global_model = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    base = aggregator.register_genesis_model(save_tensors(global_model), name="all-MiniLM-L6-v2 LoRA r8 (synthetic)")
    print(f"genesis adapter {base.hash[:16]}… registered ({len(shapes)} tensors)")

    round_tables = []
    for number in range(1, args.rounds + 1):
        aggregator.open_round(number, base_model=base.hash, deadline=time.time() + 600)
        for mspid, name, size in tqdm(TRAINERS, desc=f"round {number}: members submit", unit="update", leave=False):
            delta = {k: _honest(direction[k], rng) for k in shapes}
            if name == MALICIOUS:
                delta = {k: (-8.0 * v).astype(np.float32) for k, v in delta.items()}
            data = save_tensors(delta)
            record = None
            try:
                record = trainers[name].submit_update(number, data, samples=size, epsilon=1.0, train_loss=0.5)
            except Exception as exc:  # a suspended member is refused by the contract: show it, carry on
                tqdm.write(f"  {mspid}:{name} refused: {getattr(exc, 'contract_message', exc)}")
            if record is not None:
                (store / f"{record.hash}.safetensors").write_bytes(data)
        aggregator.close_round(number)
        finalized = aggregator.finalize_round(number)
        accepted = [u for u in aggregator.updates(number) if u.status == "accepted"]
        deltas = []
        for update in accepted:
            data = (store / f"{update.hash}.safetensors").read_bytes()
            deltas.append((load_tensors(data), update.samples))
        global_model = apply_delta(global_model, fedavg(deltas))
        cosine = _cosine(global_model, direction)
        base = aggregator.commit_aggregate(
            number,
            save_tensors(global_model),
            update_hashes=[u.hash for u in accepted],
            metrics={"cosine_to_true_direction": round(cosine, 4)},
        )
        balances = aggregator.balances()
        trust = {p.id: p for p in aggregator.participants()}
        rows = [
            (
                u.participant,
                u.status.upper(),
                f"{u.score:.3f}" if u.score is not None else "-",
                u.samples,
                u.epsilon,
                balances.get(u.participant, 0),
                f"{trust[u.participant].trust:.3f}",
                trust[u.participant].status,
            )
            for u in aggregator.updates(number)
        ]
        round_tables.append(
            render(
                ["participant", "verdict", "score", "samples", "ε", "balance", "trust", "status"],
                rows,
                title=(
                    f"\nRound {number}: {len(finalized.accepted)} accepted, {len(finalized.rejected)} rejected → "
                    f"model v{base.version} {base.hash[:16]}… (cosine to honest direction {cosine:.3f}, "
                    f"block {aggregator.last_result.block_number})"
                ),
            )
        )
        print(round_tables[-1])

    stream.close()
    anomalies = aggregator.anomalies()
    print(f"\n{len(anomalies)} anomaly record(s) on the ledger:")
    for anomaly in anomalies:
        print(f"  round {anomaly.round} {anomaly.participant}: {anomaly.reason}")
    lineage = aggregator.lineage(base.hash)
    print("lineage: " + " ← ".join(f"v{m.version}({m.hash[:8]})" for m in lineage))
    report = verify_ledger(consortium.ledger_dir)
    print(f"ledger verify: {report}")
    print(f"events seen by a subscriber: {len(events)}")
    print(f"run folder: {args.out.resolve()}  ({time.perf_counter() - started:.1f} s)")
    return 0 if report.ok else 1
