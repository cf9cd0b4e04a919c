"""Runs the robustness grid: one :class:`SeedRun` per seed (data, model, caches), one round driver per cell.

Every cell is a federation of ``setup.rounds`` rounds driven by :class:`~fedledger.trainer.rounds.RoundDriver`
over :class:`~fedledger.experiments.in_memory.InMemoryRounds` under :data:`~.grid.RULES`: the members' updates
(honest, poisoned data, or replaced by an update attack) are submitted as codec bytes with their declared
samples, screened by the contract's verdict (defence ``fedledger``) or accepted as they are and aggregated by a
byzfl/Flower baseline (:class:`~fedledger.experiments.baselines.BaselineStrategy`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from fedledger.chaincode.records import Rules
from fedledger.chaincode.weights import PLAIN_FEDAVG_RULES
from fedledger.tensors import Manifest, NDState

if TYPE_CHECKING:
    from fedledger.experiments.in_memory import Screen, SketchMode

#: Warm-up rounds train with round ids from here (a client's shuffling seed depends on the round id).
WARM_ROUND_IDS = 1000
#: Bisection steps of the detector-aware attack after doubling: the largest accepted push to 2**-8 of its bracket
#: (each step is one run of the detector on the whole round).
ORACLE_STEPS = 8


def participant(client: int) -> str:
    """The participant id of client ``client``; ids sort like the indices, so the detector sees client order.

    The ids carry no ``MSPID:`` prefix, so for the contract's weights each client is its own organisation: the
    participant cap and the organisation cap both bound each client's share, and nothing bounds a group's."""
    return f"client-{client:03d}"


def binding_share(rules: Rules) -> float:
    """The largest FedAvg share one client may hold under ``rules`` (its own organisation: both caps apply)."""
    return min(rules.max_participant_share, rules.max_organisation_share)


def declared_samples(samples: Sequence[int], malicious: Sequence[int], rules: Rules, *, inflate: bool) -> list[int]:
    """What each client declares: honest clients their true counts; with ``inflate`` every malicious client the
    smallest count at which its capped share binds, i.e. at which it alone beside all honest clients would
    reach :func:`binding_share` (``c``): ``ceil(H * c / (1 - c))`` for honest total ``H`` (``H`` at caps 0.5).

    Declaring more never raises a lone accepted attacker's share (the cap holds it); it only raises the share of
    several accepted colluders together, which no rule bounds when each is its own organisation."""
    bad = set(malicious)
    if not inflate or not bad:
        return [int(n) for n in samples]
    honest_total = sum(n for c, n in enumerate(samples) if c not in bad)
    cap = binding_share(rules)
    most = honest_total * 1000 if cap >= 1.0 else math.ceil(honest_total * cap / (1.0 - cap))
    return [int(most) if c in bad else int(n) for c, n in enumerate(samples)]


@dataclass(frozen=True)
class RoundView:
    """What colluding attackers know of a round before submitting: its number, the rules, the update format,
    the previous round's accepted direction (public on the ledger) and every member's declared samples."""

    number: int
    rules: Rules
    manifest: Manifest
    previous_direction: list[float]
    declared: list[int]


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def _key_of(values: Sequence[float]) -> str:
    return hashlib.sha256(np.asarray(values, dtype=np.float64).tobytes()).hexdigest()[:16]


class SeedRun:
    """One seed's data, model, clients and caches; runs cells of the grid."""

    def __init__(self, setup: Setup, seed: int) -> None:
        offline()
        import torch

        from fedledger.bench.ml import breast_cancer
        from fedledger.chaincode.rules import apply_patch
        from fedledger.experiments.attacks import backdoor_test_set
        from fedledger.tensors import to_numpy
        from fedledger.trainer.data import partition_dirichlet, to_tensor_dataset, train_test_split
        from fedledger.trainer.models import LoraSettings, apply_lora, get_adapter_state, tiny_model

        torch.set_num_threads(1)  # one process per seed; many small matrices gain nothing from threads
        self.setup, self.seed = setup, seed
        self.rules = apply_patch(Rules(), RULES)
        #: the rules of the warm-up and of every cell but fedledger's: FedAvg weights are the declared samples under
        #: the caps only (bounding samples by the round's median and clipping weights by norm is fedledger's defence)
        self.plain_rules = apply_patch(self.rules, PLAIN_FEDAVG_RULES)
        train, test = train_test_split(breast_cancer(), test_fraction=setup.test_fraction, seed=seed)
        parts = partition_dirichlet(
            train.labels, setup.clients, alpha=setup.alpha, seed=seed, min_size=setup.min_client_samples
        )
        self.client_data = [train.subset(p) for p in parts]
        self.order = [int(i) for i in np.random.default_rng(seed + 7919).permutation(setup.clients)]
        model, self.tokenizer = tiny_model("bert", seed=seed, hidden_size=setup.hidden_size)
        settings = LoraSettings(r=setup.lora_r, alpha=2 * setup.lora_r)
        self.model = apply_lora(model, task="classification", settings=settings, seed=seed)
        self.random_init = to_numpy(get_adapter_state(self.model))
        self.test = to_tensor_dataset(test, self.tokenizer, max_length=setup.max_length)
        backdoor_test = backdoor_test_set(
            test, trigger=setup.trigger, target_label=setup.target_label, position=setup.trigger_position
        )
        self.backdoor_test = to_tensor_dataset(backdoor_test, self.tokenizer, max_length=setup.max_length)
        self.majority = float(max(np.mean(test.labels), 1 - np.mean(test.labels)))
        self._tensors: dict[tuple[int, str], Any] = {}
        self._deltas: dict[tuple[int, str, int, str], NDState] = {}
        self._metrics: dict[tuple[str, str], dict[str, float]] = {}
        self._adaptive: dict[tuple[str, int, int, str, str], tuple[NDState, float, float]] = {}
        #: the detector-aware attack's push (in honest median norms) and copies' jitter per round of the cell run
        self.gammas: dict[int, tuple[float, float]] = {}
        self.trainings = 0
        self.cache_hits = 0
        self.stalled = 0  # trainings in which some adapter tensor got no gradient (kept, see train())
        self.diverged = 0  # trainings that produced NaN/inf (submitted as zero updates)
        self.warm_accuracy: list[float] = []
        self.initial = self.warm_start()

    def warm_start(self) -> NDState:
        """The model every cell starts from: ``setup.warm_rounds`` rounds of clean FedAvg over every client's
        true count from the random initialisation (the random model predicts the majority class for its first
        3-4 rounds, and an attack on a model that has learnt nothing cannot cost accuracy)."""
        from fedledger.experiments.in_memory import InMemoryRounds, accept_all
        from fedledger.tensors import encode
        from fedledger.trainer.rounds import RoundDriver
        from fedledger.trainer.strategy import FedAvg

        ledger = InMemoryRounds(self.random_init, rules=self.plain_rules, screen=accept_all)
        everyone = [participant(c) for c in range(self.setup.clients)]

        def collect(number: int) -> None:
            base = ledger.base_state(number)
            digest = ledger.digest(base)
            for c, name in enumerate(everyone):
                delta = self.train(c, "none", WARM_ROUND_IDS + number, base, digest)
                ledger.submit(number, name, encode(delta, like=ledger.manifest), samples=len(self.client_data[c]))

        def evaluate(state: Mapping[str, Any]) -> dict[str, float]:
            arrays: NDState = dict(state)
            return dict(self.evaluate(arrays, ledger.digest(arrays)))

        outcomes = RoundDriver(ledger, collect=collect, strategy=FedAvg(), evaluate=evaluate).run(
            self.setup.warm_rounds
        )
        self.warm_accuracy = [o.metrics["accuracy"] for o in outcomes]
        return ledger.models[ledger.head()]

    def malicious(self, attack: str, fraction: float) -> list[int]:
        """The malicious clients of a cell: the first ``round(fraction * N)`` of the seed's permutation."""
        m = 0 if attack == "none" else round(fraction * self.setup.clients)
        return sorted(self.order[:m])

    def attack_config(self, attack: str, malicious: int, client: int) -> Any:
        """The :class:`~fedledger.experiments.attacks.AttackConfig` of ``client`` among ``malicious`` attackers."""
        from fedledger.experiments.attacks import Attack, AttackConfig

        s = self.setup
        return AttackConfig(
            kind=Attack(attack),
            fraction=s.backdoor_fraction if attack == "backdoor" else 1.0,
            trigger=s.trigger,
            trigger_position=s.trigger_position,
            target_label=s.target_label,
            scale=s.scale,
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

    def train(
        self, client: int, data_attack: str, rnd: int, state: NDState, digest: str, epsilon: float | None = None
    ) -> NDState:
        """The client's delta from ``state`` (whose hash is ``digest``); cached, since it depends on nothing else.

        ``epsilon``: train with DP-SGD (Opacus) at this target epsilon over ``setup.rounds`` rounds."""
        from fedledger.tensors import to_numpy
        from fedledger.trainer.local_trainer import (
            AdapterNotUpdatedError,
            LocalTrainer,
            TrainConfig,
            TrainingDivergedError,
        )
        from fedledger.trainer.models import get_adapter_state
        from fedledger.trainer.privacy import PrivacyConfig

        key = (client, data_attack if epsilon is None else f"{data_attack}@dp{epsilon:g}", rnd, digest)
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
        self.trainings += 1
        try:
            privacy = None if epsilon is None else PrivacyConfig(target_epsilon=epsilon, rounds=s.rounds)
            result = LocalTrainer(self.model, train=config, privacy=privacy).train_round(
                state, self._client_tensors(client, data_attack), round_id=rnd
            )
            self._deltas[key] = to_numpy(result.delta)
        except AdapterNotUpdatedError:
            # An attack can leave the global model where some adapter tensors get no gradient (saturated
            # attention): the client's real delta is zero there. The trainer refuses to submit it (its guard
            # against opacus issue 820); the study keeps what the client learned, from the model it trained.
            after = to_numpy(get_adapter_state(self.model))
            self._deltas[key] = {k: (after[k] - np.asarray(state[k])).astype(np.float32) for k in after}
            self.stalled += 1
        except TrainingDivergedError:  # NaN/inf: the client has nothing to submit but a zero update
            self._deltas[key] = {k: np.zeros_like(np.asarray(v), dtype=np.float32) for k, v in state.items()}
            self.diverged += 1
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

    def colluders(
        self, malicious: Sequence[int], rnd: int, jitter: float | None = None
    ) -> Callable[[NDState], list[NDState]]:
        """How the colluders of an adaptive attack turn their one update into their submissions: copies with a
        relative ``jitter`` each (default ``setup.sybil_jitter``; no two byte-identical, which the contract would
        refuse), one per attacker in client order."""
        from fedledger.experiments.adaptive_attacks import sybils

        size = self.setup.sybil_jitter if jitter is None else jitter
        seed = self.seed * 1000 + rnd
        return lambda update: sybils(update, len(malicious), jitter=size, seed=seed)

    def adaptive_update(
        self,
        attack: str,
        malicious: Sequence[int],
        honest: Mapping[int, NDState],
        view: RoundView,
        digest: str,
        own: NDState | None = None,
    ) -> tuple[NDState, float]:
        """The one update the colluders of an adaptive attack build from the round's honest updates, and the
        jitter of their copies of it (cached by the round, its base state and the public direction). ``own``:
        the first colluder's honestly trained delta (``sybil`` flips it).

        ``under_threshold`` screens its candidates with :func:`~fedledger.experiments.adaptive_attacks.
        detector_oracle`, i.e. the contract's own detector on the round as it will happen: every member in
        client order with its declared samples, the rules and the previous round's accepted direction; it
        tunes its copies' jitter first, then its push (:func:`~fedledger.experiments.adaptive_attacks.
        tuned_under_the_threshold`)."""
        from fedledger.experiments.adaptive_attacks import (
            detector_oracle,
            min_max,
            min_sum,
            tuned_under_the_threshold,
        )
        from fedledger.experiments.update_attacks import sign_flip

        key = (attack, len(malicious), view.number, digest, _key_of(view.previous_direction))
        if key in self._adaptive:
            update, gamma, jitter = self._adaptive[key]
            if gamma == gamma:
                self.gammas[view.number] = (gamma, jitter)
            return update, jitter
        deltas = list(honest.values())
        gamma, jitter = float("nan"), self.setup.sybil_jitter
        if attack == "min_max":
            update = min_max(deltas)
        elif attack == "min_sum":
            update = min_sum(deltas)
        elif attack == "sybil":  # one colluder's sign-flipped delta, copied by every identity the attacker holds
            if own is None:
                raise ValueError("the sybil attack needs the first colluder's own delta")
            update = sign_flip(own)
        elif attack == "under_threshold":
            submitted = [(participant(c), d, view.declared[c]) for c, d in honest.items()]
            attackers = [(participant(c), view.declared[c]) for c in malicious]

            def oracle_for(size: float) -> Callable[[NDState], bool]:
                return detector_oracle(
                    view.number,
                    view.rules,
                    submitted,
                    attackers,
                    copies=self.colluders(malicious, view.number, size),
                    manifest=view.manifest,
                    previous_direction=view.previous_direction,
                )

            update, gamma, jitter = tuned_under_the_threshold(deltas, oracle_for, steps=ORACLE_STEPS)
            self.gammas[view.number] = (gamma, jitter)
        else:
            raise ValueError(f"{attack!r} is not an adaptive attack")
        self._adaptive[key] = (update, gamma, jitter)
        return update, jitter

    def updates(
        self, attack: str, malicious: Sequence[int], state: NDState, digest: str, view: RoundView
    ) -> list[NDState]:
        """Every client's submission in round ``view.number`` from ``state``: honest deltas, deltas trained on
        poisoned data, and update attacks (colluding ones see the round's honest updates)."""
        from fedledger.experiments.attacks import COLLUDING_ATTACKS, DATA_ATTACKS, poison_update
        from fedledger.experiments.update_attacks import honest_statistics

        rnd, bad = view.number, set(malicious)
        deltas: list[NDState | None] = []
        for c in range(self.setup.clients):
            trains = c not in bad or attack not in NO_OWN_DELTA or (attack == "sybil" and c == malicious[0])
            if not trains:
                deltas.append(None)
                continue
            data_attack = attack if c in bad and attack in DATA_ATTACKS else "none"
            deltas.append(self.train(c, data_attack, rnd, state, digest))
        honest = {c: d for c, d in enumerate(deltas) if c not in bad and d is not None}
        if attack in ADAPTIVE_ATTACKS:
            own = deltas[malicious[0]] if attack == "sybil" else None
            adapted, jitter = self.adaptive_update(attack, malicious, honest, view, digest, own)
            for c, update in zip(malicious, self.colluders(malicious, rnd, jitter)(adapted), strict=True):
                deltas[c] = update
            return [d for d in deltas if d is not None]
        stats = honest_statistics(list(honest.values()))
        template = next(iter(honest.values()))
        size = sum(v.size for v in template.values())
        for c in malicious:
            if attack in DATA_ATTACKS:
                continue
            config = self.attack_config(attack, len(malicious), c)
            if attack == "gaussian_noise":  # fresh noise each round, of the honest median norm (times noise_norm)
                std = self.setup.noise_norm * stats.median_norm / math.sqrt(size)
                config = dataclasses.replace(config, noise_std=std, seed=config.seed + 100_003 * rnd)
            own = deltas[c]
            deltas[c] = poison_update(
                own if own is not None else {k: np.zeros_like(v) for k, v in template.items()},
                config,
                honest_mean=stats.mean,
                honest_std=stats.std,
                honest_norm=stats.median_norm,
            )
        if attack in COLLUDING_ATTACKS:  # one common update: jittered copies, or SubmitUpdate keeps only one
            common = deltas[malicious[0]]
            assert common is not None
            for c, update in zip(malicious, self.colluders(malicious, rnd)(common), strict=True):
                deltas[c] = update
        return [d for d in deltas if d is not None]

    def cell(
        self,
        attack: str,
        fraction: float,
        defence: str,
        *,
        screen: Screen | None = None,
        sketch_mode: SketchMode = "plaintext",
    ) -> CellResult:
        """Run one (attack, fraction, defence) federation for ``setup.rounds`` rounds.

        ``screen``: what decides the ``fedledger`` cells' verdicts (default: the contract's detector); the
        separability analysis passes one that records what the detector saw. ``sketch_mode="shared"``: the
        ``fedledger`` cell's rounds are screened as secret-shared rounds (:class:`InMemoryRounds`); each round's
        row also names the clients plaintext mode would have rejected on the same submissions
        (``plaintext_rejected``) and the round's sketch seed.
        """
        from fedledger.chaincode.weights import WEIGHT_UNITS
        from fedledger.experiments.baselines import BaselineStrategy
        from fedledger.experiments.in_memory import InMemoryRounds, SubmissionRefused, accept_all, contract_screen
        from fedledger.tensors import encode
        from fedledger.trainer.rounds import RoundDriver, RoundOutcome
        from fedledger.trainer.strategy import FedAvg, Strategy

        start = time.perf_counter()
        s = self.setup
        malicious = self.malicious(attack, fraction)
        m = len(malicious)
        bad = {participant(c) for c in malicious}
        everyone = [participant(c) for c in range(s.clients)]
        samples = [len(d) for d in self.client_data]
        declared = declared_samples(samples, malicious, self.rules, inflate=s.inflate_samples)
        result = CellResult(self.seed, attack, fraction, defence, malicious, self.majority, samples, declared)
        self.gammas = {}
        strategy: Strategy
        # SubmitUpdate's refusals (byte copies, norms over the bound) hold for every defence: they are the contract's
        refused: dict[int, list[int]] = {}
        if defence == "fedledger":  # the contract's verdict, then capped-weight FedAvg of the accepted updates
            ledger = InMemoryRounds(
                self.initial,
                rules=self.rules,
                screen=screen or contract_screen,
                refuse=True,
                sketch_mode=sketch_mode,
                close_seed=self.seed,
            )
            strategy = FedAvg()
        else:  # no screening: the baseline aggregates every update
            ledger = InMemoryRounds(self.initial, rules=self.plain_rules, screen=accept_all, refuse=True)
            strategy = BaselineStrategy(defence, f=m if m else s.no_attack_f)

        def collect(number: int) -> None:
            base = ledger.base_state(number)
            view = RoundView(number, self.rules, ledger.manifest, ledger.previous_direction(number), declared)
            updates = self.updates(attack, malicious, base, ledger.digest(base), view)
            refused[number] = []
            for c, (name, update, n) in enumerate(zip(everyone, updates, declared, strict=True)):  # client order
                try:
                    ledger.submit(number, name, encode(update, like=ledger.manifest), samples=n)
                except SubmissionRefused:  # as SubmitUpdate refuses it: the round never sees it
                    refused[number].append(c)

        def evaluate(state: Mapping[str, Any]) -> dict[str, float]:
            arrays: NDState = dict(state)
            digest = ledger.digest(arrays)
            metrics = dict(self.evaluate(arrays, digest))
            if attack in ("none", "backdoor"):  # no attack: the rate at which the clean model says "benign"
                metrics["attack_success"] = self.evaluate(arrays, digest, "backdoor")["accuracy"]
            return metrics

        def record(outcome: RoundOutcome) -> None:
            row: dict[str, Any] = {"round": outcome.number, **outcome.metrics, "refused": refused[outcome.number]}
            given = ledger.contributions(outcome.number)
            # the malicious clients' share of the contract's FedAvg weight (capped shares of the accepted updates)
            row["malicious_weight"] = sum(c.weight for c in given if c.participant in bad) / WEIGHT_UNITS
            if outcome.number in self.gammas:  # how far the detector-aware attackers could push this round
                row["attack_gamma"], row["attack_jitter"] = self.gammas[outcome.number]
            used: set[str] | None = {u["participant"] for u in outcome.accepted}
            if isinstance(strategy, BaselineStrategy):  # a selection rule names the updates it used, or none
                used = None if strategy.selected is None else {given[i].participant for i in strategy.selected}
            if used is not None:
                rejected = set(everyone) - used
                row["tpr"] = _rate(len(rejected & bad), m)
                row["fpr"] = _rate(len(rejected - bad), s.clients - m)
                row["rejected"] = sorted(everyone.index(p) for p in rejected)
            held = ledger.rounds[outcome.number]
            if defence == "fedledger":  # which rule decided each judged update
                row["rules"] = {everyone.index(p): h.verdict.rule for p, h in held.submissions.items() if h.verdict}
            if held.sketch_seed:  # shared mode: what plaintext mode decided on the same submissions, by which rule
                plain = held.plaintext_verdicts
                row["sketch_seed"] = held.sketch_seed
                row["plaintext_rejected"] = sorted(
                    everyone.index(p) for p in everyone if p not in plain or not plain[p].accepted
                )
                row["plaintext_rules"] = {everyone.index(p): v.rule for p, v in plain.items()}
                row["weights"] = {everyone.index(c.participant): c.weight for c in given}
                plain_weights = ledger.plaintext_weights(outcome.number)
                row["plaintext_weights"] = {everyone.index(p): w for p, w in plain_weights.items()}
            result.rounds.append(row)

        RoundDriver(ledger, collect=collect, strategy=strategy, evaluate=evaluate, record=record).run(s.rounds)
        result.seconds = time.perf_counter() - start
        return result


def run_honest_dp(setup: Setup, seed: int, epsilon: float) -> dict[str, Any]:
    """Honest members only, every one training with DP-SGD at ``epsilon`` (spent over ``setup.rounds`` rounds) on
    the seed's non-IID split, from the warm-started model: the contract's verdict each round and what it
    rejected (all of it false rejections). Runs in a worker process."""
    from fedledger.experiments.in_memory import InMemoryRounds, contract_screen
    from fedledger.tensors import encode
    from fedledger.trainer.rounds import RoundDriver, RoundOutcome
    from fedledger.trainer.strategy import FedAvg

    logging.getLogger("fedledger").setLevel(logging.WARNING)
    start = time.perf_counter()
    run = SeedRun(setup, seed)
    ledger = InMemoryRounds(run.initial, rules=run.rules, screen=contract_screen)
    everyone = [participant(c) for c in range(setup.clients)]
    rounds: list[dict[str, Any]] = []

    def collect(number: int) -> None:
        base = ledger.base_state(number)
        digest = ledger.digest(base)
        for c, name in enumerate(everyone):
            delta = run.train(c, "none", number, base, digest, epsilon=epsilon)
            samples = len(run.client_data[c])
            ledger.submit(number, name, encode(delta, like=ledger.manifest), samples=samples, epsilon=epsilon)

    def evaluate(state: Mapping[str, Any]) -> dict[str, float]:
        arrays: NDState = dict(state)
        return dict(run.evaluate(arrays, ledger.digest(arrays)))

    def record(outcome: RoundOutcome) -> None:
        rejected = [u["participant"] for u in outcome.rejected]
        reasons = [str(u["reason"]) for u in outcome.rejected]
        judged = len(outcome.accepted) + len(rejected)
        rounds.append(
            {"round": outcome.number, "judged": judged, "rejected": rejected, "reasons": reasons, **outcome.metrics}
        )

    RoundDriver(ledger, collect=collect, strategy=FedAvg(), evaluate=evaluate, record=record).run(setup.rounds)
    return {
        "seed": seed,
        "epsilon": epsilon,
        "judged": sum(r["judged"] for r in rounds),
        "rejected": sum(len(r["rejected"]) for r in rounds),
        "rounds": rounds,
        "seconds": time.perf_counter() - start,
    }


def run_seed(
    setup: Setup,
    seed: int,
    store_path: str,
    reuse: bool,
    detector: str,
    cells: Sequence[tuple[str, float, str]] | None = None,
) -> dict[str, Any]:
    """The ``cells`` of one seed (default: its whole grid) in a worker process; stored cells are reused if asked."""
    from tqdm.auto import tqdm

    logging.getLogger("fedledger").setLevel(logging.WARNING)
    start = time.perf_counter()
    store = CellStore(Path(store_path))
    chosen = grid(setup) if cells is None else list(cells)
    todo = [c for c in chosen if not (reuse and cell_key(setup, seed, *c, detector) in store.cells)]
    run = SeedRun(setup, seed) if todo else None
    for attack, fraction, defence in tqdm(todo, desc=f"seed {seed} cells", leave=False):
        assert run is not None
        cell = asdict(run.cell(attack, fraction, defence))
        store.add(cell_key(setup, seed, attack, fraction, defence, detector), cell)
    return {
        "seed": seed,
        "attacks": sorted({a for a, _, _ in chosen}),
        "ran": len(todo),
        "trainings": run.trainings if run else 0,
        "cache_hits": run.cache_hits if run else 0,
        "stalled_trainings": run.stalled if run else 0,
        "diverged_trainings": run.diverged if run else 0,
        "seconds": time.perf_counter() - start,
    }
