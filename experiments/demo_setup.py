"""What ``fedledger demo`` builds: a ledger (embedded, or the local Fabric network), the encrypted
update store, the model, the data, and 4 honest members plus one attacker."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from fedledger.experiments.attacks import Attack, AttackConfig
from fedledger.experiments.federation import FederationConfig, FederationResult, run_federation
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.connection import LedgerLocation, relative_path
from fedledger.sdk.store import UpdateStore, create_key, load_key
from fedledger.trainer.aggregator import RoundOutcome
from fedledger.trainer.data import load_text
from fedledger.trainer.local_trainer import TrainConfig
from fedledger.trainer.models import TINY_BERT, LoraSettings, apply_lora, load_model, minilm_path, tiny_model
from fedledger.trainer.privacy import PrivacyConfig

logger = logging.getLogger(__name__)

STORE_KEY = "store.key"

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


def _store(folder: Path, *, plaintext: bool) -> UpdateStore:
    """The run's store: keyless when rounds are secret-shared, sealed under a consortium key for plaintext rounds
    (``--plaintext``). A store made before (a Fabric network's, reused across runs) keeps its key, which its older
    objects need."""
    key_file = folder / STORE_KEY
    if plaintext and not key_file.exists():
        create_key(key_file)
    return UpdateStore(folder / "store", load_key(key_file) if key_file.exists() else None)


def _ledger(args: argparse.Namespace) -> tuple[Callable[[str, str, bool], FedLedgerClient], Path, dict[str, Any]]:
    """The run's ledger, the folder of its store and identities, and what the card records of them: every path
    relative to the run folder ``args.out``, so that the run still audits after it is moved or copied."""
    if args.ledger == "embedded":
        from fedledger.chaincode.embedded.bootstrap import create_consortium

        location = LedgerLocation("embedded", create_consortium(args.out / "consortium").base)
        return _connector(location), args.out, location.record(relative_to=args.out)
    from fedledger.sdk.fabric.local import LocalFabricNetwork

    # The Fabric ledger outlives a demo run: identities and the store live beside the network so that
    # a second run continues the same federation.
    state = args.network_dir / "demo"
    location = LocalFabricNetwork(args.network_dir, state / "identities").location
    info = {
        "kind": "fabric",
        "channel": location.channel,
        "chaincode": location.chaincode,
        "network_dir": relative_path(args.network_dir, args.out),  # lets `fedledger report` reach the ledger again
    }
    return _connector(location), state, info


def _connector(location: LedgerLocation) -> Callable[[str, str, bool], FedLedgerClient]:
    def connect(mspid: str, name: str, admin: bool) -> FedLedgerClient:
        return location.client(mspid, name, admin=admin)

    return connect


#: LoRA for the demo when ``lora="last"``: query/value of the *last* encoder layer plus the head (about 7k
#: trainable parameters instead of 75k), so DP noise lands on fewer coordinates and backpropagation stops early.
#: Kept for experiments; under DP ``"pooler"`` learned where this did not (docs/bench-privacy-utility.md).
DEMO_LORA = LoraSettings(r=4, alpha=8)
#: LoRA for ``lora="pooler"``, the demo's adapter under DP-SGD: rank 1 on the pooler's dense layer plus the head
#: (1,538 trainable values on MiniLM). DP-SGD adds noise of the clipping norm's size to *every* trainable
#: coordinate, so with ~100 rows per member the 75k-value default adapter learns nothing at ε = 8 (every run
#: stayed at the majority class); on 1.5k values the class signal survives the noise.
DEMO_LORA_DP = LoraSettings(r=1, alpha=1)
#: Local optimisation of the demo's members without DP: Adam (reaches ~0.90 accuracy in 3 rounds).
DEMO_TRAIN = {"optimizer": "adamw", "learning_rate": 3e-3, "batch_size": 16, "epochs": 2}
#: With DP, on the small "pooler" adapter: Adam with a large step and 3 local epochs. The pooled vector the head
#: reads has a large common part (norm ~1.25) and a small input-dependent part (~0.18), so plain SGD needs
#: hundreds of steps to turn the latter into a decision; Adam's per-coordinate scaling gets there within the
#: ~30 noisy steps per round that ε = 8 over 3 rounds allows.
DEMO_TRAIN_DP = {"optimizer": "adamw", "learning_rate": 0.05, "batch_size": 16, "epochs": 3}
#: Per-sample clipping norm of DP-SGD (about the per-sample gradient norm at round 0).
DEMO_MAX_GRAD_NORM = 1.0
#: The demo's rows as text: each measurement as its tertile (the library's default writes the numbers, on which
#: the demo's adapter scores far lower). The model card records it.
DEMO_TEXT_STYLE = "levels"
#: The demo's rows as :func:`fedledger.trainer.data.load_text` writes them (recorded in the card for `fedledger score`).
DEMO_TEXT_LOADER = ("breast_cancer_text", {"features": "mean", "style": DEMO_TEXT_STYLE})
DEMO_TEXT_FORMAT = (
    f"fedledger.trainer.data.load_breast_cancer_text(style={DEMO_TEXT_STYLE!r}): a breast-cancer Wisconsin record, "
    "each of the 10 mean measurements written as its tertile in the table (low, medium, high)"
)
DEMO_DELTA = 1e-5

AdapterLayout = Literal["all", "last", "pooler"]
ADAPTER_LAYOUTS: tuple[str, ...] = get_args(AdapterLayout)


def last_layer_targets(model: Any) -> list[str] | None:
    """LoRA targets on the last encoder layer of a BERT-like model (None: the architecture's defaults)."""
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    if getattr(config, "model_type", None) not in ("bert", "roberta") or not layers:
        return None
    return [f"layer.{layers - 1}.attention.self.query", f"layer.{layers - 1}.attention.self.value"]


def pooler_targets(model: Any) -> list[str] | None:
    """The pooler's dense layer of a BERT-like sequence classifier (None: the model has no pooler)."""
    names = {name for name, _ in model.named_modules()}
    return ["pooler.dense"] if any(n.endswith("pooler.dense") for n in names) else None


def demo_adapter(epsilon: float) -> AdapterLayout:
    """The demo's adapter layout: ``"pooler"`` when ``epsilon`` turns DP on, else ``"all"``."""
    return "pooler" if _private(epsilon) else "all"


def load_demo_model(name: str, seed: int, *, lora: AdapterLayout = "all") -> tuple[Any, Any, str]:
    """'minilm' (the packaged all-MiniLM-L6-v2), 'tiny-bert' (random, for tests) or a local model path, with LoRA.

    ``lora="all"`` (default) applies the library default (r=8 on every layer's query/value, plus the head);
    ``"last"`` applies :data:`DEMO_LORA` on the last layer only; ``"pooler"`` applies :data:`DEMO_LORA_DP` on the
    pooler (models without a pooler fall back to ``"last"``). Every member of a federation must use the same.
    """
    if lora not in ADAPTER_LAYOUTS:
        raise ValueError(f"The 'lora' parameter must be 'all', 'last' or 'pooler'. Got {lora!r} instead.")
    if name == "tiny-bert":
        model, tokenizer = tiny_model("bert", seed=seed)
        label = TINY_BERT
    else:
        path = minilm_path() if name == "minilm" else Path(name)
        model, tokenizer = load_model(path, task="classification", num_labels=2, seed=seed)
        label = "sentence-transformers/all-MiniLM-L6-v2" if name == "minilm" else str(name)
    settings = LoraSettings()
    pooler = pooler_targets(model) if lora == "pooler" else None
    if pooler is not None:
        settings = dataclasses.replace(DEMO_LORA_DP, target_modules=pooler)
    elif lora in ("last", "pooler"):
        settings = dataclasses.replace(DEMO_LORA, target_modules=last_layer_targets(model))
    return apply_lora(model, task="classification", settings=settings, seed=seed), tokenizer, label


def demo_train_config(
    *, epsilon: float, epochs: int | None = None, learning_rate: float | None = None, seed: int = 0
) -> TrainConfig:
    """The members' local training: :data:`DEMO_TRAIN_DP` when ``epsilon`` turns DP on, else :data:`DEMO_TRAIN`."""
    recipe = DEMO_TRAIN_DP if _private(epsilon) else DEMO_TRAIN
    return TrainConfig(
        epochs=epochs or int(recipe["epochs"]),
        batch_size=int(recipe["batch_size"]),
        optimizer=recipe["optimizer"],  # type: ignore[arg-type]
        learning_rate=learning_rate or float(recipe["learning_rate"]),
        max_length=64,
        seed=seed,
    )


def _private(epsilon: float) -> bool:
    """Whether ``epsilon`` turns DP-SGD on (finite and positive), the switch for every DP-specific choice."""
    return demo_privacy_config(epsilon, rounds=1) is not None


def demo_privacy_config(epsilon: float, *, rounds: int) -> PrivacyConfig | None:
    """DP-SGD with ε spent over all ``rounds`` (δ = 1e-5, Poisson sampling, per-sample clipping); None if ε <= 0."""
    if not epsilon > 0 or math.isinf(epsilon):
        return None
    return PrivacyConfig(
        target_epsilon=epsilon, target_delta=DEMO_DELTA, max_grad_norm=DEMO_MAX_GRAD_NORM, rounds=rounds
    )


def demo_rules(epsilon: float, *, plaintext: bool = False) -> dict[str, Any]:
    """The consortium's rules for a demo at ``epsilon``: under DP-SGD the ledger's budget is the members'
    target (ε over all rounds, at :data:`DEMO_DELTA`), so the ledger enforces the very budget the demo states."""
    rules = {**DEMO_RULES, **({"secure_aggregation": False} if plaintext else {})}
    if not _private(epsilon):
        return rules
    return {**rules, "epsilon_total": epsilon, "epsilon_per_round": epsilon, "dp_delta": DEMO_DELTA}


def prepare(args: argparse.Namespace) -> DemoSetup:
    connect, state_dir, ledger_info = _ledger(args)
    ledger_info = {
        **ledger_info,
        "store": relative_path(state_dir / "store", args.out),
    }
    if args.plaintext or (state_dir / STORE_KEY).exists():
        ledger_info["store_key"] = relative_path(state_dir / STORE_KEY, args.out)
    model, tokenizer, label = load_demo_model(args.model, args.seed, lora=demo_adapter(args.epsilon))
    attack = Attack(args.attack)
    attacks = (
        {} if attack == Attack.NONE else {args.members - 1: AttackConfig(kind=attack, scale=-10.0, seed=args.seed)}
    )
    config = FederationConfig(
        rounds=args.rounds,
        members=args.members,
        attacks=attacks,
        seed=args.seed,
        rules=demo_rules(args.epsilon, plaintext=args.plaintext),
    )
    train = demo_train_config(
        epsilon=args.epsilon, epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed
    )
    privacy = demo_privacy_config(args.epsilon, rounds=args.rounds)
    dp_text = (
        f"DP-SGD, privacy budget ε = {args.epsilon:g} per member over all {args.rounds} rounds at δ = "
        f"{DEMO_DELTA:g} (composed and enforced by the ledger)"
        if privacy
        else "no DP"
    )
    banner = (
        f"fedledger demo — {args.ledger} ledger, {label} + LoRA, breast-cancer Wisconsin as text, "
        f"{args.members} members ({'last one: ' + attack.value if attacks else 'all honest'}), "
        f"{args.rounds} rounds, {dp_text}"
    )
    return DemoSetup(
        out=args.out,
        ledger=args.ledger,
        connect=connect,
        store=_store(state_dir, plaintext=args.plaintext),
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


def release(setup: DemoSetup) -> None:
    """Closes the run's embedded ledger, so that its folder can be moved (``fedledger demo`` swaps it in)."""
    if setup.ledger == "embedded":
        from fedledger.sdk.embedded import forget_ledger

        forget_ledger(setup.out / "consortium" / "ledger")


def run(setup: DemoSetup, *, on_round: Callable[[RoundOutcome], None] | None = None) -> FederationResult:
    return run_federation(
        setup.connect,
        setup.store,
        setup.model,
        setup.tokenizer,
        load_text(*DEMO_TEXT_LOADER),
        out_dir=setup.out,
        text_format=DEMO_TEXT_FORMAT,
        text_loader=DEMO_TEXT_LOADER,
        model_seed=setup.config.seed,  # prepare() built the model with the run's seed
        model_name=setup.model_name,
        config=setup.config,
        train=setup.train,
        privacy=setup.privacy,
        ledger_info=setup.ledger_info,
        on_round=on_round,
    )
