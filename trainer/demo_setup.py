"""What ``fedledger demo`` builds: a ledger (embedded, or the local Fabric network), the encrypted
update store, the model, the data, and 4 honest members plus one attacker."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import UpdateStore, create_key, load_key

from .attacks import Attack, AttackConfig
from .client import TrainConfig
from .data import load_breast_cancer_text
from .federation import FederationConfig, FederationResult, run_federation
from .models import apply_lora, load_model, minilm_path, tiny_model
from .privacy import PrivacyConfig
from .server import RoundOutcome

logger = logging.getLogger(__name__)

# The detector needs at least four updates to compare; rewards and trust as documented in the README.
DEMO_RULES = {"detector_min_updates": 4, "epsilon_per_round": 10.0, "epsilon_total": 50.0, "max_update_norm": 1e4}


@dataclass
class DemoSetup:
    out: Path
    ledger: str
    connect: Callable[[str, str, bool], FedLedgerClient]
    store: UpdateStore
    observer: FedLedgerClient
    model: Any
    tokenizer: Any
    model_name: str
    config: FederationConfig
    train: TrainConfig
    privacy: PrivacyConfig | None
    banner: str
    ledger_info: dict[str, Any]


def _store(folder: Path) -> UpdateStore:
    key_file = folder / "store.key"
    key = load_key(key_file) if key_file.exists() else create_key(key_file)
    return UpdateStore(folder / "store", key)


def _ledger(args: argparse.Namespace) -> tuple[Callable[[str, str, bool], FedLedgerClient], Path, dict[str, Any]]:
    if args.ledger == "embedded":
        from fedledger.chaincode.embedded.bootstrap import create_consortium
        from fedledger.sdk.gateway import connect

        consortium = create_consortium(args.out / "consortium")

        def connect_embedded(mspid: str, name: str, admin: bool) -> FedLedgerClient:
            identity, signer = consortium.user(mspid, name, admin=admin)
            network = connect(identity, signer=signer, ledger_dir=consortium.ledger_dir).get_network("mychannel")
            return FedLedgerClient(network.get_contract("fedledger"), network)

        return connect_embedded, args.out, {"kind": "embedded", "channel": "mychannel", "path": str(consortium.base)}
    from fedledger.sdk.fabric.local import LocalFabricNetwork

    # The Fabric ledger outlives a demo run: identities and the store live beside the network so that
    # a second run continues the same federation.
    state = args.network_dir / "demo"
    network = LocalFabricNetwork(args.network_dir, state / "identities")
    info = {"kind": "fabric", "channel": network.profile.channel, "chaincode": network.profile.chaincode}
    return network.client, state, info


def load_demo_model(name: str, seed: int) -> tuple[Any, Any, str]:
    """'minilm' (the packaged all-MiniLM-L6-v2), 'tiny-bert' (random, for tests) or a local model path, with LoRA."""
    if name == "tiny-bert":
        model, tokenizer = tiny_model("bert", seed=seed)
        label = "tiny-bert (random init)"
    else:
        path = minilm_path() if name == "minilm" else Path(name)
        model, tokenizer = load_model(path, task="classification", num_labels=2, seed=seed)
        label = "sentence-transformers/all-MiniLM-L6-v2" if name == "minilm" else str(name)
    return apply_lora(model, task="classification", seed=seed), tokenizer, label


def prepare(args: argparse.Namespace) -> DemoSetup:
    connect, state_dir, ledger_info = _ledger(args)
    ledger_info = {**ledger_info, "store": str(state_dir / "store")}
    model, tokenizer, label = load_demo_model(args.model, args.seed)
    attack = Attack(args.attack)
    attacks = (
        {} if attack == Attack.NONE else {args.members - 1: AttackConfig(kind=attack, scale=-10.0, seed=args.seed)}
    )
    config = FederationConfig(
        rounds=args.rounds, members=args.members, attacks=attacks, seed=args.seed, rules={**DEMO_RULES}
    )
    # Under DP-SGD, AdamW rescales the injected noise into full-size steps; plain SGD learns (measured in
    # tests/trainer and the issue notes), so DP runs use SGD with a large step and bigger batches.
    dp = args.epsilon > 0
    train = TrainConfig(
        epochs=args.epochs,
        batch_size=64 if dp else 16,
        optimizer="sgd" if dp else "adamw",
        learning_rate=args.learning_rate or (0.15 if dp else 3e-3),
        max_length=64,
        seed=args.seed,
    )
    privacy = (
        PrivacyConfig(target_epsilon=args.epsilon, target_delta=1e-5, max_grad_norm=1.0, rounds=args.rounds)
        if args.epsilon > 0
        else None
    )
    dp_text = f"DP-SGD ε={args.epsilon} δ=1e-5 over {args.rounds} rounds" if privacy else "no DP"
    banner = (
        f"fedledger demo — {args.ledger} ledger, {label} + LoRA, breast-cancer Wisconsin as text, "
        f"{args.members} members ({'last one: ' + attack.value if attacks else 'all honest'}), "
        f"{args.rounds} rounds, {dp_text}"
    )
    return DemoSetup(
        out=args.out,
        ledger=args.ledger,
        connect=connect,
        store=_store(state_dir),
        observer=connect("Org2MSP", "auditor", False),
        model=model,
        tokenizer=tokenizer,
        model_name=label,
        config=config,
        train=train,
        privacy=privacy,
        banner=banner,
        ledger_info=ledger_info,
    )


def run(setup: DemoSetup, *, on_round: Callable[[RoundOutcome], None] | None = None) -> FederationResult:
    return run_federation(
        setup.connect,
        setup.store,
        setup.model,
        setup.tokenizer,
        load_breast_cancer_text(style="levels"),
        out_dir=setup.out,
        model_name=setup.model_name,
        config=setup.config,
        train=setup.train,
        privacy=setup.privacy,
        ledger_info=setup.ledger_info,
        on_round=on_round,
    )
