"""The robustness grid: its fixed settings, the cells it runs, and the store of finished cells."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

CLASSIC_ATTACKS = (
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
#: Colluding attacks with full knowledge of the round's honest updates (experiments.adaptive_attacks): the
#: NDSS'21 min-max and min-sum, sybil copies of one colluder's sign-flipped delta, and the attacker tuned to
#: stay under the detector's own published thresholds. All submit jittered copies of one update (no two
#: byte-identical).
ADAPTIVE_ATTACKS = ("min_max", "min_sum", "sybil", "under_threshold")
ATTACKS = (*CLASSIC_ATTACKS, *ADAPTIVE_ATTACKS)
#: Attacks whose updates depend on the detector's code (every defence's cell reruns when it changes).
DETECTOR_AWARE = frozenset({"under_threshold"})
NORM_MATCHED = ("sign_flip_nm", "ipm_nm")
#: The baselines beside the project's detector: none, byzfl's classic four, and four stronger byzfl rules.
BASELINES = ("krum", "multikrum", "median", "trmean", "nnm_trmean", "arc_trmean", "geomed", "cclip")
DEFENCES = ("fedledger", *BASELINES, "fedavg")
#: Defences with a verdict on each update (TPR/FPR are defined for them).
JUDGING = ("fedledger", "krum", "multikrum")
FRACTIONS = (0.2, 0.3)
HEADLINE = 0.2
#: Update attacks whose submission does not depend on the attacker's own delta: it need not train.
NO_OWN_DELTA = frozenset({"gaussian_noise", "alie", "ipm", "ipm_nm", *ADAPTIVE_ATTACKS})
#: The rule patch the consortium is initialised with: none, so the contract's default rules (detector settings
#: and sketch size) screen the ``fedledger`` cells, as on a chain set up without overrides.
RULES: dict[str, Any] = {}


@dataclass(frozen=True)
class Setup:
    """Everything that fixes a run besides the seed; recorded in the JSON."""

    clients: int = 20
    #: clean FedAvg rounds from the random initialisation to the model every cell starts from (shared by a seed)
    warm_rounds: int = 5
    rounds: int = 5
    alpha: float = 0.5
    test_fraction: float = 0.2
    min_client_samples: int = 5
    hidden_size: int = 64
    lora_r: int = 8
    learning_rate: float = 0.03
    epochs: int = 2
    batch_size: int = 16
    max_length: int = 48
    #: scaling attack: the factor (model replacement, Bagdasaryan et al.)
    scale: float = 10.0
    #: Gaussian attack: the noise's expected L2 norm, in units of the round's honest median norm
    noise_norm: float = 10.0
    ipm_epsilon: float = 0.5
    backdoor_fraction: float = 0.5
    trigger: str = "cf zq"
    #: where the trigger goes: "end" keeps every feature word at its position (the tiny model reads positions)
    trigger_position: Literal["start", "end"] = "end"
    target_label: int = 0
    #: the ``f`` robust baselines assume without attack (with one: the number of attackers)
    no_attack_f: int = 4
    #: each malicious client declares the samples at which its capped share binds (False: its true count)
    inflate_samples: bool = True
    #: relative jitter between the colluders' copies of one update (adaptive attacks)
    sybil_jitter: float = 1e-3
    attacks: tuple[str, ...] = ATTACKS
    defences: tuple[str, ...] = DEFENCES
    fractions: tuple[float, ...] = FRACTIONS

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Setup:
        """The setup a results JSON recorded (its lists back to tuples)."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}
        return cls(**values)


@dataclass
class CellResult:
    """One (seed, attack, fraction, defence) federation: who was malicious and one row of metrics per round."""

    seed: int
    attack: str
    fraction: float
    defence: str
    malicious: list[int]
    majority: float
    client_samples: list[int]
    #: the samples each client declared (honest: its true count; malicious: see ``Setup.inflate_samples``)
    declared: list[int] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def grid(setup: Setup) -> list[tuple[str, float, str]]:
    """The cells, in the fixed order they run: no attack first, then fraction x attack x defence."""
    cells = [("none", 0.0, d) for d in setup.defences]
    cells += [(a, fr, d) for fr in setup.fractions for a in setup.attacks for d in setup.defences]
    return cells


#: Compute seconds of one cell of 20 clients and 5 rounds on this machine (measured 2026-12-02: 2-4 s), and of
#: one cell of the detector-aware attack (it runs the detector ~15 times a round: 13-20 s); for the estimate.
CELL_SECONDS = 4.0
DETECTOR_AWARE_SECONDS = 16.0
#: Seconds of one local training (the warm start trains every client warm_rounds times per process).
TRAINING_SECONDS = 0.05

Cell = tuple[str, float, str]


def cell_seconds(setup: Setup, attack: str) -> float:
    """Estimated compute seconds of one cell of ``attack`` (scaled by rounds and clients)."""
    per = DETECTOR_AWARE_SECONDS if attack in DETECTOR_AWARE else CELL_SECONDS
    return per * setup.rounds / 5 * setup.clients / 20


def estimate_seconds(setup: Setup, cells: list[Cell]) -> float:
    """Estimated compute seconds of one process running ``cells`` (with its warm start)."""
    warm = setup.warm_rounds * setup.clients * TRAINING_SECONDS
    return warm + sum(cell_seconds(setup, attack) for attack, _, _ in cells)


def work_units(setup: Setup, seeds: list[int], *, parts: int) -> list[tuple[int, list[Cell]]]:
    """Each seed's grid split into ``parts`` processes' worth of cells, whole attacks at a time (a process keeps
    a seed's caches: round-1 deltas and the colluders' updates are shared by an attack's cells), balanced by
    :func:`cell_seconds` (greedy, longest first); the cells of a part keep grid order."""
    cells = grid(setup)
    attacks = list(dict.fromkeys(attack for attack, _, _ in cells))
    cost = {a: sum(cell_seconds(setup, a) for b, _, _ in cells if b == a) for a in attacks}
    count = max(1, min(parts, len(attacks)))
    loads = [0.0] * count
    owner: dict[str, int] = {}
    for attack in sorted(attacks, key=lambda a: (-cost[a], attacks.index(a))):
        k = loads.index(min(loads))
        owner[attack] = k
        loads[k] += cost[attack]
    units = [[c for c in cells if owner[c[0]] == k] for k in range(count)]
    return [(seed, unit) for seed in seeds for unit in units if unit]


def setup_key(setup: Setup) -> str:
    """What a stored cell must share with this run to be reused (the grid's extent does not matter)."""
    fixed = {k: v for k, v in asdict(setup).items() if k not in ("attacks", "defences", "fractions", "rounds")}
    return hashlib.sha256(repr(sorted(fixed.items())).encode()).hexdigest()[:16]


def detector_sources() -> list[Path]:
    """The detector's source files: every module of the anomaly package (sorted) and chaincode/verdicts.py."""
    import fedledger.anomaly as package
    import fedledger.chaincode.verdicts as verdicts

    folder = Path(package.__file__).parent
    return [*sorted(folder.glob("*.py")), Path(verdicts.__file__)]


def detector_key() -> str:
    """Hash of the detector's source (:func:`detector_sources`): fedledger cells and the detector-aware attack's
    cells are rerun whenever the detector changes."""
    h = hashlib.sha256()
    for path in detector_sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def cell_key(setup: Setup, seed: int, attack: str, fraction: float, defence: str, detector: str) -> str:
    """The store's key of one cell; cells that depend on the detector (defence ``fedledger``, and the attack that
    tunes itself to the detector) also carry its source version."""
    code = detector if defence == "fedledger" or attack in DETECTOR_AWARE else "-"
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

    def select(self, setup: Setup, seeds: list[int], detector: str) -> list[dict[str, Any]]:
        """The stored cells of ``setup``'s grid for ``seeds``, in grid order (missing cells are left out)."""
        keys = [cell_key(setup, seed, *c, detector) for seed in seeds for c in grid(setup)]
        return [self.cells[k] for k in keys if k in self.cells]
