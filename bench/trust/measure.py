"""Runs the trust study's federation on a fresh embedded ledger and reads back what the contract recorded.

The rounds are :class:`~fedledger.trainer.rounds.RoundDriver`'s over the contract-backed
:class:`~fedledger.trainer.aggregator.Aggregator`; its collect hook lets every member act on its schedule
(:func:`plan`), and its record hook reads trust, status, verdicts and payouts per participant from the ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.bench.ml import breast_cancer, embedded_ledger, held_out_evaluator, offline

logger = logging.getLogger("bench.trust")

HONEST = ("hospital-a", "hospital-b", "clinic-c", "clinic-d")
INTERMITTENT = "clinic-e"
MALICIOUS = "mallory"
SLEEPER = "lab-h"
ROLES = {**dict.fromkeys(HONEST, "honest"), INTERMITTENT: "intermittent", MALICIOUS: "malicious", SLEEPER: "sleeper"}
ORGS = ("Org1MSP", "Org2MSP")


@dataclass(frozen=True)
class Plan:
    """What a member does in a round: 'honest', 'skip', 'noisy', 'sign_flip_x10' or 'scale_x10'."""

    action: str


def plan(name: str, round_number: int, *, turn: int) -> Plan:
    """The behaviour schedule of the study (see the package docstring)."""
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


def attack(action: str, *, noise_std: float, seed: int) -> Any:
    """The :class:`~fedledger.experiments.attacks.AttackConfig` that carries out ``action`` on a trained delta."""
    from fedledger.experiments.attacks import Attack, AttackConfig

    if action == "noisy":
        return AttackConfig(kind=Attack.GAUSSIAN_NOISE, noise_std=noise_std, seed=seed)
    if action == "sign_flip_x10":
        return AttackConfig(kind=Attack.SCALING, scale=-10.0, seed=seed)
    if action == "scale_x10":
        return AttackConfig(kind=Attack.SCALING, scale=10.0, seed=seed)
    return AttackConfig()


def coordinate_std(states: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Root-mean-square coordinate of the given deltas: the spread a plausible low-quality update has."""
    if not states:
        return 1e-3
    squares = [float(np.mean(np.concatenate([np.ravel(v) for v in s.values()]) ** 2)) for s in states]
    return float(np.sqrt(np.mean(squares)))


def run_study(*, out: Path, rounds: int, turn: int, epochs: int, model_name: str, seed: int) -> dict[str, Any]:
    """Runs the federation in a new run folder that replaces ``out`` only once it finished, and only if ``out`` is
    missing, empty or an earlier run (:mod:`fedledger.experiments.run_folder`: a folder of the user's is refused,
    untouched); returns every per-round record and the final balances."""
    from fedledger.experiments.run_folder import new_run

    with new_run(out) as folder:
        return _federate(folder, rounds=rounds, turn=turn, epochs=epochs, model_name=model_name, seed=seed)


def _federate(out: Path, *, rounds: int, turn: int, epochs: int, model_name: str, seed: int) -> dict[str, Any]:
    offline()
    from tqdm.auto import tqdm

    from fedledger.chaincode.errors import PermissionDenied
    from fedledger.experiments.attacks import AttackConfig, MaliciousMember
    from fedledger.experiments.demo_setup import DEMO_RULES, demo_train_config, load_demo_model
    from fedledger.experiments.federation import schema_hash
    from fedledger.sdk.client import grant_role, with_quorum
    from fedledger.sdk.store import UpdateStore, create_key
    from fedledger.tensors import to_numpy
    from fedledger.trainer.aggregator import Aggregator
    from fedledger.trainer.data import partition_dirichlet, to_tensor_dataset, train_test_split
    from fedledger.trainer.local_trainer import LocalTrainer
    from fedledger.trainer.member import Member
    from fedledger.trainer.models import get_adapter_state
    from fedledger.trainer.rounds import RoundDriver, RoundOutcome

    with embedded_ledger(out / "consortium") as location:
        admins = [location.client(org, "Admin", admin=True) for org in ORGS]
        admins[0].init_consortium({**DEMO_RULES, "member_msps": list(ORGS)})
        observer = location.client(ORGS[1], "auditor")
        grant_role(admins, observer.whoami()["id"], "auditor")
        observer.register("auditor")
        store = UpdateStore(out / "store", create_key(out / "store.key"))

        model, tokenizer, label = load_demo_model(model_name, seed)
        train = demo_train_config(epsilon=0.0, epochs=epochs, seed=seed)
        dataset = breast_cancer()
        train_set, test_set = train_test_split(dataset, test_fraction=0.2, seed=seed)
        test_tensors = to_tensor_dataset(test_set, tokenizer, task="classification", max_length=train.max_length)

        aggregator = Aggregator(location.client(ORGS[0], "aggregator"), store, round_seconds=600.0)
        aggregator.ensure_registered(admins)
        aggregator.publish_genesis(to_numpy(get_adapter_state(model)), name=label)

        names = [*HONEST, INTERMITTENT, MALICIOUS, SLEEPER]
        parts = partition_dirichlet(train_set.labels, len(names), alpha=1.0, seed=seed)
        members: dict[str, Member] = {}
        for i, (name, part) in enumerate(zip(names, parts, strict=True)):
            local = train_set.subset(part)
            tensors = to_tensor_dataset(local, tokenizer, task="classification", max_length=train.max_length)
            trainer = LocalTrainer(model, task="classification", train=replace(train, seed=seed + 1000 * i))
            member_args = (location.client(ORGS[i % 2], name), store, trainer, tensors)
            member = (
                Member(*member_args)
                if ROLES[name] == "honest"
                else MaliciousMember(*member_args, attack=AttackConfig())
            )
            member.ensure_registered(dataset_size=len(local), schema_hash=schema_hash(dataset), admin=admins[i % 2])
            members[name] = member
        ids = {name: m.id for name, m in members.items()}

        records: list[dict[str, Any]] = []
        summaries: list[dict[str, Any]] = []
        actions: dict[str, str] = {}
        noise_std = 1e-3
        started = time.perf_counter()

        def collect(number: int) -> None:
            actions.clear()
            submitted = 0
            for name, member in tqdm(members.items(), desc=f"round {number} members", leave=False):
                action = plan(name, number, turn=turn).action
                if action == "skip":
                    actions[name] = "skipped"
                    continue
                if isinstance(member, MaliciousMember):
                    member.attack = attack(action, noise_std=noise_std, seed=seed * 100 + number)
                try:
                    member.participate(number)
                    actions[name] = action
                    submitted += 1
                except PermissionDenied as exc:
                    actions[name] = "refused"
                    logger.info("round %d: %s refused by the ledger: %s", number, name, exc)
            aggregator.wait_for_updates(number, expected=submitted, timeout=5.0)
            if "skipped" in actions.values():  # the consortium's admins agree to close without the absent member
                with_quorum(admins, lambda admin: admin.propose_early_close(number))

        def record(outcome: RoundOutcome) -> None:
            nonlocal noise_std
            number = outcome.number
            updates = {u.participant: u for u in observer.updates(number)}
            participants = {p.id: p for p in observer.participants()}
            accepted = [c.delta for c in aggregator.contributions(number)]
            noise_std = coordinate_std(accepted) if accepted else noise_std
            for name in names:
                update = updates.get(ids[name])
                paid = {p.round: p for p in observer.balance(ids[name]).payouts}.get(number)
                participant = participants[ids[name]]
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
            summaries.append(
                {
                    "round": number,
                    "accepted": len(outcome.accepted),
                    "rejected": len(outcome.rejected),
                    "seconds": round(time.perf_counter() - started, 2),
                    **{k: outcome.metrics.get(k) for k in ("accuracy", "precision", "recall", "f1")},
                }
            )
            logger.info("round %d: %s", number, summaries[-1])

        evaluate = held_out_evaluator(model, test_tensors, device=train.device, digits=6)
        driver = RoundDriver(aggregator, collect=collect, evaluate=evaluate, record=record)
        for _ in tqdm(range(rounds), desc="rounds", unit="round"):
            started = time.perf_counter()
            driver.run_round()
        balances = {name: observer.balance(ids[name]).balance for name in names}
        final = {p.id: p for p in observer.participants()}
        rules = {k: v for k, v in vars(observer.rules()).items() if k.startswith(("trust", "reward"))}
    return {
        "records": records,
        "rounds": summaries,
        "balances": balances,
        "final": {
            name: {"trust": final[ids[name]].trust, "status": final[ids[name]].status, "role": ROLES[name]}
            for name in names
        },
        "dataset_sizes": {name: len(part) for name, part in zip(names, parts, strict=True)},
        "rules": rules,
        "model": label,
        "train": {k: v for k, v in vars(train).items() if k != "progress"},
        "participant_ids": ids,
    }
