"""The robustness grid: its fixed settings, the cells it runs, and the store of finished cells."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
#: Colluding attacks that adapt to the honest updates and to the public detector (experiments.adaptive_attacks);
#: selectable with --attacks, not yet part of the default grid.
ADAPTIVE_ATTACKS = ("min_max", "min_sum", "under_threshold")
NORM_MATCHED = ("sign_flip_nm", "ipm_nm")
DEFENCES = ("fedledger", "krum", "multikrum", "median", "trmean", "fedavg")
#: Defences with a verdict on each update (TPR/FPR are defined for them).
JUDGING = ("fedledger", "krum", "multikrum")
FRACTIONS = (0.1, 0.2, 0.3)
HEADLINE = 0.2
#: Update attacks whose submission does not depend on the attacker's own delta: it need not train.
NO_OWN_DELTA = frozenset({"gaussian_noise", "alie", "ipm", "ipm_nm", *ADAPTIVE_ATTACKS})
#: The rule patch the consortium is initialised with: none, so the contract's default rules (detector settings
#: and sketch size) screen the ``fedledger`` cells, as on a chain set up without overrides.
RULES: dict[str, Any] = {}


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
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


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
    """The store's key of one cell; fedledger cells also carry the detector's source version."""
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

    def select(self, setup: Setup, seeds: list[int], detector: str) -> list[dict[str, Any]]:
        """The stored cells of ``setup``'s grid for ``seeds``, in grid order (missing cells are left out)."""
        keys = [cell_key(setup, seed, *c, detector) for seed in seeds for c in grid(setup)]
        return [self.cells[k] for k in keys if k in self.cells]
