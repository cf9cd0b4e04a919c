"""Runs the robustness grid: one :class:`SeedRun` per seed (data, model, caches), one round driver per cell.

Every cell is a federation of ``setup.rounds`` rounds driven by :class:`~fedledger.trainer.rounds.RoundDriver`
over :class:`~fedledger.experiments.in_memory.InMemoryRounds` under :data:`~.grid.RULES`: the members' updates
(honest, poisoned data, or replaced by an update attack) are submitted as codec bytes, screened by the
contract's verdict (defence ``fedledger``) or accepted as they are and aggregated by a byzfl/Flower baseline
(:class:`~fedledger.experiments.baselines.BaselineStrategy`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.bench.ml import offline
from fedledger.bench.robustness.grid import (
    ADAPTIVE_ATTACKS,
    NO_OWN_DELTA,
    RULES,
    CellResult,
    CellStore,
    Setup,
    cell_key,
    grid,
)
from fedledger.tensors import NDState


def participant(client: int) -> str:
    """The participant id of client ``client``; ids sort like the indices, so the detector sees client order."""
    return f"client-{client:03d}"


def adaptive_update(
    attack: str, honest: list[NDState], rnd: int, *, copies: int, previous_direction: list[float]
) -> NDState:
    """What the colluding attackers of an adaptive attack submit (each a jittered copy of it).

    ``previous_direction``: the sketch of the previous round's accepted updates, which anyone can derive from
    the ledger; the threshold-aware attackers screen their candidate with it, exactly as FinalizeRound will."""
    from fedledger.chaincode.records import Rules
    from fedledger.chaincode.rules import apply_patch
    from fedledger.experiments.adaptive_attacks import detector_oracle, min_max, min_sum, under_the_threshold

    if attack == "min_max":
        return min_max(honest)
    if attack == "min_sum":
        return min_sum(honest)
    # the rules and the ledger are public: the attackers run the contract's own detector on their candidate
    rules = apply_patch(Rules(), RULES)
    oracle = detector_oracle(rnd, rules, honest, copies=copies, previous_direction=previous_direction)
    return under_the_threshold(honest, oracle)[0]


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


class SeedRun:
    """One seed's data, model, clients and caches; runs cells of the grid."""

    def __init__(self, setup: Setup, seed: int) -> None:
        offline()
        import torch

        from fedledger.bench.ml import breast_cancer
        from fedledger.experiments.attacks import backdoor_test_set
        from fedledger.tensors import to_numpy
        from fedledger.trainer.data import partition_dirichlet, to_tensor_dataset, train_test_split
        from fedledger.trainer.models import LoraSettings, apply_lora, get_adapter_state, tiny_model

        torch.set_num_threads(1)  # one process per seed; many small matrices gain nothing from threads
        self.setup, self.seed = setup, seed
        train, test = train_test_split(breast_cancer(), test_fraction=setup.test_fraction, seed=seed)
        parts = partition_dirichlet(
            train.labels, setup.clients, alpha=setup.alpha, seed=seed, min_size=setup.min_client_samples
        )
        self.client_data = [train.subset(p) for p in parts]
        self.order = [int(i) for i in np.random.default_rng(seed + 7919).permutation(setup.clients)]
        model, self.tokenizer = tiny_model("bert", seed=seed, hidden_size=setup.hidden_size)
        settings = LoraSettings(r=setup.lora_r, alpha=2 * setup.lora_r)
        self.model = apply_lora(model, task="classification", settings=settings, seed=seed)
        self.initial = to_numpy(get_adapter_state(self.model))
        self.test = to_tensor_dataset(test, self.tokenizer, max_length=setup.max_length)
        backdoor_test = backdoor_test_set(test, trigger=setup.trigger, target_label=setup.target_label)
        self.backdoor_test = to_tensor_dataset(backdoor_test, self.tokenizer, max_length=setup.max_length)
        self.majority = float(max(np.mean(test.labels), 1 - np.mean(test.labels)))
        self._tensors: dict[tuple[int, str], Any] = {}
        self._deltas: dict[tuple[int, str, int, str], NDState] = {}
        self._metrics: dict[tuple[str, str], dict[str, float]] = {}
        self.trainings = 0
        self.cache_hits = 0

    def attack_config(self, attack: str, malicious: int, client: int) -> Any:
        """The :class:`~fedledger.experiments.attacks.AttackConfig` of ``client`` among ``malicious`` attackers."""
        from fedledger.experiments.attacks import Attack, AttackConfig

        s = self.setup
        return AttackConfig(
            kind=Attack(attack),
            fraction=s.backdoor_fraction if attack == "backdoor" else 1.0,
            trigger=s.trigger,
            target_label=s.target_label,
            scale=s.scale,
            noise_std=s.noise_std,
            num_clients=s.clients,
            num_malicious=max(malicious, 1),
            epsilon=s.ipm_epsilon,
            seed=self.seed * 1000 + client,
        )

    def _client_tensors(self, client: int, data_attack: str) -> Any:
        from fedledger.experiments.attacks import poison_dataset
        from fedledger.trainer.data import to_tensor_dataset

        key = (client, data_attack)
        if key not in self._tensors:
            local = self.client_data[client]
            if data_attack != "none":
                local = poison_dataset(local, self.attack_config(data_attack, 1, client))
            self._tensors[key] = to_tensor_dataset(local, self.tokenizer, max_length=self.setup.max_length)
        return self._tensors[key]

    def train(self, client: int, data_attack: str, rnd: int, state: NDState, digest: str) -> NDState:
        """The client's delta from ``state`` (whose hash is ``digest``); cached, since it depends on nothing else."""
        from fedledger.tensors import to_numpy
        from fedledger.trainer.local_trainer import LocalTrainer, TrainConfig

        key = (client, data_attack, rnd, digest)
        if key in self._deltas:
            self.cache_hits += 1
            return self._deltas[key]
        s = self.setup
        config = TrainConfig(
            epochs=s.epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            max_length=s.max_length,
            seed=self.seed * 1000 + client,
        )
        result = LocalTrainer(self.model, train=config).train_round(
            state, self._client_tensors(client, data_attack), round_id=rnd
        )
        self.trainings += 1
        self._deltas[key] = to_numpy(result.delta)
        return self._deltas[key]

    def evaluate(self, state: NDState, digest: str, which: str = "test") -> dict[str, float]:
        """Held-out metrics of ``state`` (``which``: "test" or "backdoor"), cached by the state's hash."""
        from fedledger.trainer.evaluate import evaluate
        from fedledger.trainer.models import set_adapter_state

        key = (digest, which)
        if key not in self._metrics:
            set_adapter_state(self.model, state)
            data = self.test if which == "test" else self.backdoor_test
            self._metrics[key] = evaluate(self.model, data, num_labels=2)
        return self._metrics[key]

    def updates(
        self,
        attack: str,
        malicious: list[int],
        rnd: int,
        state: NDState,
        digest: str,
        previous_direction: list[float] | None = None,
    ) -> list[NDState]:
        """Every client's submission in round ``rnd`` from ``state``: honest deltas, deltas trained on poisoned
        data, and update attacks (colluding ones see the round's honest statistics)."""
        from fedledger.experiments.adaptive_attacks import sybils
        from fedledger.experiments.attacks import DATA_ATTACKS, poison_update
        from fedledger.experiments.update_attacks import honest_statistics

        bad = set(malicious)
        deltas: list[NDState | None] = []
        for c in range(self.setup.clients):
            if c in bad and attack in NO_OWN_DELTA:
                deltas.append(None)
                continue
            data_attack = attack if c in bad and attack in DATA_ATTACKS else "none"
            deltas.append(self.train(c, data_attack, rnd, state, digest))
        honest = [d for c, d in enumerate(deltas) if c not in bad and d is not None]
        if attack in ADAPTIVE_ATTACKS:
            adapted = adaptive_update(
                attack, honest, rnd, copies=len(malicious), previous_direction=previous_direction or []
            )
            colluders = sybils(adapted, len(malicious), seed=self.seed * 1000 + rnd)  # not byte copies
            for c, update in zip(malicious, colluders, strict=True):
                deltas[c] = update
            return [d for d in deltas if d is not None]
        stats = honest_statistics(honest)
        template = honest[0]
        for c in malicious:
            if attack in DATA_ATTACKS:
                continue
            own = deltas[c]
            deltas[c] = poison_update(
                own if own is not None else {k: np.zeros_like(v) for k, v in template.items()},
                self.attack_config(attack, len(malicious), c),
                honest_mean=stats.mean,
                honest_std=stats.std,
                honest_norm=stats.median_norm,
            )
        return [d for d in deltas if d is not None]

    def cell(self, attack: str, fraction: float, defence: str) -> CellResult:
        """Run one (attack, fraction, defence) federation for ``setup.rounds`` rounds."""
        from fedledger.experiments.baselines import BaselineStrategy
        from fedledger.experiments.in_memory import InMemoryRounds, accept_all, contract_screen
        from fedledger.tensors import encode
        from fedledger.trainer.rounds import RoundDriver, RoundOutcome
        from fedledger.trainer.strategy import FedAvg, Strategy

        start = time.perf_counter()
        s = self.setup
        m = 0 if attack == "none" else round(fraction * s.clients)
        malicious = sorted(self.order[:m])
        bad = {participant(c) for c in malicious}
        everyone = [participant(c) for c in range(s.clients)]
        samples = [len(d) for d in self.client_data]
        result = CellResult(self.seed, attack, fraction, defence, malicious, self.majority, samples)
        strategy: Strategy
        if defence == "fedledger":  # the contract's verdict, then sample-weighted FedAvg of the accepted updates
            ledger = InMemoryRounds(self.initial, rules=RULES, screen=contract_screen)
            strategy = FedAvg()
        else:  # no screening: the baseline aggregates every update
            ledger = InMemoryRounds(self.initial, rules=RULES, screen=accept_all)
            strategy = BaselineStrategy(defence, f=m if m else s.no_attack_f)

        def collect(number: int) -> None:
            base = ledger.base_state(number)
            updates = self.updates(
                attack, malicious, number, base, ledger.digest(base), ledger.previous_direction(number)
            )
            for name, update, n in zip(everyone, updates, samples, strict=True):
                ledger.submit(number, name, encode(update, like=ledger.manifest), samples=n)

        def evaluate(state: Mapping[str, Any]) -> dict[str, float]:
            arrays: NDState = dict(state)
            digest = ledger.digest(arrays)
            metrics = dict(self.evaluate(arrays, digest))
            if attack in ("none", "backdoor"):  # no attack: the rate at which the clean model says "benign"
                metrics["attack_success"] = self.evaluate(arrays, digest, "backdoor")["accuracy"]
            return metrics

        def record(outcome: RoundOutcome) -> None:
            row: dict[str, Any] = {"round": outcome.number, **outcome.metrics}
            used: set[str] | None = {u["participant"] for u in outcome.accepted}
            if isinstance(strategy, BaselineStrategy):  # a selection rule names the updates it used, or none
                given = [c.participant for c in ledger.contributions(outcome.number)]
                used = None if strategy.selected is None else {given[i] for i in strategy.selected}
            if used is not None:
                rejected = set(everyone) - used
                row["tpr"] = _rate(len(rejected & bad), m)
                row["fpr"] = _rate(len(rejected - bad), s.clients - m)
                row["rejected"] = sorted(everyone.index(p) for p in rejected)
            result.rounds.append(row)

        RoundDriver(ledger, collect=collect, strategy=strategy, evaluate=evaluate, record=record).run(s.rounds)
        result.seconds = time.perf_counter() - start
        return result


def run_seed(setup: Setup, seed: int, store_path: str, reuse: bool, detector: str) -> dict[str, Any]:
    """Every cell of the grid for one seed (runs in a worker process); stored cells are reused if asked."""
    from tqdm.auto import tqdm

    logging.getLogger("fedledger").setLevel(logging.WARNING)
    start = time.perf_counter()
    store = CellStore(Path(store_path))
    todo = [c for c in grid(setup) if not (reuse and cell_key(setup, seed, *c, detector) in store.cells)]
    run = SeedRun(setup, seed) if todo else None
    for attack, fraction, defence in tqdm(todo, desc=f"seed {seed} cells", position=seed, leave=False):
        assert run is not None
        cell = asdict(run.cell(attack, fraction, defence))
        store.add(cell_key(setup, seed, attack, fraction, defence, detector), cell)
    return {
        "seed": seed,
        "ran": len(todo),
        "trainings": run.trainings if run else 0,
        "cache_hits": run.cache_hits if run else 0,
        "seconds": time.perf_counter() - start,
    }
