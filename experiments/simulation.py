"""A federation in one process without a ledger: N clients x R rounds, FedAvg/FedAdam, evaluation.

Used by tests and experiments. The rounds are the same :class:`~fedledger.trainer.rounds.RoundDriver` the
ledger-backed aggregator uses, over :class:`~fedledger.experiments.in_memory.InMemoryRounds`: updates travel
as safetensors bytes through the shared codec, checked against the genesis manifest, and are screened by
the hook the caller picks (the contract's verdict, or none).

Run it: ``python -m fedledger.experiments.simulation --model tiny-bert --clients 3 --rounds 2``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from fedledger.experiments.attacks import Attack, AttackConfig, poison_dataset, poison_update
from fedledger.experiments.in_memory import InMemoryRounds, Screen, accept_all
from fedledger.experiments.update_attacks import honest_statistics
from fedledger.tensors import NDState, encode, sha256_hex, to_numpy
from fedledger.trainer.data import TextDataset, partition_dirichlet, partition_iid, to_tensor_dataset, train_test_split
from fedledger.trainer.evaluate import evaluate
from fedledger.trainer.local_trainer import LocalTrainer, TrainConfig
from fedledger.trainer.models import Task, get_adapter_state, set_adapter_state
from fedledger.trainer.privacy import PrivacyConfig
from fedledger.trainer.rounds import RoundDriver, RoundOutcome
from fedledger.trainer.strategy import Strategy

__all__ = ["ClientReport", "RoundReport", "SimulationConfig", "SimulationResult", "run_simulation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Federation shape: clients, rounds, partitioning and the held-out split."""

    num_clients: int = 3
    rounds: int = 2
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = 0.5
    test_fraction: float = 0.2
    seed: int = 0


@dataclass
class ClientReport:
    client: int
    sha256: str
    num_bytes: int
    accepted: bool
    attack: str
    metadata: dict[str, Any]


@dataclass
class RoundReport:
    round: int
    metrics: dict[str, float]
    clients: list[ClientReport]
    seconds: float


@dataclass
class SimulationResult:
    initial_metrics: dict[str, float]
    rounds: list[RoundReport] = field(default_factory=list)
    global_state: NDState = field(default_factory=dict)
    manifest: dict[str, list[Any]] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text table of per-round metrics."""
        keys = [k for k in ("accuracy", "precision", "recall", "f1", "perplexity", "loss") if k in self.initial_metrics]
        lines = ["round  accepted  eps_max  " + "  ".join(f"{k:>10}" for k in keys) + "  seconds"]
        lines.append("0      -         -        " + "  ".join(f"{self.initial_metrics[k]:10.4f}" for k in keys))
        for r in self.rounds:
            eps = [float(c.metadata["epsilon"]) for c in r.clients if c.metadata.get("epsilon") is not None]
            acc = sum(c.accepted for c in r.clients)
            eps_text = f"{max(eps):7.3f}" if eps else "    off"
            lines.append(
                f"{r.round:<6} {acc}/{len(r.clients):<7} {eps_text}  "
                + "  ".join(f"{r.metrics[k]:10.4f}" for k in keys)
                + f"  {r.seconds:7.2f}"
            )
        return "\n".join(lines)


def run_simulation(
    model: Any,
    tokenizer: Any,
    dataset: TextDataset,
    *,
    task: Task = "classification",
    config: SimulationConfig | None = None,
    train: TrainConfig | None = None,
    privacy: PrivacyConfig | None = None,
    strategy: Strategy | None = None,
    attacks: Mapping[int, AttackConfig] | None = None,
    screen: Screen = accept_all,
    rules: Mapping[str, Any] | None = None,
    test: TextDataset | None = None,
    progress: bool = False,
) -> SimulationResult:
    """Run a federation in one process, sharing ``model`` (a peft model) between the clients.

    The rounds are the :class:`~fedledger.trainer.rounds.RoundDriver`'s over :class:`InMemoryRounds`.
    ``attacks`` maps client index -> attack (update attackers collude: they know the round's honest
    statistics). ``screen`` rules on the updates (default: accept all; ``contract_screen`` is what the
    contract decides under ``rules``). Without ``test``, ``config.test_fraction`` of ``dataset`` is held out.
    """
    from tqdm.auto import tqdm

    cfg = config or SimulationConfig()
    train = train or TrainConfig()
    attacks = dict(attacks or {})
    if test is None:
        dataset, test = train_test_split(dataset, test_fraction=cfg.test_fraction, seed=cfg.seed)
    if cfg.partition == "iid":
        parts = partition_iid(len(dataset), cfg.num_clients, seed=cfg.seed)
    elif cfg.partition == "dirichlet":
        parts = partition_dirichlet(dataset.labels, cfg.num_clients, alpha=cfg.alpha, seed=cfg.seed)
    else:
        raise ValueError(f"The 'partition' parameter must be 'iid' or 'dirichlet'. Got {cfg.partition!r} instead.")
    clients = []
    for i, part in enumerate(parts):
        attack = attacks.get(i, AttackConfig())
        tensors = to_tensor_dataset(
            poison_dataset(dataset.subset(part), attack), tokenizer, task=task, max_length=train.max_length
        )
        trainer = LocalTrainer(model, task=task, train=replace(train, seed=train.seed + 1000 * i), privacy=privacy)
        clients.append((trainer, tensors, attack))
    test_tensors = to_tensor_dataset(test, tokenizer, task=task, max_length=train.max_length)

    def evaluate_state(state: Mapping[str, Any]) -> dict[str, float]:
        set_adapter_state(model, state)
        return evaluate(model, test_tensors, task=task, num_labels=dataset.num_labels, device=train.device)

    ledger = InMemoryRounds(to_numpy(get_adapter_state(model)), rules=rules, screen=screen)
    initial = evaluate_state(ledger.models[ledger.head()])
    result = SimulationResult(initial_metrics=initial, manifest=ledger.manifest)
    logger.info("round 0: %s", _fmt(initial))
    submitted: dict[int, tuple[list[bytes], list[dict[str, Any]]]] = {}
    started = time.perf_counter()

    def collect(number: int) -> None:
        base = ledger.base_state(number)
        deltas: list[NDState] = []
        metas: list[dict[str, Any]] = []
        for trainer, tensors, _ in tqdm(clients, desc=f"round {number} clients", disable=not progress, leave=False):
            res = trainer.train_round(base, tensors, round_id=number)
            deltas.append(to_numpy(res.delta))
            metas.append(res.metadata())
        honest = [d for d, (_, _, a) in zip(deltas, clients, strict=True) if not a.is_update_attack]
        stats = honest_statistics(honest) if honest else None
        for i, (_, _, attack) in enumerate(clients):
            if attack.is_update_attack:
                deltas[i] = poison_update(
                    deltas[i],
                    attack,
                    honest_mean=stats.mean if stats else None,
                    honest_std=stats.std if stats else None,
                    honest_norm=stats.median_norm if stats else None,
                )
        blobs = [encode(d, like=ledger.manifest) for d in deltas]
        for i, (blob, meta) in enumerate(zip(blobs, metas, strict=True)):
            ledger.submit(number, _client_id(i), blob, samples=int(meta["num_samples"]))
        submitted[number] = (blobs, metas)

    def record(outcome: RoundOutcome) -> None:
        nonlocal started
        blobs, metas = submitted.pop(outcome.number)
        accepted = {u["participant"] for u in outcome.accepted}
        if not accepted:
            logger.warning("round %d: no update accepted; the global adapter stays as it was", outcome.number)
        reports = [
            ClientReport(
                i, sha256_hex(blobs[i]), len(blobs[i]), _client_id(i) in accepted, clients[i][2].kind.value, metas[i]
            )
            for i in range(len(clients))
        ]
        result.rounds.append(RoundReport(outcome.number, outcome.metrics, reports, time.perf_counter() - started))
        logger.info("round %d: %s (%.1fs)", outcome.number, _fmt(outcome.metrics), result.rounds[-1].seconds)
        started = time.perf_counter()

    driver = RoundDriver(ledger, collect=collect, strategy=strategy, evaluate=evaluate_state, record=record)
    for _ in tqdm(range(cfg.rounds), desc="federated rounds", disable=not progress):
        driver.run_round()
    result.global_state = ledger.models[ledger.head()]
    set_adapter_state(model, result.global_state)
    return result


def _client_id(index: int) -> str:
    return f"client-{index}"


def _fmt(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("n", "tokens"))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    from fedledger.trainer.data import load_breast_cancer_text, load_table
    from fedledger.trainer.models import LoraSettings, apply_lora, load_model, tiny_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m fedledger.experiments.simulation", description=__doc__)
    parser.add_argument(
        "--model", default="tiny-bert", help="tiny-bert | tiny-gpt2 | tiny-llama | all-MiniLM-L6-v2 | local path"
    )
    parser.add_argument("--data", default="breast-cancer", help="breast-cancer or a .csv/.jsonl file")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partition", choices=["iid", "dirichlet"], default="iid")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="sgd is better under DP")
    parser.add_argument("--style", choices=["values", "levels"], default="values", help="breast-cancer text style")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--epsilon", type=float, default=None, help="target ε over all rounds (DP on)")
    parser.add_argument("--noise", type=float, default=None, help="noise multiplier (DP on)")
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--ghost", action="store_true", help="ghost clipping")
    parser.add_argument("--strategy", choices=["fedavg", "fedadam"], default="fedavg")
    parser.add_argument("--attack", default="none", help=f"attack of client 0: {[a.value for a in Attack]}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.model.startswith("tiny-"):
        model, tokenizer = tiny_model(args.model[5:], seed=args.seed)  # type: ignore[arg-type]
    else:
        model, tokenizer = load_model(args.model, seed=args.seed)
    peft_model = apply_lora(model, settings=LoraSettings(r=args.lora_r, alpha=2 * args.lora_r), seed=args.seed)
    data = load_breast_cancer_text(style=args.style) if args.data == "breast-cancer" else load_table(args.data)
    privacy = None
    if args.epsilon is not None or args.noise is not None:
        privacy = PrivacyConfig(
            target_epsilon=args.epsilon,
            noise_multiplier=args.noise,
            max_grad_norm=args.clip,
            ghost_clipping=args.ghost,
            rounds=args.rounds,
        )
    from fedledger.trainer.strategy import make_strategy

    attacks = None
    if args.attack != "none":
        attacks = {0: AttackConfig(kind=Attack(args.attack), num_clients=args.clients)}
    result = run_simulation(
        peft_model,
        tokenizer,
        data,
        config=SimulationConfig(
            num_clients=args.clients, rounds=args.rounds, partition=args.partition, alpha=args.alpha, seed=args.seed
        ),
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            optimizer=args.optimizer,
            max_length=args.max_length,
            seed=args.seed,
        ),
        privacy=privacy,
        strategy=make_strategy(args.strategy),
        attacks=attacks,
        progress=True,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "initial": result.initial_metrics,
                    "rounds": [
                        {
                            "round": r.round,
                            "metrics": r.metrics,
                            "seconds": r.seconds,
                            "clients": [c.__dict__ for c in r.clients],
                        }
                        for r in result.rounds
                    ],
                },
                indent=2,
            )
        )
    else:
        print(result.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
