"""Measures one federated run per mode: ledger off, embedded ledger, native Fabric (Flower: :mod:`.flower`).

Each runner loads the model afresh (outside the timed region), runs the same federation and returns a
:class:`Run`: wall and CPU time, final metrics, accepted updates, the ledger's per-step timings and the final
global adapter (compared with the ledger-off run's, to show the modes compute the same thing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fedledger.bench.ml import Connect, breast_cancer, connector, embedded_ledger

logger = logging.getLogger("bench.overhead")

NEVER_REJECT = 1e9  # a detector_min/max_deviation no update reaches
MODES = ("off", "embedded", "flower", "fabric")


@dataclass(frozen=True)
class Setup:
    """The federation every mode runs (recorded in the JSON)."""

    model: str
    rounds: int
    members: int
    epochs: int
    seed: int = 0
    alpha: float = 1.0
    test_fraction: float = 0.2
    batch_size: int = 16
    learning_rate: float = 3e-3
    max_length: int = 64


@dataclass
class Run:
    """One measured run of one mode in one repeat."""

    mode: str
    repeat: int
    seconds: float
    accuracy: float
    f1: float
    accepted: int
    breakdown: dict[str, float] = field(default_factory=dict)  # ledger runs: step -> seconds over all rounds
    final_state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # the final global adapter
    max_abs_diff: float | None = None  # largest |weight difference| of the final adapter vs the off run's
    cpu_seconds: float = 0.0  # CPU time of this process (+ the Fabric network's processes) during the run


class Clock:
    """Wall time and CPU time of a run. CPU time counts this process and, on Fabric, the network's own
    processes (peers, orderers, chaincode servers, from the network's pids/ folder): on a machine shared
    with other jobs it does not grow when they take the cores, so it backs up the wall-time ratios."""

    def __init__(self, pid_dir: Path | None = None) -> None:
        self.pids = [int(f.read_text()) for f in sorted(pid_dir.glob("*.pid"))] if pid_dir is not None else []
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    def _cpu(self) -> float:
        total = time.process_time()
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return total

    def stop(self) -> tuple[float, float]:
        """Wall and CPU seconds since the clock started."""
        return time.perf_counter() - self.wall, self._cpu() - self.cpu


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """How far two final adapters are apart (0.0: bit-identical)."""
    if set(a) != set(b):
        return float("inf")
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)


def train_config(setup: Setup) -> Any:
    """The members' local training (the same in every mode)."""
    from fedledger.trainer.local_trainer import TrainConfig

    return TrainConfig(
        epochs=setup.epochs,
        batch_size=setup.batch_size,
        learning_rate=setup.learning_rate,
        max_length=setup.max_length,
        seed=setup.seed,
    )


def load_model(setup: Setup) -> tuple[Any, Any]:
    """The demo's model with LoRA and its tokenizer, freshly initialised with the setup's seed."""
    from fedledger.experiments.demo_setup import load_demo_model

    model, tokenizer, _label = load_demo_model(setup.model, setup.seed)
    return model, tokenizer


def run_off(setup: Setup, repeat: int) -> Run:
    """The federation without a ledger (in memory, every update accepted)."""
    from fedledger.experiments.simulation import SimulationConfig, run_simulation

    model, tokenizer = load_model(setup)
    config = SimulationConfig(
        num_clients=setup.members,
        rounds=setup.rounds,
        partition="dirichlet",
        alpha=setup.alpha,
        test_fraction=setup.test_fraction,
        seed=setup.seed,
    )
    clock = Clock()
    result = run_simulation(model, tokenizer, breast_cancer(), config=config, train=train_config(setup))
    seconds, cpu = clock.stop()
    final = result.rounds[-1].metrics
    accepted = sum(c.accepted for r in result.rounds for c in r.clients)
    state = {k: np.asarray(v) for k, v in result.global_state.items()}
    return Run(
        "off",
        repeat,
        seconds,
        float(final["accuracy"]),
        float(final["f1"]),
        accepted,
        final_state=state,
        cpu_seconds=cpu,
    )


def run_ledger(setup: Setup, repeat: int, mode: str, connect: Connect, work: Path, pid_dir: Path | None = None) -> Run:
    """The federation on the ledger ``connect`` reaches (``run_federation``: the round driver over the
    contract-backed aggregator); ``pid_dir`` names the network's processes whose CPU time counts too."""
    from safetensors.numpy import load_file

    from fedledger.experiments.demo_setup import DEMO_RULES
    from fedledger.experiments.federation import FederationConfig, run_federation
    from fedledger.sdk.store import UpdateStore, create_key

    model, tokenizer = load_model(setup)
    store = UpdateStore(work / "store", create_key(work / "store.key"))
    config = FederationConfig(
        rounds=setup.rounds,
        members=setup.members,
        partition="dirichlet",
        alpha=setup.alpha,
        test_fraction=setup.test_fraction,
        seed=setup.seed,
        # Every member is honest: the detector still fits and scores every round (its cost stays in
        # FinalizeRound) but may not reject, so the ledger runs aggregate exactly what the other modes do.
        rules={**DEMO_RULES, "detector_min_deviation": NEVER_REJECT, "detector_max_deviation": NEVER_REJECT},
    )
    clock = Clock(pid_dir)
    result = run_federation(
        connect,
        store,
        model,
        tokenizer,
        breast_cancer(),
        out_dir=work / "run",
        model_name=setup.model,
        config=config,
        train=train_config(setup),
        progress=False,
    )
    seconds, cpu = clock.stop()
    final = result.outcomes[-1].metrics
    breakdown: dict[str, float] = {"setup": result.timings["setup_seconds"]}
    for entry in result.timings["rounds"]:
        for step, value in entry["steps"].items():
            breakdown[step] = breakdown.get(step, 0.0) + value
    accepted = sum(len(o.accepted) for o in result.outcomes)
    state = load_file(str(result.card_dir / "global_adapter.safetensors"))  # the bytes the ledger committed
    return Run(
        mode, repeat, seconds, float(final["accuracy"]), float(final["f1"]), accepted, breakdown, state, None, cpu
    )


def run_embedded(setup: Setup, repeat: int) -> Run:
    """The federation on a fresh embedded ledger in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="overhead-embedded-") as tmp:
        work = Path(tmp)
        with embedded_ledger(work / "consortium") as location:
            return run_ledger(setup, repeat, "embedded", connector(location), work)


def run_fabric(setup: Setup, repeat: int, *, network_dir: Path, port_offset: int, batch_timeout: str) -> Run:
    """The federation on a fresh native Fabric network of its own (brought up before, down after the run)."""
    from fedledger.bench.ledgers import bench_network
    from fedledger.sdk.fabric.local import LocalFabricNetwork

    with (
        bench_network(network_dir, port_offset, batch_timeout, keep=False) as up,
        tempfile.TemporaryDirectory(prefix="overhead-fabric-") as tmp,
    ):
        location = LocalFabricNetwork(up, Path(tmp) / "identities").location
        return run_ledger(setup, repeat, "fabric", connector(location), Path(tmp), pid_dir=up / "pids")


Runner = Callable[[Setup, int], Run]


def measure(
    setup: Setup,
    modes: list[str],
    *,
    repeats: int,
    runners: Mapping[str, Runner],
    after_repeat: Callable[[list[Run], list[float], int], None],
) -> list[Run]:
    """``repeats`` rounds of every mode (``off`` first, the others rotated so no mode always follows the same
    one), after one unmeasured warm-up run. Every run is compared with its repeat's ``off`` run;
    ``after_repeat(runs, 1-min load averages, repeat)`` is called after each repeat."""
    logger.info("warm-up run (not measured)")
    # The first run in a process pays for lazy imports and first-call set-up.
    run_off(dataclasses.replace(setup, rounds=1, model="tiny-bert"), -1)
    runs: list[Run] = []
    loads: list[float] = []
    for repeat in tqdm(range(repeats), desc="repeats", unit="repeat"):
        shift = repeat % max(1, len(modes) - 1)
        others = modes[1:]
        for mode in [modes[0], *others[shift:], *others[:shift]]:
            loads.append(os.getloadavg()[0])
            run = runners[mode](setup, repeat)
            reference = next(r for r in [*runs, run] if r.repeat == repeat and r.mode == "off")
            run.max_abs_diff = max_abs_diff(run.final_state, reference.final_state)
            logger.info(
                "repeat %d %-8s %7.2f s  accuracy %.4f f1 %.4f  accepted %d  max |adapter - off| %.3g",
                repeat,
                mode,
                run.seconds,
                run.accuracy,
                run.f1,
                run.accepted,
                run.max_abs_diff,
            )
            runs.append(run)
        # Results after every repeat: an interrupted study still leaves its finished repeats on record.
        after_repeat(runs, loads, repeat)
    return runs
