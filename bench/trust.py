"""Bench 6 — trust scores and the reward split, from the real contract on the embedded ledger.

Seven trainers take part in ``--rounds`` federated rounds (default 8) run through the SDK, the update store
and the contract exactly as ``fedledger demo`` runs them (members and the aggregator of trainer/):

* four honest hospitals/clinics: local LoRA training on their own (Dirichlet non-IID) rows every round;
* ``clinic-e`` (intermittent): honest in some rounds, skips every third round (2, 5, 8) and in rounds 3 and 6
  submits a low-quality update (Gaussian noise with the per-coordinate spread of the previous round's
  accepted updates, in place of its real delta);
* ``mallory`` (malicious from the start): sign flip scaled by 10 every round (the demo's attacker);
* ``lab-h`` (sleeper): honest until ``--turn`` (default after round 3), then scales its delta by 10.

Every update comes from real local training (all-MiniLM-L6-v2 + LoRA, breast cancer as text); the attacks
are applied to the trained delta. The contract's FinalizeRound computes the features, runs the detector,
moves trust (beta reputation, suspension below ``trust_suspend_below``) and pays the round's reward pool by
samples x trust. After each round the study reads back, per participant: trust, status, the verdict of its
update, and the payout; at the end the balances. Nothing is computed outside the contract.

Run: ``python bench/trust.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import harness
import numpy as np

logger = logging.getLogger("bench.trust")

STUDY = "trust"
HONEST = ("hospital-a", "hospital-b", "clinic-c", "clinic-d")
INTERMITTENT = "clinic-e"
MALICIOUS = "mallory"
SLEEPER = "lab-h"
ROLES = {**dict.fromkeys(HONEST, "honest"), INTERMITTENT: "intermittent", MALICIOUS: "malicious", SLEEPER: "sleeper"}


@dataclass(frozen=True)
class Plan:
    """What a member does in a round: 'honest', 'skip', 'noisy', 'sign_flip_x10' or 'scale_x10'."""

    action: str


def plan(name: str, round_number: int, *, turn: int) -> Plan:
    """The behaviour schedule of the study (see the module docstring)."""
    role = ROLES[name]
    if role == "intermittent":
        if round_number % 3 == 2:
            return Plan("skip")
        return Plan("noisy" if round_number % 3 == 0 else "honest")
    if role == "malicious":
        return Plan("sign_flip_x10")
    if role == "sleeper":
        return Plan("scale_x10" if round_number > turn else "honest")
    return Plan("honest")


def _attack(action: str, *, noise_std: float, seed: int) -> Any:
    from fedledger.experiments.attacks import Attack, AttackConfig

    if action == "noisy":
        return AttackConfig(kind=Attack.GAUSSIAN_NOISE, noise_std=noise_std, seed=seed)
    if action == "sign_flip_x10":
        return AttackConfig(kind=Attack.SCALING, scale=-10.0, seed=seed)
    if action == "scale_x10":
        return AttackConfig(kind=Attack.SCALING, scale=10.0, seed=seed)
    return AttackConfig()


def _coordinate_std(states: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Root-mean-square coordinate of the given deltas: the spread a plausible low-quality update has."""
    if not states:
        return 1e-3
    squares = [float(np.mean(np.concatenate([np.ravel(v) for v in s.values()]) ** 2)) for s in states]
    return float(np.sqrt(np.mean(squares)))


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the federation and returns every per-round record and the final balances."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tqdm.auto import tqdm

    from fedledger.chaincode.embedded.bootstrap import create_consortium
    from fedledger.chaincode.errors import PermissionDenied
    from fedledger.experiments.demo_setup import DEMO_RULES, demo_train_config, load_demo_model
    from fedledger.experiments.federation import schema_hash
    from fedledger.sdk.client import FedLedgerClient
    from fedledger.sdk.gateway import connect
    from fedledger.sdk.store import UpdateStore, create_key
    from fedledger.tensors import decode, to_numpy
    from fedledger.trainer.aggregator import Aggregator
    from fedledger.trainer.data import load_breast_cancer_text, partition_dirichlet, to_tensor_dataset, train_test_split
    from fedledger.trainer.evaluate import evaluate
    from fedledger.trainer.local_trainer import LocalTrainer
    from fedledger.trainer.member import Member
    from fedledger.trainer.models import get_adapter_state, set_adapter_state

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    consortium = create_consortium(out / "consortium")

    def client(mspid: str, name: str, admin: bool = False) -> FedLedgerClient:
        identity, signer = consortium.user(mspid, name, admin=admin)
        network = connect(identity, signer=signer, ledger_dir=consortium.ledger_dir).get_network("mychannel")
        return FedLedgerClient(network.get_contract("fedledger"), network)

    orgs = ["Org1MSP", "Org2MSP"]
    rules = {**DEMO_RULES, "member_msps": orgs}
    client(orgs[0], "Admin", True).init_consortium(rules)
    observer = client(orgs[1], "auditor")
    observer.register("auditor", dataset_size=0, schema_hash="0" * 64)
    store = UpdateStore(out / "store", create_key(out / "store.key"))

    model, tokenizer, label = load_demo_model(args.model, args.seed)
    train = demo_train_config(epsilon=0.0, epochs=args.epochs, seed=args.seed)
    dataset = load_breast_cancer_text(style="levels")
    train_set, test_set = train_test_split(dataset, test_fraction=0.2, seed=args.seed)
    test_tensors = to_tensor_dataset(test_set, tokenizer, task="classification", max_length=train.max_length)

    def evaluate_state(state: Mapping[str, Any]) -> dict[str, float]:
        set_adapter_state(model, state)
        metrics = evaluate(model, test_tensors, task="classification", num_labels=2, device=train.device)
        return {k: round(float(v), 6) for k, v in metrics.items()}

    aggregator = Aggregator(client(orgs[0], "aggregator"), store, evaluate=evaluate_state, round_seconds=600.0)
    aggregator.ensure_registered()
    aggregator.publish_genesis(to_numpy(get_adapter_state(model)), name=label)

    names = [*HONEST, INTERMITTENT, MALICIOUS, SLEEPER]
    parts = partition_dirichlet(train_set.labels, len(names), alpha=1.0, seed=args.seed)
    members: dict[str, Member] = {}
    for i, (name, part) in enumerate(zip(names, parts, strict=True)):
        local = train_set.subset(part)
        tensors = to_tensor_dataset(local, tokenizer, task="classification", max_length=train.max_length)
        trainer = LocalTrainer(model, task="classification", train=replace(train, seed=args.seed + 1000 * i))
        member = Member(client(orgs[i % 2], name), store, trainer, tensors)
        member.ensure_registered(dataset_size=len(local), schema_hash=schema_hash(dataset))
        members[name] = member
    ids = {name: m.id for name, m in members.items()}

    records: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    noise_std = 1e-3
    for number in tqdm(range(1, args.rounds + 1), desc="rounds", unit="round"):
        started = time.perf_counter()
        aggregator.open_round(number)
        actions: dict[str, str] = {}
        submitted = 0
        for name, member in tqdm(members.items(), desc=f"round {number} members", leave=False):
            action = plan(name, number, turn=args.turn).action
            if action == "skip":
                actions[name] = "skipped"
                continue
            member.attack = _attack(action, noise_std=noise_std, seed=args.seed * 100 + number)
            try:
                member.participate(number)
                actions[name] = action
                submitted += 1
            except PermissionDenied as exc:
                actions[name] = "refused"
                logger.info("round %d: %s refused by the ledger: %s", number, name, exc)
        aggregator.wait_for_updates(number, expected=submitted, timeout=5.0)
        aggregator.finalize(number)
        outcome = aggregator.aggregate(number)
        updates = {u.participant: u for u in observer.updates(number)}
        participants = {p.id: p for p in observer.participants()}
        accepted_states = [
            decode(store.get(u.hash), expected=None) for u in updates.values() if u.status == "accepted"
        ]
        noise_std = _coordinate_std([to_numpy(s) for s in accepted_states]) if accepted_states else noise_std
        for name in names:
            pid = ids[name]
            update = updates.get(pid)
            payouts = {p.round: p for p in observer.balance(pid).payouts}
            paid = payouts.get(number)
            participant = participants[pid]
            records.append(
                {
                    "round": number,
                    "participant": name,
                    "role": ROLES[name],
                    "action": actions[name],
                    "verdict": update.status if update else "none",
                    "score": None if update is None or update.score is None else round(update.score, 4),
                    "trust_at_submit": None if update is None else update.trust_at_submit,
                    "trust": participant.trust,
                    "status": participant.status,
                    "accepted_total": participant.accepted_count,
                    "rejected_total": participant.rejected_count,
                    "reward": paid.amount if paid else 0,
                    "samples": update.samples if update else 0,
                }
            )
        rounds.append(
            {
                "round": number,
                "accepted": len(outcome.accepted),
                "rejected": len(outcome.rejected),
                "seconds": round(time.perf_counter() - started, 2),
                **{k: outcome.metrics.get(k) for k in ("accuracy", "precision", "recall", "f1")},
            }
        )
        logger.info("round %d: %s", number, rounds[-1])
    balances = {name: observer.balance(ids[name]).balance for name in names}
    final = {p.id: p for p in observer.participants()}
    return {
        "records": records,
        "rounds": rounds,
        "balances": balances,
        "final": {
            name: {"trust": final[ids[name]].trust, "status": final[ids[name]].status, "role": ROLES[name]}
            for name in names
        },
        "dataset_sizes": {name: len(part) for name, part in zip(names, parts, strict=True)},
        "rules": {k: v for k, v in vars(observer.rules()).items() if k.startswith(("trust", "reward"))},
        "model": label,
        "train": {k: v for k, v in vars(train).items() if k != "progress"},
        "participant_ids": ids,
    }


def plot(result: dict[str, Any], rules: Mapping[str, Any]) -> list[Path]:
    plt = harness.pyplot()
    records = result["records"]
    names = list(result["final"])
    rounds = sorted({r["round"] for r in records})
    styles = {"honest": "-", "intermittent": "--", "malicious": ":", "sleeper": "-."}

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in names:
        rows = [r for r in records if r["participant"] == name]
        trust = [
            rules.get("trust_prior_accepted", 4.0) / (rules["trust_prior_accepted"] + rules["trust_prior_rejected"])
        ]
        ax.plot(
            [0, *rounds],
            trust + [r["trust"] for r in rows],
            styles[rows[0]["role"]],
            marker="o",
            label=f"{name} ({rows[0]['role']})",
        )
        for r in rows:
            if r["status"] == "suspended":
                ax.plot(r["round"], r["trust"], "kx", markersize=9)
    ax.axhline(
        rules["trust_suspend_below"], color="red", lw=1, label=f"suspension below {rules['trust_suspend_below']}"
    )
    ax.set_xlabel("round")
    ax.set_ylabel("trust score (on the ledger after the round)")
    ax.set_title("Trust per participant (x = suspended)")
    ax.legend(fontsize=7, loc="lower left")
    paths = [harness.save_figure(fig, harness.RESULTS / "trust_scores.png")]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = np.zeros(len(rounds))
    for name in names:
        amounts = np.array(
            [next(r["reward"] for r in records if r["participant"] == name and r["round"] == n) for n in rounds]
        )
        ax.bar(rounds, amounts, bottom=bottom, label=name)
        bottom += amounts
    ax.set_xlabel("round")
    ax.set_ylabel("reward paid (units)")
    ax.set_title("Reward pool split per round (samples x trust of accepted updates)")
    ax.legend(fontsize=7, ncol=2)
    paths.append(harness.save_figure(fig, harness.RESULTS / "trust_rewards.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    balances = result["balances"]
    ax.bar(list(balances), list(balances.values()), color=["C0"] * len(HONEST) + ["C1", "C3", "C4"])
    ax.set_ylabel("final balance (units)")
    ax.set_title("Final reward split")
    ax.tick_params(axis="x", rotation=30)
    paths.append(harness.save_figure(fig, harness.RESULTS / "trust_final_split.png"))
    return paths


def _table(result: dict[str, Any]) -> str:
    rounds = sorted({r["round"] for r in result["records"]})
    headers = ["participant", "role", *[f"r{n}" for n in rounds], "final trust", "status", "balance"]
    rows = []
    for name, final in result["final"].items():
        cells = []
        for n in rounds:
            r = next(x for x in result["records"] if x["participant"] == name and x["round"] == n)
            mark = {"accepted": "✓", "rejected": "✗", "none": "-"}.get(r["verdict"], r["verdict"])
            cells.append(f"{r['action']} {mark} {r['trust']:.2f} ({r['reward']})")
        rows.append([name, final["role"], *cells, f"{final['trust']:.3f}", final["status"], result["balances"][name]])
    return harness.markdown_table(headers, rows)


def _findings(result: dict[str, Any]) -> str:
    final, balances = result["final"], result["balances"]
    total = sum(balances.values()) or 1
    honest_share = sum(balances[n] for n in HONEST) / total
    lines = [
        f"- Honest members (4 of 7) earned {honest_share:.1%} of all rewards paid "
        f"({sum(balances[n] for n in HONEST)} of {total} units).",
    ]
    for name in (INTERMITTENT, MALICIOUS, SLEEPER):
        rows = [r for r in result["records"] if r["participant"] == name]
        suspended = next((r["round"] for r in rows if r["status"] == "suspended"), None)
        rejected = sum(r["verdict"] == "rejected" for r in rows)
        lines.append(
            f"- {name} ({final[name]['role']}): {rejected} rejected update(s), final trust {final[name]['trust']:.3f}, "
            + (f"suspended after round {suspended}" if suspended else "never suspended")
            + f", balance {balances[name]} ({balances[name] / total:.1%})."
        )
    wrong = [r for r in result["records"] if r["role"] == "honest" and r["verdict"] == "rejected"]
    lines.append(f"- Honest updates rejected (false positives of the detector): {len(wrong)}.")
    return "\n".join(lines)


def write_docs(result: dict[str, Any], machine: Mapping[str, str], command: str, plots: Sequence[Path]) -> Path:
    rules = result["rules"]
    sections = [
        (
            "Set-up",
            "\n".join(
                [
                    f"- Ledger: embedded (the real contract, SDK and update store); model {result['model']} + LoRA, "
                    "breast-cancer Wisconsin as text (levels), Dirichlet alpha=1 over 7 trainers "
                    f"(rows: {', '.join(f'{k} {v}' for k, v in result['dataset_sizes'].items())}).",
                    f"- Local training: {result['train']} (no DP: trust depends on verdicts only, not on ε).",
                    f"- Contract rules: {rules}. Trust = (a + accepted) / (a + b + accepted + w·rejected); suspended "
                    "below the threshold; each round's pool is split over accepted updates by samples x trust at "
                    "submission.",
                    "- Behaviours: honest x4; clinic-e skips rounds 2, 5, 8 and sends Gaussian noise (with the spread "
                    "of the previous round's accepted updates) in rounds 3 and 6; mallory sends -10 x its delta "
                    "every round; lab-h is honest, then sends 10 x its delta from the round after `--turn`.",
                ]
            ),
        ),
        ("Findings", _findings(result)),
        (
            "Per participant and round",
            "Cell = action, verdict (✓ accepted, ✗ rejected, - none), trust after the round, (reward paid).\n\n"
            + _table(result),
        ),
        (
            "Rounds",
            harness.markdown_table(
                ["round", "accepted", "rejected", "accuracy", "precision", "recall", "f1", "seconds"],
                [
                    [
                        r["round"],
                        r["accepted"],
                        r["rejected"],
                        r["accuracy"],
                        r["precision"],
                        r["recall"],
                        r["f1"],
                        r["seconds"],
                    ]
                    for r in result["rounds"]
                ],
            ),
        ),
        ("Plots", "\n\n".join(harness.figure_link(p) for p in plots)),
        (
            "Files",
            "`bench/results/trust.csv` (one row per participant and round), `bench/results/trust.json` (everything, "
            "incl. rules and participant ids).",
        ),
    ]
    page = harness.render_page(
        "Bench 6 — trust scores and reward split",
        command=command,
        machine=machine,
        sections=sections,
        intro="Trust, status, verdicts and rewards as the contract records them, per participant and round.",
    )
    path = harness.DOCS / "bench-trust.md"
    path.write_text(page)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 rounds, 1 local epoch (a few minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 8, quick 6)")
    parser.add_argument("--turn", type=int, default=3, help="lab-h turns malicious after this round")
    parser.add_argument("--epochs", type=int, default=None, help="local epochs (default 2, quick 1)")
    parser.add_argument("--model", default="minilm", help="'minilm' or 'tiny-bert' (random, fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=harness.RESULTS / "trust-run", help="ledger and store folder")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (6 if args.quick else 8)
    args.epochs = args.epochs or (1 if args.quick else 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    machine = harness.machine_facts((*harness.CORE_PACKAGES, *harness.ML_PACKAGES))
    command = harness.command_line()
    result = run_study(args)
    result["machine"] = machine
    result["command"] = command
    harness.write_csv(harness.RESULTS / f"{STUDY}.csv", result["records"])
    harness.write_json(harness.RESULTS / f"{STUDY}.json", result)
    plots = plot(result, result["rules"])
    write_docs(result, machine, command, plots)
    harness.print_report("Bench 6 — trust", command=command, machine=machine, table=_table(result))
    print()
    print(_findings(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
