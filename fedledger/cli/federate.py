"""``fedledger client | aggregator | audit``: the federation as separate processes that coordinate only
through the ledger and the update store (one ``client`` per member, one ``aggregator``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fedledger.chaincode.privacy_budget import SPENT_HEADING, spent_of_budget
from fedledger.cli.output import Outcome, add_json_option, error_summary
from fedledger.identity import load_msp_identity
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.connection import LedgerLocation, relative_path
from fedledger.sdk.connection import open_client as open_client_at
from fedledger.sdk.store import UpdateStore, load_key


def _connection_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--ledger-dir", type=Path, help="embedded consortium (or ledger) folder")
    where.add_argument("--network-dir", type=Path, help="Fabric network folder with network.json (make network-up)")
    parser.add_argument("--msp-dir", type=Path, required=True, help="this process's MSP folder (signcerts, keystore)")
    parser.add_argument("--mspid", required=True)
    parser.add_argument("--store", type=Path, required=True, help="update store folder (shared by the consortium)")
    parser.add_argument(
        "--store-key",
        type=Path,
        help="the consortium's 32-byte store key file: needed only when it runs plaintext rounds (rules "
        "secure_aggregation false), whose updates the store then seals",
    )


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm", help="'minilm', 'tiny-bert' or a local Hugging Face model path")
    parser.add_argument(
        "--adapter",
        choices=["all", "last", "pooler"],
        default="all",
        help="LoRA layout, the same for every member and the aggregator: every layer's query/value + head (all), "
        "the last layer + head (last), or rank 1 on the pooler + head (pooler: the small adapter for DP-SGD)",
    )
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    client = commands.add_parser("client", help="run one consortium member: train and submit each round")
    _connection_options(client)
    _model_options(client)
    client.add_argument("--data", required=True, help="CSV/JSONL with text,label columns, or 'breast-cancer:I/N'")
    client.add_argument("--rounds", type=int, default=1, help="rounds to take part in, then exit")
    client.add_argument("--epsilon", type=float, default=8.0, help="DP-SGD target ε over --rounds (0 = no DP)")
    client.add_argument("--epochs", type=int, default=2)
    client.add_argument("--learning-rate", type=float, default=5e-3)
    client.add_argument("--journal", type=Path, help="crash-resume journal (default: <store>/../journals/<id>.json)")
    client.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a round to open")
    client.set_defaults(run=_run_client)

    aggregator = commands.add_parser("aggregator", help="run the aggregator: open, finalize, aggregate, commit")
    _connection_options(aggregator)
    _model_options(aggregator)
    aggregator.add_argument(
        "--test-data", default="breast-cancer:test", help="held-out CSV/JSONL or breast-cancer:test"
    )
    aggregator.add_argument("--rounds", type=int, default=1)
    aggregator.add_argument("--expect", type=int, required=True, help="members expected per round")
    aggregator.add_argument("--round-seconds", type=float, default=600.0, help="round deadline")
    aggregator.add_argument(
        "--strategy",
        choices=["fedavg", "fedadam"],
        help="default: the one the consortium's rules name (server_optimizer); the peers refuse any other",
    )
    aggregator.add_argument(
        "--card",
        type=Path,
        default=Path("model"),
        help="where to write the adapter and model card at the end (check it: fedledger audit CARD)",
    )
    aggregator.add_argument(
        "--checkpoint",
        type=Path,
        help="the strategy's server state between runs (default: <store>/../aggregator/strategy.safetensors)",
    )
    aggregator.set_defaults(run=_run_aggregator)

    holder = commands.add_parser(
        "holder",
        help="run an organisation's share holder (as its admin): register its share key, then sketch and sum its "
        "shares of each secret-shared round",
    )
    _connection_options(holder)
    holder.add_argument(
        "--key",
        type=Path,
        required=True,
        help="the organisation's X25519 share key (PEM); created there, mode 0600, when no file is there",
    )
    holder.add_argument("--rounds", type=int, default=1, help="rounds to serve (until its sum is on the ledger)")
    holder.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a round to need this holder")
    holder.set_defaults(run=_run_holder)

    audit = commands.add_parser("audit", help="re-verify a finished run against the ledger; report the first mismatch")
    audit.add_argument(
        "run_dir", type=Path, help="run folder holding model/provenance.json (e.g. demo-out), or the card folder"
    )
    audit.add_argument(
        "--network-dir", type=Path, help="for a run on Fabric: the running network's folder (default: the recorded one)"
    )
    add_json_option(audit)
    audit.set_defaults(run=_run_audit)


def _location(args: argparse.Namespace) -> LedgerLocation:
    if args.ledger_dir is not None:
        return LedgerLocation("embedded", args.ledger_dir)
    from fedledger.sdk.fabric.profile import load_network_dir

    profile = load_network_dir(args.network_dir)
    return LedgerLocation("fabric", args.network_dir, channel=profile.channel, chaincode=profile.chaincode)


def _recorded_ledger(args: argparse.Namespace, *, run: Path) -> dict[str, Any]:
    """What the card records of the ledger and the store, every path relative to the run folder (the card's
    parent), so that `fedledger audit` checks the run where it is now."""
    record = {
        **_location(args).record(relative_to=run),
        "store": relative_path(args.store, run),
    }
    if args.store_key is not None:
        record["store_key"] = relative_path(args.store_key, run)
    if record["kind"] == "fabric":
        record["network_dir"] = record["path"]  # what `fedledger report` and `audit` read for a Fabric run
    return record


def open_client(args: argparse.Namespace) -> FedLedgerClient:
    return open_client_at(_location(args), *load_msp_identity(args.msp_dir, args.mspid))


def _store(args: argparse.Namespace) -> UpdateStore:
    return UpdateStore(args.store, load_key(args.store_key) if args.store_key is not None else None)


def _model(args: argparse.Namespace) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fedledger.experiments.demo_setup import load_demo_model

    model, tokenizer, _label = load_demo_model(args.model, args.seed, lora=args.adapter)
    return model, tokenizer


def _dataset(spec: str, *, seed: int, test: bool = False) -> Any:
    from fedledger.trainer.data import load_breast_cancer_text, load_table, partition_iid, train_test_split

    if not spec.startswith("breast-cancer"):
        return load_table(spec)
    train, held_out = train_test_split(load_breast_cancer_text(), test_fraction=0.2, seed=seed)
    if test or spec.endswith(":test"):
        return held_out
    part = spec.partition(":")[2] or "1/1"
    index, _, count = part.partition("/")
    return train.subset(partition_iid(len(train), int(count), seed=seed)[int(index) - 1])


def _text_format(spec: str) -> str:
    """How the rows of ``--data`` / ``--test-data`` ``spec`` become text (the model card records it)."""
    if spec.startswith("breast-cancer"):
        return "fedledger.trainer.data.load_breast_cancer_text(): a breast-cancer Wisconsin record with its numbers"
    return f"the text column of {spec}, as written there"


def _run_client(args: argparse.Namespace) -> int:
    from fedledger.experiments.federation import schema_hash
    from fedledger.trainer.data import to_tensor_dataset
    from fedledger.trainer.local_trainer import LocalTrainer, TrainConfig
    from fedledger.trainer.member import Member
    from fedledger.trainer.privacy import PrivacyConfig

    client = open_client(args)
    model, tokenizer = _model(args)
    data = _dataset(args.data, seed=args.seed)
    train = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, max_length=args.max_length, progress=True)
    privacy = PrivacyConfig(target_epsilon=args.epsilon, rounds=args.rounds) if args.epsilon > 0 else None
    whoami = client.whoami()["id"]
    journal = args.journal or args.store.parent / "journals" / f"{whoami.replace(':', '_')}.json"
    member = Member(
        client,
        _store(args),
        LocalTrainer(model, train=train, privacy=privacy),
        to_tensor_dataset(data, tokenizer, max_length=args.max_length),
        journal=journal,
    )
    member.ensure_registered(dataset_size=len(data), schema_hash=schema_hash(data))
    member.restore()
    done = 0
    deadline = time.time() + args.wait
    waiting = False
    while done < args.rounds and time.time() < deadline:
        open_rounds = [r for r in client.rounds() if r.status == "open" and r.deadline > time.time()]
        pending = [r for r in open_rounds if not _submitted(client, r.number, whoami)]
        if not pending:
            if not waiting:
                print(f"waiting up to {args.wait:g} s for a round to open ({done} of {args.rounds} done)", flush=True)
                waiting = True
            time.sleep(2.0)
            continue
        waiting = False
        submission = member.participate(pending[0].number)
        spent = spent_of_budget(submission.update.epsilon_spent, client.rules().epsilon_total)
        print(f"round {pending[0].number}: submitted {submission.update.hash} ({SPENT_HEADING}: {spent})")
        done += 1
        deadline = time.time() + args.wait
    if done < args.rounds:
        print(
            f"fedledger client: no round opened within {args.wait:g} s ({done} of {args.rounds} done); "
            "ask the aggregator to open one, or give --wait more seconds",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_holder(args: argparse.Namespace) -> int:
    from fedledger.shares import SharesError
    from fedledger.trainer.share_holder import ShareHolder, load_or_create_share_key

    if args.key.exists() and not args.key.is_file():
        raise ValueError(f"--key {args.key} is not a file; give the path of the organisation's share key (PEM)")
    try:
        key = load_or_create_share_key(args.key)
    except SharesError as exc:
        raise ValueError(f"{args.key} is not a share key ({exc}); give the organisation's PEM key") from None
    client = open_client(args)
    holder = ShareHolder(client, _store(args), key, org=args.mspid)
    holder.register()
    print(f"{args.mspid}: share key registered; serving {args.rounds} round(s)", flush=True)
    served: set[int] = set()
    deadline = time.time() + args.wait
    while len(served) < args.rounds and time.time() < deadline:
        acted = False
        for record in client.rounds():
            if not record.shared or record.number in served:
                continue
            if record.status == "closed" and holder.sketch(record.number) is not None:
                acted = True
            elif record.status == "finalized":
                part = holder.sum(record.number)
                if part is not None and part.sum_hash:
                    print(f"round {record.number}: {args.mspid}'s share sum {part.sum_hash} is on the ledger")
                    served.add(record.number)
                    acted = True
            elif record.status in ("aggregated", "abandoned"):
                served.add(record.number)
        if acted:
            deadline = time.time() + args.wait
        time.sleep(1.0)
    if len(served) < args.rounds:
        print(
            f"fedledger holder: {len(served)} of {args.rounds} round(s) served within {args.wait:g} s; ask the "
            "aggregator to open and close a round, or give --wait more seconds",
            file=sys.stderr,
        )
        return 1
    return 0


def _submitted(client: FedLedgerClient, number: int, participant: str) -> bool:
    return any(u.participant == participant for u in client.updates(number))


def _run_aggregator(args: argparse.Namespace) -> int:
    from fedledger.tensors import to_numpy
    from fedledger.trainer.aggregator import Aggregator
    from fedledger.trainer.data import to_tensor_dataset
    from fedledger.trainer.evaluate import evaluate
    from fedledger.trainer.models import get_adapter_state, set_adapter_state
    from fedledger.trainer.provenance import genesis_name, input_format, model_identity, publish_card
    from fedledger.trainer.rounds import RoundDriver, RoundOutcome
    from fedledger.trainer.strategy import check_strategy, make_strategy, strategy_from_rules

    client = open_client(args)
    model, tokenizer = _model(args)
    test = _dataset(args.test_data, seed=args.seed, test=True)
    tensors = to_tensor_dataset(test, tokenizer, max_length=args.max_length)

    def evaluate_state(state: Any) -> dict[str, float]:
        set_adapter_state(model, state)
        return {k: round(float(v), 6) for k, v in evaluate(model, tensors, num_labels=test.num_labels).items()}

    aggregator = Aggregator(client, _store(args), round_seconds=args.round_seconds)
    aggregator.ensure_registered()
    identity = model_identity(
        model,
        base_model=str(args.model),
        input_format=input_format(
            _text_format(args.test_data),
            test,
            max_length=args.max_length,
            **({"loader": "breast_cancer_text", "options": {}} if args.test_data.startswith("breast-cancer") else {}),
        ),
    )
    genesis = aggregator.publish_genesis(to_numpy(get_adapter_state(model)), name=genesis_name(identity))

    def collect(number: int) -> None:
        print(f"round {number}: waiting for {args.expect} update(s) until {client.round(number).deadline:.0f}")
        print(f"round {number}: {aggregator.wait_for_updates(number, expected=args.expect)} update(s)")

    def record(outcome: RoundOutcome) -> None:
        if outcome.started_at != "open":
            print(f"round {outcome.number}: resumed at step {outcome.started_at!r} (the ledger's state)")
        print(f"round {outcome.number}: accepted {len(outcome.accepted)}, rejected {len(outcome.rejected)}")
        if outcome.model is None:
            print(f"round {outcome.number}: abandoned, no update was accepted")
        else:
            model = outcome.model
            print(f"round {outcome.number}: model v{model.version} {model.hash} {json.dumps(outcome.metrics)}")

    checkpoint = args.checkpoint or args.store.parent / "aggregator" / "strategy.safetensors"
    strategy = make_strategy(args.strategy) if args.strategy else strategy_from_rules(client.rules())
    check_strategy(strategy, client.rules())
    driver = RoundDriver(
        aggregator,
        collect=collect,
        strategy=strategy,
        evaluate=evaluate_state,
        record=record,
        checkpoint=checkpoint,
    )
    if driver.restored:
        print(f"strategy state restored from {checkpoint}")
    outcomes = driver.run(args.rounds)
    _, final_state = aggregator.global_state()
    publish_card(
        args.card,
        model=model,
        state=final_state,
        outcomes=outcomes,
        genesis=genesis.hash,
        identity=identity,
        ledger=_recorded_ledger(args, run=args.card.parent),
        training={
            "strategy": strategy.describe(),
            "adapter": args.adapter,
            # what `fedledger score` needs to rebuild the held-out rows (_dataset's split) and the base model
            "held_out": {"test_fraction": 0.2, "seed": args.seed, "stratified": True},
            "base_model_seed": args.seed,
        },
    )
    print(f"model card: {args.card} (check it with `fedledger audit {args.card}`)")
    return 0


def _run_audit(args: argparse.Namespace) -> Outcome:
    from fedledger.cli.ledger import ledger_dir
    from fedledger.report.rundir import LedgerUnreachableError, connect_ledger, locate
    from fedledger.trainer.audit import audit_run
    from fedledger.trainer.strategy import make_strategy

    run = locate(args.run_dir)
    if run.provenance is None:
        raise FileNotFoundError(
            f"{args.run_dir} has no model card (model/provenance.json), written when a run finishes; audit a "
            f"finished run, or check its ledger alone: fedledger ledger verify {args.run_dir}"
        )
    network_dir = args.network_dir if run.kind == "fabric" else None
    params = dict(run.provenance["training"]["strategy"])
    try:
        client, store = connect_ledger(run, network_dir=network_dir), run.store(network_dir=network_dir)
    except LedgerUnreachableError as exc:
        print(f"fedledger: error: {exc}", file=sys.stderr)
        return Outcome(1, error_summary("audit", str(exc), 1))
    ledger = ledger_dir(run.resolve(run.ledger["path"])) if run.kind == "embedded" else None
    report = audit_run(client, store, run.card, make_strategy(params.pop("name"), **params), ledger_dir=ledger)
    print(report)
    return Outcome(0 if report.ok else 1, {"card": str(run.card), "result": str(report)})
