#!/usr/bin/env python3
"""Robustness study: attack x defence x malicious fraction on a non-IID federation (issue 5, bench 1).

What one run does (bounded, in one process per seed, no ledger)::

    .venv/bin/python bench/robustness.py            # full grid, 3 seeds (~30-40 min on 2 busy cores)
    .venv/bin/python bench/robustness.py --quick    # 20 % only, 1 seed, 3 rounds (a few minutes)

- Data: scikit-learn's breast-cancer Wisconsin table as text (``style="levels"``), 20 % held out, the rest
  split over N = 10 clients by a Dirichlet(0.5) label skew. The malicious clients are the first
  ``round(fraction * N)`` of a seeded permutation (so the 10 % attackers are among the 20 % ones).
- Model: a tiny randomly initialised BERT (hidden 64, 2 layers) with LoRA r=8 on query/value plus the
  classification head (4,226 trainable values). MiniLM learns nothing in the first rounds and costs ~28 s
  per round of 10 clients on this machine; the grid needs ~8,000 local trainings, so it runs on the tiny
  model, which reaches ~0.9 accuracy in 4-5 rounds (measured before choosing; see docs/bench-robustness.md).
- Attacks (:mod:`fedledger.experiments.update_attacks`, :mod:`fedledger.experiments.attacks`): sign flip, scaling x10
  (model replacement), Gaussian noise, ALIE (z_max of Baruch et al.), IPM (epsilon 0.5), the norm-matched
  sign flip and IPM, label flip (all rows) and a text backdoor (trigger "cf zq" on half the rows, label
  benign). Colluding attacks (ALIE, IPM, IPM-NM) see the round's honest deltas (standard threat model).
- Defences: ``fedledger`` is the contract's verdict exactly: ``update_features`` of each delta (with the
  contract's sketch size and the declared samples), ``screen_round`` with the round's seed and the previous
  round's accepted direction (``direction_of``), then sample-weighted FedAvg of the accepted updates
  (``trainer.strategy.FedAvg``). Baselines (:mod:`fedledger.experiments.baselines`): Krum, Multi-Krum, median,
  trimmed mean (byzfl, ``f`` = the number of attackers, 2 without attack) and FedAvg (Flower's weighted
  ``aggregate``) over every update.
- Per round: TPR/FPR of the defences that judge single updates (fedledger, Krum, Multi-Krum; a rejected
  update is one not selected), held-out accuracy/precision/recall/F1; for the backdoor also the attack
  success rate (accuracy on triggered held-out rows that are not benign).

Local training depends only on (client, its data, the global state), so deltas are cached by the global
state's hash: round 1 is trained once per seed and shared by every cell, and defences that reach the same
global state share later rounds too. Cells run in a fixed order.

Results: a table on stdout, ``bench/results/robustness.{csv,json}``, ``bench/results/robustness_rounds.csv``,
PNGs ``bench/results/robustness_*.png`` and ``docs/bench-robustness.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    BASELINE_PACKAGES,
    CORE_PACKAGES,
    DOCS,
    ML_PACKAGES,
    RESULTS,
    command_line,
    figure_link,
    machine_facts,
    markdown_table,
    print_report,
    pyplot,
    render_page,
    save_figure,
    write_csv,
    write_json,
)

logger = logging.getLogger("bench.robustness")

NDState = dict[str, np.ndarray]

ATTACKS = (
    "sign_flip",
    "scaling",
    "gaussian_noise",
    "alie",
    "ipm",
    "sign_flip_nm",
    "ipm_nm",
    "label_flip",
    "backdoor",
)
NORM_MATCHED = ("sign_flip_nm", "ipm_nm")
DEFENCES = ("fedledger", "krum", "multikrum", "median", "trmean", "fedavg")
JUDGING = ("fedledger", "krum", "multikrum")
FRACTIONS = (0.1, 0.2, 0.3)
HEADLINE = 0.2
# Update attacks whose submission does not depend on the attacker's own delta: it need not train.
NO_OWN_DELTA = frozenset({"gaussian_noise", "alie", "ipm", "ipm_nm"})


@dataclass(frozen=True)
class Setup:
    """Everything that fixes a run besides the seed; recorded in the JSON."""

    clients: int = 10
    rounds: int = 5
    alpha: float = 0.5
    test_fraction: float = 0.2
    min_client_samples: int = 10
    hidden_size: int = 64
    lora_r: int = 8
    learning_rate: float = 0.03
    epochs: int = 2
    batch_size: int = 16
    max_length: int = 48
    scale: float = 10.0
    noise_std: float = 0.1
    ipm_epsilon: float = 0.5
    backdoor_fraction: float = 0.5
    trigger: str = "cf zq"
    target_label: int = 0
    no_attack_f: int = 2
    attacks: tuple[str, ...] = ATTACKS
    defences: tuple[str, ...] = DEFENCES
    fractions: tuple[float, ...] = FRACTIONS


@dataclass
class CellResult:
    seed: int
    attack: str
    fraction: float
    defence: str
    malicious: list[int]
    majority: float
    client_samples: list[int]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, Any]:
        return self.rounds[-1]


def contract_screening_config(rules: Any) -> Any:
    """The detector settings the contract derives from the consortium's rules (chaincode finalize.detect maps
    every ``Rules.detector_<name>`` to ``ScreeningConfig.<name>``); generic so new settings follow along."""
    import dataclasses

    from fedledger.anomaly.screening import ScreeningConfig

    values = {
        f.name: getattr(rules, f"detector_{f.name}")
        for f in dataclasses.fields(ScreeningConfig)
        if hasattr(rules, f"detector_{f.name}")
    }
    return ScreeningConfig(**values)


def _digest(state: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(np.ascontiguousarray(state[name], dtype=np.float32).tobytes())
    return h.hexdigest()


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


class SeedRun:
    """One seed's data, model, clients and caches; runs cells of the grid."""

    def __init__(self, setup: Setup, seed: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        from fedledger.chaincode.records import Rules
        from fedledger.experiments.attacks import backdoor_test_set
        from fedledger.tensors import to_numpy
        from fedledger.trainer.data import (
            load_breast_cancer_text,
            partition_dirichlet,
            to_tensor_dataset,
            train_test_split,
        )
        from fedledger.trainer.models import LoraSettings, apply_lora, get_adapter_state, tiny_model

        torch.set_num_threads(1)  # one process per seed; many small matrices gain nothing from threads
        self.setup, self.seed = setup, seed
        data = load_breast_cancer_text(style="levels")
        train, test = train_test_split(data, test_fraction=setup.test_fraction, seed=seed)
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
        rules = Rules()
        self.sketch_dim = rules.sketch_dim
        self.screening = contract_screening_config(rules)
        self._tensors: dict[tuple[int, str], Any] = {}
        self._deltas: dict[tuple[int, str, int, str], NDState] = {}
        self._metrics: dict[tuple[str, str], dict[str, float]] = {}
        self.trainings = 0
        self.cache_hits = 0

    def attack_config(self, attack: str, malicious: int, client: int) -> Any:
        from fedledger.experiments.attacks import AttackConfig

        s = self.setup
        return AttackConfig(
            kind=attack,
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
        """The client's delta from ``state``; cached, since it depends on nothing else."""
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
        from fedledger.trainer.evaluate import evaluate
        from fedledger.trainer.models import set_adapter_state

        key = (digest, which)
        if key not in self._metrics:
            set_adapter_state(self.model, state)
            data = self.test if which == "test" else self.backdoor_test
            self._metrics[key] = evaluate(self.model, data, num_labels=2)
        return self._metrics[key]

    def cell(self, attack: str, fraction: float, defence: str) -> CellResult:
        """Run one (attack, fraction, defence) federation for ``setup.rounds`` rounds."""
        from fedledger.anomaly.detector import round_seed
        from fedledger.anomaly.features import direction_of, update_features
        from fedledger.anomaly.screening import screen_round
        from fedledger.experiments.attacks import DATA_ATTACKS, poison_update
        from fedledger.experiments.baselines import robust_aggregate
        from fedledger.experiments.update_attacks import honest_statistics
        from fedledger.trainer.aggregate import apply_delta
        from fedledger.trainer.strategy import FedAvg

        start = time.perf_counter()
        s = self.setup
        m = 0 if attack == "none" else round(fraction * s.clients)
        malicious = sorted(self.order[:m])
        bad = set(malicious)
        f = m if m else s.no_attack_f
        samples = [len(d) for d in self.client_data]
        result = CellResult(self.seed, attack, fraction, defence, malicious, self.majority, samples)
        state = self.initial
        previous: list[float] = []
        for rnd in range(1, s.rounds + 1):
            digest = _digest(state)
            deltas: list[NDState | None] = []
            for c in range(s.clients):
                if c in bad and attack in NO_OWN_DELTA:
                    deltas.append(None)
                    continue
                data_attack = attack if c in bad and attack in DATA_ATTACKS else "none"
                deltas.append(self.train(c, data_attack, rnd, state, digest))
            honest = [d for c, d in enumerate(deltas) if c not in bad and d is not None]
            stats = honest_statistics(honest)
            template = honest[0]
            for c in malicious:
                if attack in DATA_ATTACKS:
                    continue
                own = deltas[c] if deltas[c] is not None else {k: np.zeros_like(v) for k, v in template.items()}
                deltas[c] = poison_update(
                    own,
                    self.attack_config(attack, m, c),
                    honest_mean=stats.mean,
                    honest_std=stats.std,
                    honest_norm=stats.median_norm,
                )
            updates: list[NDState] = [d for d in deltas if d is not None]
            accepted: list[int] | None
            if defence == "fedledger":
                # Exactly what the contract computes: features at SubmitUpdate, verdict at FinalizeRound.
                features = [
                    {**update_features(u, sketch_dim=self.sketch_dim), "samples": n, "epsilon": 0.0}
                    for u, n in zip(updates, samples, strict=True)
                ]
                verdicts = screen_round(
                    features, seed=round_seed(rnd), config=self.screening, previous_direction=previous
                )
                accepted = [i for i, v in enumerate(verdicts) if v.accepted]
                previous = direction_of([features[i] for i in accepted], [samples[i] for i in accepted])
                if accepted:
                    state = FedAvg().aggregate_fit(rnd, state, [(updates[i], samples[i]) for i in accepted])
            else:
                aggregated = robust_aggregate(defence, updates, num_samples=samples, f=f)
                accepted = list(aggregated.selected) if aggregated.selected is not None else None
                state = apply_delta(state, aggregated.update)
            digest = _digest(state)
            row: dict[str, Any] = {"round": rnd, **self.evaluate(state, digest)}
            if attack in ("none", "backdoor"):  # no attack: the rate at which the clean model says "benign"
                row["attack_success"] = self.evaluate(state, digest, "backdoor")["accuracy"]
            if accepted is not None:
                rejected = set(range(s.clients)) - set(accepted)
                row["tpr"] = _rate(len(rejected & bad), m)
                row["fpr"] = _rate(len(rejected - bad), s.clients - m)
                row["rejected"] = sorted(rejected)
            result.rounds.append(row)
        result.seconds = time.perf_counter() - start
        return result


def grid(setup: Setup) -> list[tuple[str, float, str]]:
    """The cells, in the fixed order they run: no attack first, then fraction x attack x defence."""
    cells = [("none", 0.0, d) for d in setup.defences]
    cells += [(a, fr, d) for fr in setup.fractions for a in setup.attacks for d in setup.defences]
    return cells


def setup_key(setup: Setup) -> str:
    """What a stored cell must share with this run to be reused (the grid's extent does not matter)."""
    fixed = {k: v for k, v in asdict(setup).items() if k not in ("attacks", "defences", "fractions", "rounds")}
    return hashlib.sha256(repr(sorted(fixed.items())).encode()).hexdigest()[:16]


def detector_key() -> str:
    """Hash of the detector's source: fedledger cells are rerun whenever the detector changes."""
    import fedledger.anomaly as package

    folder = Path(package.__file__).parent
    h = hashlib.sha256()
    for name in ("features.py", "detector.py", "screening.py"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def cell_key(setup: Setup, seed: int, attack: str, fraction: float, defence: str, detector: str) -> str:
    code = detector if defence == "fedledger" else "-"
    return f"{setup_key(setup)}|r{setup.rounds}|s{seed}|{attack}|{fraction}|{defence}|{code}"


class CellStore:
    """Finished cells, one JSON line each (``bench/results/robustness_cells.jsonl``), to resume or reuse."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cells: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.cells[record["key"]] = record

    def add(self, key: str, cell: dict[str, Any]) -> None:
        record = {"key": key, **cell}
        self.cells[key] = record
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


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


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]
    return float(statistics.median(clean)) if clean else float("nan")


def summarise(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (attack, fraction, defence): medians over seeds of final metrics and of pooled TPR/FPR."""
    groups: dict[tuple[str, float, str], list[Mapping[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["attack"], cell["fraction"], cell["defence"]), []).append(cell)
    rows = []
    for (attack, fraction, defence), group in groups.items():
        finals = [c["rounds"][-1] for c in group]
        row: dict[str, Any] = {
            "attack": attack,
            "fraction": fraction,
            "defence": defence,
            "seeds": len(group),
            "malicious": len(group[0]["malicious"]),
        }
        for key in ("accuracy", "precision", "recall", "f1", "loss"):
            row[key] = _median([r[key] for r in finals])
        row["attack_success"] = _median([r.get("attack_success", float("nan")) for r in finals])
        # Detection rates pooled over all rounds of a run (every round judges every update), median over seeds.
        row["tpr"] = _median([_pooled(c, "tpr") for c in group])
        row["fpr"] = _median([_pooled(c, "fpr") for c in group])
        row["seconds"] = _median([c["seconds"] for c in group])
        rows.append(row)
    return rows


def _pooled(cell: Mapping[str, Any], key: str) -> float:
    values = [r[key] for r in cell["rounds"] if key in r and r[key] == r[key]]
    return float(np.mean(values)) if values else float("nan")


MODEL_CHOICE = """\
Measured before choosing (seed 0, 10 Dirichlet clients, FedAvg, no attack, one torch thread per process):

| model | trainable values | one round of 10 clients | held-out accuracy after rounds 1..5 |
| --- | --- | --- | --- |
| all-MiniLM-L6-v2 + LoRA r=4 + head, 2 epochs, lr 3e-3 | 37,634 | 27.8 s (load 0.9) | 0.628 after round 1 |
| tiny random BERT hidden 32 + LoRA r=8, lr 0.01 | 2,114 | 0.6-1.2 s | 0.628 for 5 rounds |
| tiny random BERT hidden 64 + LoRA r=8, lr 0.01 | 4,226 | 0.7-1.0 s | 0.628, 0.628, 0.628, 0.628, 0.876 |
| **tiny random BERT hidden 64 + LoRA r=8, lr 0.03 (used)** | 4,226 | 1.1-1.6 s | 0.628, 0.628, 0.876, 0.912, 0.903 |

The grid needs thousands of local trainings (round 1 is shared between cells, later rounds are not), so
MiniLM (~3 s per client and round even before it learns anything) does not fit the hour; the tiny model
learns the task clearly above the majority baseline (0.628) within the 5 rounds. The update format, the
detector, the attacks and the baselines are the same for any model; only the absolute accuracies belong
to this small model.
"""

HONEST_UPDATES = """\
What the attacks hide among (seed 0, FedAvg without attack, measured with the same code): honest update
L2 norms 3.1-8.1 in round 1 and 4.0-9.6 in rounds 2-4 (median 4.2-6.0), coordinate std 0.08-0.10, and
cosine to the honest mean from 0.04 to 0.70 in round 1 and from -0.28 to 0.83 later: with Dirichlet(0.5)
label skew, clients holding mostly one class pull in opposite directions, so some *honest* updates point
away from the mean. The Gaussian-noise attack (std 0.1, norm ~6.5) therefore has an honest norm and an
honest coordinate scale, and the sign flip of a client's own delta looks like an honest client of the other
class. The model predicts the majority class for the first 2 rounds (accuracy 0.628), so final accuracy
reacts little to most attacks at 20 %; on 113 held-out rows one row is 0.9 points of accuracy.
"""

READING = """\
- Krum keeps one update of ten, so it "detects" every attacker (TPR 1) by rejecting almost every honest
  client too (FPR ~0.9); its accuracy is that of a single non-IID client. Multi-Krum keeps n - f.
- Median and trimmed mean have no per-update verdict: TPR/FPR are n/a.
- Backdoor attack success rate (ASR) is the share of triggered, truly malignant held-out rows labelled benign.
  Read it against the no-attack row, where the clean model already labels some of them benign (its
  false-negative rate on those rows): an ASR equal to the no-attack value means the trigger was not learned.
- The held-out split has 113 rows: one row is 0.9 points of accuracy, so the 2-point target is two rows,
  and accuracy ties between defences are common.
"""


def _fmt_rate(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def headline_table(rows: Sequence[Mapping[str, Any]], setup: Setup) -> tuple[list[str], list[list[Any]]]:
    """Final accuracy per attack x defence at the headline fraction, with TPR/FPR of judging defences."""
    index = {(r["attack"], r["defence"]): r for r in rows if r["fraction"] in (0.0, HEADLINE)}
    headers = ["attack", *setup.defences]
    table = []
    for attack in ("none", *setup.attacks):
        line: list[Any] = [attack]
        for defence in setup.defences:
            r = index.get((attack, defence))
            if r is None:
                line.append("—")
                continue
            text = f"{r['accuracy']:.3f}"
            if defence in JUDGING:
                text += f" ({_fmt_rate(r['tpr'])}/{_fmt_rate(r['fpr'])})"
            line.append(text)
        table.append(line)
    return headers, table


def targets(rows: Sequence[Mapping[str, Any]], setup: Setup) -> list[tuple[str, bool, str]]:
    """The issue's targets at 20 % malicious: (statement, met, measured numbers)."""
    at = {(r["attack"], r["defence"]): r for r in rows if r["fraction"] in (0.0, HEADLINE)}
    out = []
    if ("none", "fedavg") not in at or not all((a, "fedledger") in at for a in setup.attacks):
        return out
    reference = at[("none", "fedavg")]["accuracy"]
    gaps = {a: reference - at[(a, "fedledger")]["accuracy"] for a in setup.attacks}
    worst = max(gaps, key=lambda a: gaps[a])
    failing = [f"{a} {at[(a, 'fedledger')]['accuracy']:.3f}" for a in setup.attacks if gaps[a] > 0.02]
    out.append(
        (
            f"final accuracy within 2 points of no attack (FedAvg, no attacker: {reference:.3f}) under every attack",
            not failing,
            f"worst: {worst} {at[(worst, 'fedledger')]['accuracy']:.3f} ({-100 * gaps[worst]:+.1f} points)"
            + (f"; more than 2 points below: {', '.join(failing)}" if failing else ""),
        )
    )
    detection = {a: (at[(a, "fedledger")]["tpr"], at[(a, "fedledger")]["fpr"]) for a in setup.attacks}
    misses = [f"{a} {t:.2f}/{f:.2f}" for a, (t, f) in detection.items() if not (t >= 0.95 and f <= 0.05)]
    fpr_none = at.get(("none", "fedledger"), {}).get("fpr", float("nan"))
    out.append(
        (
            "TPR ≥ 0.95 at FPR ≤ 0.05 under every attack (pooled over rounds, median of seeds)",
            not misses,
            (f"missed (TPR/FPR): {', '.join(misses)}" if misses else "all attacks")
            + f"; FPR without attack {_fmt_rate(fpr_none)}",
        )
    )
    for attack in NORM_MATCHED:
        if attack not in setup.attacks:
            continue
        mine = at[(attack, "fedledger")]
        baselines = [d for d in setup.defences if d != "fedledger" and (attack, d) in at]
        best = max(baselines, key=lambda d: at[(attack, d)]["accuracy"])
        accuracy_ok = all(mine["accuracy"] >= at[(attack, d)]["accuracy"] for d in baselines)
        judged = [d for d in baselines if d in JUDGING]
        youden = mine["tpr"] - mine["fpr"]
        detection_ok = all(youden > at[(attack, d)]["tpr"] - at[(attack, d)]["fpr"] for d in judged)
        out.append(
            (
                f"better than every baseline on {attack}: final accuracy ≥ each baseline's and TPR-FPR above "
                "Krum's and Multi-Krum's",
                accuracy_ok and detection_ok,
                f"fedledger {mine['accuracy']:.3f} (TPR {_fmt_rate(mine['tpr'])}, FPR {_fmt_rate(mine['fpr'])}); "
                f"best baseline {best} {at[(attack, best)]['accuracy']:.3f}; "
                + ", ".join(
                    f"{d} TPR {_fmt_rate(at[(attack, d)]['tpr'])} FPR {_fmt_rate(at[(attack, d)]['fpr'])}"
                    for d in judged
                ),
            )
        )
    return out


def per_round(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One CSV row per (seed, attack, fraction, defence, round)."""
    rows = []
    for c in cells:
        for r in c["rounds"]:
            rows.append(
                {
                    "seed": c["seed"],
                    "attack": c["attack"],
                    "fraction": c["fraction"],
                    "defence": c["defence"],
                    **{k: v for k, v in r.items() if k != "n"},
                    "rejected": " ".join(map(str, r.get("rejected", []))),
                    "malicious": " ".join(map(str, c["malicious"])),
                }
            )
    return rows


def plot_heatmap(rows: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    plt = pyplot()
    attacks = ["none", *setup.attacks]
    index = {(r["attack"], r["defence"]): r["accuracy"] for r in rows if r["fraction"] in (0.0, HEADLINE)}
    grid_values = np.array([[index.get((a, d), np.nan) for d in setup.defences] for a in attacks])
    fig, ax = plt.subplots(figsize=(8, 6))
    image = ax.imshow(grid_values, cmap="RdYlGn", vmin=0.35, vmax=0.95, aspect="auto")
    ax.set_xticks(range(len(setup.defences)), setup.defences)
    ax.set_yticks(range(len(attacks)), attacks)
    for i in range(len(attacks)):
        for j in range(len(setup.defences)):
            ax.text(j, i, f"{grid_values[i, j]:.3f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="final held-out accuracy")
    ax.set_title(f"Final accuracy, {int(HEADLINE * 100)} % malicious (no-attack row: no attacker)")
    return save_figure(fig, RESULTS / "robustness_accuracy_20.png")


def plot_detection(rows: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    plt = pyplot()
    index = {(r["attack"], r["defence"]): r for r in rows if r["fraction"] == HEADLINE}
    judges = [d for d in JUDGING if d in setup.defences]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    width = 0.8 / max(len(judges), 1)
    x = np.arange(len(setup.attacks))
    for k, defence in enumerate(judges):
        for ax, key in zip(axes, ("tpr", "fpr"), strict=True):
            values = [index.get((a, defence), {}).get(key, np.nan) for a in setup.attacks]
            ax.bar(x + (k - (len(judges) - 1) / 2) * width, values, width, label=defence)
    axes[0].axhline(0.95, color="k", ls="--", lw=0.8)
    axes[1].axhline(0.05, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("TPR (rounds pooled)")
    axes[1].set_ylabel("FPR (rounds pooled)")
    axes[0].legend(ncol=3, fontsize=8)
    axes[1].set_xticks(x, setup.attacks, rotation=30, ha="right")
    axes[0].set_title(f"Detection at {int(HEADLINE * 100)} % malicious (dashed: targets)")
    return save_figure(fig, RESULTS / "robustness_detection_20.png")


def plot_rounds(cells: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    plt = pyplot()
    attacks = ["none", *setup.attacks]
    cols = 5
    fig, axes = plt.subplots((len(attacks) + cols - 1) // cols, cols, figsize=(15, 6), sharey=True, squeeze=False)
    for ax, attack in zip(axes.ravel(), attacks, strict=False):
        for defence in setup.defences:
            runs = [
                [r["accuracy"] for r in c["rounds"]]
                for c in cells
                if c["attack"] == attack and c["defence"] == defence and c["fraction"] in (0.0, HEADLINE)
            ]
            if runs:
                curve = np.median(np.array(runs), axis=0)
                ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=defence)
        ax.set_title(attack, fontsize=9)
        ax.set_xlabel("round")
    for ax in axes.ravel()[len(attacks) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Held-out accuracy per round, {int(HEADLINE * 100)} % malicious (median over seeds)")
    return save_figure(fig, RESULTS / "robustness_rounds_20.png")


def plot_fractions(rows: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    plt = pyplot()
    attacks = [a for a in ("scaling", *NORM_MATCHED, "label_flip") if a in setup.attacks]
    fig, axes = plt.subplots(1, len(attacks), figsize=(4 * len(attacks), 3.5), sharey=True, squeeze=False)
    for ax, attack in zip(axes[0], attacks, strict=True):
        for defence in setup.defences:
            points = sorted(
                (r["fraction"], r["accuracy"]) for r in rows if r["attack"] == attack and r["defence"] == defence
            )
            if points:
                ax.plot([100 * p for p, _ in points], [a for _, a in points], marker="o", label=defence)
        ax.set_title(attack)
        ax.set_xlabel("malicious clients (%)")
    axes[0, 0].set_ylabel("final accuracy")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, RESULTS / "robustness_fractions.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 %% only, 1 seed, 3 rounds: a few minutes")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (quick: 0)")
    parser.add_argument("--rounds", type=int, help="default 5 (quick: 3)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in parallel processes (default 2)")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument("--defences", nargs="+", choices=DEFENCES, default=list(DEFENCES))
    parser.add_argument("--fractions", type=float, nargs="+", help="default 0.1 0.2 0.3 (quick: 0.2)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse cells stored in bench/results/robustness_cells.jsonl by an earlier run with the same settings "
        "(fedledger cells only if the detector's source is unchanged)",
    )
    parser.add_argument(
        "--extra-seeds",
        type=int,
        nargs="*",
        default=[],
        help="seeds whose stored cells are shown in a separate detection table (e.g. seeds where the model did "
        "not learn within the rounds, kept out of the headline medians)",
    )
    parser.add_argument(
        "--detector-source",
        help="with --render-only: show fedledger cells of this detector version (the hash stored with each cell) "
        "instead of the current source's",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="compute nothing: tables, plots and docs from the cells already stored for this grid",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    setup = Setup(
        rounds=args.rounds or (3 if args.quick else 5),
        attacks=tuple(args.attacks),
        defences=tuple(args.defences),
        fractions=tuple(args.fractions or ([HEADLINE] if args.quick else FRACTIONS)),
    )
    machine = machine_facts((*CORE_PACKAGES, *ML_PACKAGES, *BASELINE_PACKAGES))
    detector = args.detector_source if args.render_only and args.detector_source else detector_key()
    store_path = RESULTS / "robustness_cells.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    computed = [*seeds, *(s for s in args.extra_seeds if s not in seeds)]
    if args.render_only:
        pass
    elif args.jobs > 1 and len(computed) > 1:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(seeds))) as pool:
            futures = [pool.submit(run_seed, setup, seed, str(store_path), args.reuse, detector) for seed in computed]
            runs = [f.result() for f in futures]
    else:
        runs = [run_seed(setup, seed, str(store_path), args.reuse, detector) for seed in computed]
    wall = time.perf_counter() - start
    store = CellStore(store_path)
    cells = [
        store.cells[cell_key(setup, seed, *c, detector)]
        for seed in seeds
        for c in grid(setup)
        if cell_key(setup, seed, *c, detector) in store.cells
    ]
    rows = summarise(cells)
    machine["load average at end (1/5/15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # The command that computes these numbers from scratch (reuse/render flags only change where they come from).
    command = " ".join(w for w in command_line().split(" ") if w not in ("--reuse", "--render-only"))
    suffix = "_quick" if args.quick else ""
    write_csv(RESULTS / f"robustness{suffix}.csv", rows)
    write_csv(RESULTS / f"robustness_rounds{suffix}.csv", per_round(cells))
    write_json(
        RESULTS / f"robustness{suffix}.json",
        {
            "command": command,
            "machine": machine,
            "setup": asdict(setup),
            "seeds": seeds,
            "detector_source": detector,
            "runs": runs,
            "wall_seconds": wall,
            "summary": rows,
            "cells": cells,
        },
    )
    headers, table = headline_table(rows, setup)
    text = markdown_table(headers, table)
    print_report("Robustness at 20 % malicious: final accuracy (TPR/FPR)", command=command, machine=machine, table=text)
    met = targets(rows, setup)
    for statement, ok, numbers in met:
        print(f"  {'MET' if ok else 'MISSED'}: {statement}: {numbers}")
    if args.quick:
        return 0
    plots = [plot_heatmap(rows, setup), plot_detection(rows, setup), plot_rounds(cells, setup)]
    if len(setup.fractions) > 1:
        plots.append(plot_fractions(rows, setup))
    extra = [
        store.cells[cell_key(setup, seed, *c, detector)]
        for seed in args.extra_seeds
        for c in grid(setup)
        if cell_key(setup, seed, *c, detector) in store.cells
    ]
    sections = _sections(rows, setup, met, plots)
    if extra:
        sections.append(("Other seeds", _other_seeds(extra, setup)))
    page = render_page(
        "Robustness: attacks x defences x malicious fraction",
        command=command,
        machine=machine,
        intro=_intro(setup, seeds, cells, detector),
        sections=sections,
    )
    (DOCS / "bench-robustness.md").write_text(page)
    print(f"\nwrote {DOCS / 'bench-robustness.md'}")
    return 0


def _intro(setup: Setup, seeds: Sequence[int], cells: Sequence[Mapping[str, Any]], detector: str) -> str:
    majority = _median([c["majority"] for c in cells])
    samples = {c["seed"]: c["client_samples"] for c in cells}
    return (
        f"{setup.clients} clients (Dirichlet alpha = {setup.alpha} label skew; samples per client by seed: "
        + "; ".join(f"seed {s}: {v}" for s, v in sorted(samples.items()))
        + f"), {setup.rounds} rounds, seeds {', '.join(map(str, seeds))} (medians over seeds). Breast-cancer "
        f"Wisconsin as text, {int(setup.test_fraction * 100)} % held out (majority-class accuracy "
        f"{majority:.3f}). Tiny random BERT (hidden {setup.hidden_size}) + LoRA r={setup.lora_r} and head, "
        f"AdamW lr {setup.learning_rate}, {setup.epochs} local epochs, batch {setup.batch_size}, max length "
        f"{setup.max_length}. Defence `fedledger` is the contract's verdict (update_features → screen_round with "
        "the round seed and the previous accepted direction → sample-weighted FedAvg of the accepted updates); "
        f"Krum, Multi-Krum and trimmed mean assume f = the number of attackers ({setup.no_attack_f} without "
        "attack); FedAvg is Flower's weighted aggregate of every update. TPR/FPR: share of malicious / honest "
        "updates not used (rejected by the detector, not selected by Krum/Multi-Krum), pooled over rounds; "
        "median and trimmed mean have no per-update verdict (n/a). This run took "
        f"{len(cells)} cells; their compute time adds up to {sum(c['seconds'] for c in cells) / 60:.0f} min "
        "(cells ran in parallel processes on a machine shared with other jobs, see the load averages; each "
        "cell is stored in bench/results/robustness_cells.jsonl as it finishes). Detector source version "
        f"(sha-256 prefix of anomaly/features.py, detector.py, screening.py): `{detector}`."
    )


def _sections(
    rows: Sequence[Mapping[str, Any]], setup: Setup, met: Sequence[tuple[str, bool, str]], plots: Sequence[Path]
) -> list[tuple[str, str]]:
    headers, table = headline_table(rows, setup)
    target_rows = [[statement, "**met**" if ok else "**missed**", numbers] for statement, ok, numbers in met]
    by_fraction = sorted(rows, key=lambda r: (r["attack"] != "none", r["attack"], r["defence"], r["fraction"]))
    full = [
        [
            r["attack"],
            f"{int(r['fraction'] * 100)} %",
            r["defence"],
            f"{r['accuracy']:.3f}",
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['loss']:.3f}",
            _fmt_rate(r["tpr"]),
            _fmt_rate(r["fpr"]),
            _fmt_rate(r["attack_success"]),
        ]
        for r in by_fraction
    ]
    figures = "\n\n".join(figure_link(p) for p in plots)
    return [
        ("Targets at 20 % malicious", markdown_table(("target", "status", "measured"), target_rows)),
        (
            "Final accuracy at 20 % malicious (TPR/FPR for defences that judge updates)",
            markdown_table(headers, table),
        ),
        ("Plots", figures),
        ("Reading the numbers", READING),
        ("The honest updates", HONEST_UPDATES),
        ("Why this model", MODEL_CHOICE),
        (
            "All fractions",
            markdown_table(
                (
                    "attack",
                    "malicious",
                    "defence",
                    "accuracy",
                    "precision",
                    "recall",
                    "test loss",
                    "TPR",
                    "FPR",
                    "backdoor ASR",
                ),
                full,
            ),
        ),
    ]


def _other_seeds(cells: Sequence[Mapping[str, Any]], setup: Setup) -> str:
    """No-attack accuracy per round and detection at the headline fraction, seed by seed."""
    seeds = sorted({c["seed"] for c in cells})
    curves = [
        [c["seed"], c["defence"], " ".join(f"{r['accuracy']:.3f}" for r in c["rounds"])]
        for c in cells
        if c["attack"] == "none"
    ]
    detection = []
    for attack in setup.attacks:
        line: list[Any] = [attack]
        for seed in seeds:
            for defence in JUDGING:
                match = [
                    c
                    for c in cells
                    if (c["seed"], c["attack"], c["defence"], c["fraction"]) == (seed, attack, defence, HEADLINE)
                ]
                line.append(
                    f"{_fmt_rate(_pooled(match[0], 'tpr'))}/{_fmt_rate(_pooled(match[0], 'fpr'))}" if match else "—"
                )
        detection.append(line)
    headers = ["attack", *(f"seed {s} {d}" for s in seeds for d in JUDGING)]
    stuck = [
        c["seed"]
        for c in cells
        if c["attack"] == "none" and c["defence"] == "fedavg" and c["rounds"][-1]["accuracy"] <= c["majority"] + 0.01
    ]
    note = (
        f"With seed(s) {', '.join(map(str, sorted(stuck)))} the model stays at the majority class for all "
        f"{setup.rounds} rounds even without attack under plain FedAvg, so their accuracies say nothing about the "
        "defences: they are kept out of the headline medians. Their updates are still real, so their detection "
        "rates are shown.\n\n"
        if stuck
        else ""
    )
    return (
        note
        + "Accuracy per round without attack:\n\n"
        + markdown_table(("seed", "defence", "accuracy, rounds 1..5"), sorted(curves))
        + f"\n\nDetection TPR/FPR at {int(HEADLINE * 100)} % malicious (pooled over rounds):\n\n"
        + markdown_table(headers, detection)
    )


if __name__ == "__main__":
    raise SystemExit(main())
