"""A whole federated run over a ledger: consortium set-up, members, aggregator, rounds, model card.

Used by ``fedledger demo`` (all members in one process, sharing one model object to save memory)
and by the tests. Members and aggregator only talk through the ledger and the update store,
exactly as the separate ``fedledger client`` / ``fedledger aggregator`` processes do.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fedledger.chaincode.errors import ContractError, PermissionDenied
from fedledger.experiments.attacks import Attack, AttackConfig, MaliciousMember, poison_dataset
from fedledger.experiments.baseline import write_baseline
from fedledger.sdk.client import FedLedgerClient, grant_role
from fedledger.sdk.store import UpdateStore
from fedledger.tensors import to_numpy
from fedledger.trainer.aggregator import Aggregator
from fedledger.trainer.data import TextDataset, partition_dirichlet, partition_iid, to_tensor_dataset, train_test_split
from fedledger.trainer.evaluate import evaluate
from fedledger.trainer.local_trainer import LocalTrainer, TrainConfig
from fedledger.trainer.member import Member
from fedledger.trainer.models import Task, get_adapter_state, set_adapter_state
from fedledger.trainer.privacy import PrivacyConfig
from fedledger.trainer.provenance import (
    genesis_name,
    input_format,
    model_identity,
    publish_card,
    round_timings,
    write_timings,
)
from fedledger.trainer.rounds import RoundDriver, RoundOutcome
from fedledger.trainer.share_holder import ShareHolder, load_or_create_share_key
from fedledger.trainer.strategy import Strategy, make_strategy

logger = logging.getLogger(__name__)

Connect = Callable[[str, str, bool], FedLedgerClient]  # (mspid, user name, admin?) -> client

MEMBER_NAMES = ["hospital-a", "hospital-b", "clinic-c", "clinic-d", "mallory", "hospital-f", "clinic-g", "lab-h"]


@dataclass(frozen=True, kw_only=True)
class FederationConfig:
    rounds: int = 3
    members: int = 5
    attacks: Mapping[int, AttackConfig] = field(default_factory=dict)  # member index -> attack
    partition: str = "dirichlet"
    alpha: float = 1.0
    test_fraction: float = 0.2
    seed: int = 0
    strategy: str = "fedavg"
    round_seconds: float = 600.0
    organizations: tuple[str, ...] = ("Org1MSP", "Org2MSP")
    rules: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class FederationResult:
    outcomes: list[RoundOutcome]
    initial_metrics: dict[str, float]
    card_dir: Path
    members: dict[str, str]  # participant id -> member name
    seconds: float
    timings: dict[str, Any] = field(default_factory=dict)  # what timings.json holds: per-round step latencies


def schema_hash(dataset: TextDataset) -> str:
    """The data attestation's schema hash: the columns and the label names."""
    return hashlib.sha256(f"text,label:{','.join(dataset.label_names)}".encode()).hexdigest()


def run_federation(
    connect: Connect,
    store: UpdateStore,
    model: Any,
    tokenizer: Any,
    dataset: TextDataset,
    *,
    out_dir: Path | str,
    model_name: str,
    config: FederationConfig | None = None,
    train: TrainConfig | None = None,
    privacy: PrivacyConfig | None = None,
    task: Task = "classification",
    ledger_info: Mapping[str, Any] | None = None,
    text_format: str = "the text column of the members' data, as given",
    text_loader: tuple[str, Mapping[str, Any]] | None = None,
    model_seed: int | None = None,
    on_round: Callable[[RoundOutcome], None] | None = None,
    progress: bool = True,
) -> FederationResult:
    """``text_format`` says how a row became the text the model reads (recorded in the model card, so a user
    feeds the adapter what it was trained and scored on); ``text_loader``, when ``dataset`` came from one, is that
    loader's name and options (:func:`fedledger.trainer.data.load_text`), recorded so that ``fedledger score``
    can rebuild the held-out rows. ``model_seed``: the seed ``model`` was built with, recorded for the same use
    (it initialises a new classification head, whose weights the card's base model hash covers)."""
    cfg = config or FederationConfig()
    train = train or TrainConfig()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    strategy: Strategy = make_strategy(cfg.strategy)
    orgs = list(cfg.organizations)

    admin = connect(orgs[0], "Admin", True)
    try:
        # the server step the endorsing peers recompute is the strategy's (unless cfg.rules says otherwise)
        optimizer = strategy.server_optimizer()
        server_rules = optimizer.rules() if optimizer is not None else {}
        admin.init_consortium({"member_msps": orgs, **server_rules, **dict(cfg.rules)})
    except ContractError as exc:
        logger.info("consortium already initialised (%s); joining it", exc)
    admins = [admin, *(connect(org, "Admin", True) for org in orgs[1:])]
    auditor = connect(orgs[-1], "auditor", False)
    if auditor.whoami()["participant"] is None:
        grant_role(admins, auditor.whoami()["id"], "auditor")
        auditor.register("auditor")

    train_set, test_set = train_test_split(dataset, test_fraction=cfg.test_fraction, seed=cfg.seed)
    test_tensors = to_tensor_dataset(test_set, tokenizer, task=task, max_length=train.max_length)

    def evaluate_state(state: Mapping[str, Any]) -> dict[str, float]:
        set_adapter_state(model, state)
        metrics = evaluate(model, test_tensors, task=task, num_labels=dataset.num_labels, device=train.device)
        return {k: round(float(v), 6) for k, v in metrics.items()}

    holders = []
    if dict(cfg.rules).get("secure_aggregation", True) and len(orgs) >= 2:
        # each organisation's share key stays in its own folder; members seal its shares to the public half
        for org, org_admin in zip(orgs, admins, strict=True):
            key = load_or_create_share_key(out_dir / "organizations" / org / "share-key.pem")
            holder = ShareHolder(org_admin, store, key, org=org)
            holder.register()
            holders.append(holder)
    aggregator = Aggregator(
        connect(orgs[0], "aggregator", False), store, round_seconds=cfg.round_seconds, holders=holders
    )
    aggregator.ensure_registered(admins)
    identity = model_identity(
        model,
        base_model=model_name,
        input_format=input_format(
            text_format,
            dataset,
            max_length=train.max_length,
            loader=None if text_loader is None else text_loader[0],
            options=None if text_loader is None else text_loader[1],
        ),
    )
    genesis = aggregator.publish_genesis(to_numpy(get_adapter_state(model)), name=genesis_name(identity))
    initial = evaluate_state(aggregator.global_state()[1])

    if cfg.partition == "dirichlet":
        parts = partition_dirichlet(train_set.labels, cfg.members, alpha=cfg.alpha, seed=cfg.seed)
    else:
        parts = partition_iid(len(train_set), cfg.members, seed=cfg.seed)
    members: list[Member] = []
    names: dict[str, str] = {}
    schema = schema_hash(dataset)
    for i, part in enumerate(parts):
        name = MEMBER_NAMES[i] if i < len(MEMBER_NAMES) else f"member-{i}"
        attack = cfg.attacks.get(i, AttackConfig())
        local = poison_dataset(train_set.subset(part), attack)
        tensors = to_tensor_dataset(local, tokenizer, task=task, max_length=train.max_length)
        trainer = LocalTrainer(model, task=task, train=replace(train, seed=train.seed + 1000 * i), privacy=privacy)
        member_args = (connect(orgs[i % len(orgs)], name, False), store, trainer, tensors)
        journal = out_dir / "journals" / f"{name}.json"
        member = (
            MaliciousMember(*member_args, journal=journal, attack=attack)
            if attack.kind != Attack.NONE
            else Member(*member_args, journal=journal)
        )
        member.ensure_registered(dataset_size=len(local), schema_hash=schema, admin=admins[i % len(orgs)])
        member.restore()
        members.append(member)
        names[member.id] = name

    per_round: list[dict[str, Any]] = []
    member_seconds: dict[str, dict[str, float]] = {}
    round_started = time.perf_counter()
    setup_seconds = round_started - started

    def collect(number: int) -> None:
        for member in tqdm(members, desc=f"round {number}: members train", unit="member", disable=not progress):
            try:
                member_seconds[member.id] = member.participate(number).seconds
            except PermissionDenied as exc:  # e.g. a suspended member: the ledger refuses, the round goes on
                tqdm.write(f"  {names[member.id]} refused by the ledger: {exc}")
        aggregator.wait_for_updates(number, expected=len(members), timeout=5.0)

    def record(outcome: RoundOutcome) -> None:
        nonlocal round_started
        per_round.append(round_timings(outcome, dict(member_seconds), time.perf_counter() - round_started))
        member_seconds.clear()
        round_started = time.perf_counter()
        if on_round is not None:
            on_round(outcome)

    driver = RoundDriver(
        aggregator,
        collect=collect,
        strategy=strategy,
        evaluate=evaluate_state,
        record=record,
        checkpoint=out_dir / "aggregator" / "strategy.safetensors",
    )
    outcomes = driver.run(cfg.rounds)

    final_model, final_state = aggregator.global_state()
    set_adapter_state(model, final_state)
    card_dir = out_dir / "model"
    publish_card(
        card_dir,
        model=model,
        state=final_state,
        outcomes=outcomes,
        genesis=genesis.hash,
        identity=identity,
        ledger=dict(ledger_info or {}),
        training={
            "strategy": strategy.describe(),
            "train": {k: v for k, v in vars(train).items() if k != "progress"},
            "privacy": None if privacy is None else {k: v for k, v in vars(privacy).items()},
            "partition": cfg.partition,
            "alpha": cfg.alpha,
            # what `fedledger score` needs to rebuild the held-out rows and the base model the metrics came from
            "held_out": {"test_fraction": cfg.test_fraction, "seed": cfg.seed, "stratified": True},
            "base_model_seed": model_seed,
        },
    )
    seconds = time.perf_counter() - started
    timings = write_timings(card_dir, per_round, setup=setup_seconds, total=seconds, members=names)
    write_baseline(card_dir, genesis.hash, initial)
    logger.info("final model v%d %s", final_model.version, final_model.hash)
    return FederationResult(outcomes, initial, card_dir, names, seconds, timings)
