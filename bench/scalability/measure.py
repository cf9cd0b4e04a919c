"""The measurements of the scalability study: one round of N new participants per size, on a ledger under
test, and FinalizeRound's detector alone at sizes beyond the ledger runs.

The round is the :class:`~fedledger.trainer.rounds.RoundDriver`'s over
:class:`~fedledger.bench.scalability.timed_rounds.TimedRounds`, which times each contract transaction (or N of
them, concurrently) under a step limit, so that the first one to fail or run out of time is the break point;
the aggregation is :class:`~fedledger.trainer.strategy.FedAvg` and the in-process verdict is the contract's own
:func:`~fedledger.chaincode.verdicts.detect`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from fedledger.anomaly.features import direction_of, update_features
from fedledger.bench.commit_latency.probe import FabricProbe
from fedledger.bench.ledgers import PRIVACY, SAMPLES, SCHEMA, SHAPES, LedgerUnderTest, until_discovered, zero_model
from fedledger.bench.scalability.phases import Retrying, StepFailed, check_phase, run_concurrently
from fedledger.bench.scalability.timed_rounds import TimedRounds
from fedledger.chaincode import errors as contract_errors
from fedledger.chaincode.privacy_budget import epsilon_of
from fedledger.chaincode.records import Rules
from fedledger.chaincode.verdicts import detect, screened
from fedledger.sdk.aggregate import DEFAULT_MAX_PROPOSAL_BYTES
from fedledger.sdk.client import FedLedgerClient
from fedledger.tensors import NDState, decode, encode
from fedledger.trainer.rounds import RoundDriver
from fedledger.trainer.strategy import FedAvg

logger = logging.getLogger("bench.scalability")

TRAIN_LOSS = 0.5


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a sweep runs: client threads, fraction of sign-flipped updates, seconds any one step may take."""

    workers: int = 32
    malicious: float = 0.1
    step_limit: float = 300.0
    seed: int = 0


@dataclasses.dataclass
class Model:
    """The latest committed model: its hash and state, and the update records of the round that made it."""

    hash: str
    state: NDState
    previous: list[Any] = dataclasses.field(default_factory=list)


def rules_for(member_msps: Sequence[str], max_round_size: int) -> dict[str, Any]:
    """The consortium's rules: chunks of the aggregate small enough that one chunk of every update of the largest
    round fits in one proposal (the endorsers recompute the aggregate chunk by chunk, chaincode.aggregation)."""
    fits = DEFAULT_MAX_PROPOSAL_BYTES // (4 * 2 * max(1, max_round_size))  # float32, with room for base and model
    chunk = max(16, 1 << (fits.bit_length() - 1))  # a power of two, at least the rules' minimum
    return {"member_msps": list(member_msps), "aggregate_chunk_elements": min(chunk, 65_536)}


class ScaleLedger:
    """A ledger under test with its registered aggregator; on Fabric also the probe of the network's processes
    (metrics, CPU, memory) and its logs. Trainers are created per round size and released after their round."""

    def __init__(self, ledger: LedgerUnderTest, step_limit: float, max_round_size: int = 10_000) -> None:
        self.ledger = ledger
        self.name = ledger.name
        fabric = ledger.is_fabric
        self.probe = FabricProbe(ledger.location.path) if fabric else None
        # On Fabric the admin and the aggregator wait until every org's peer has each block: FinalizeRound is
        # endorsed by both peers, and a peer that lags behind the last submissions would read other updates.
        waits: dict[str, Any] = {"committed_on": ledger.member_msps} if fabric else {}
        admin = ledger.client(ledger.orgs[0], "Admin", admin=True, **waits)
        with contextlib.suppress(contract_errors.AlreadyExists):  # a reused network (--keep-network)
            until_discovered(lambda: admin.init_consortium(rules_for(ledger.member_msps, max_round_size)))
        # The aggregator may wait as long as a step may take, so that the network's own limits (gateway
        # endorsementTimeout, chaincode executetimeout) are what we observe, not the client's.
        limits: dict[str, Any] = (
            {"endorse_timeout": step_limit, "evaluate_timeout": step_limit, "commit_status_timeout": step_limit}
            if fabric
            else {}
        )
        self.aggregator = ledger.client(ledger.orgs[0], f"scale-aggregator-{int(time.time()):x}", **waits, **limits)
        ledger.grant(self.aggregator, "aggregator")

    def new_trainers(self, count: int, tag: str) -> list[FedLedgerClient]:
        """``count`` new identities alternating between the two organisations (not registered yet)."""
        orgs = self.ledger.orgs
        return [self.ledger.client(orgs[i % len(orgs)], f"t{i}-{tag}") for i in range(count)]

    def release(self, clients: Sequence[FedLedgerClient], workers: int = 8) -> None:
        """The trainers of a finished size leave: their organisations' admins suspend them, so that the next
        round does not expect them (an aggregator may close a round early only once every expected trainer
        submitted), then their connections close."""
        admins = self.ledger.admins()

        def leave(client: FedLedgerClient) -> None:
            pid = client.whoami()["id"]
            with contextlib.suppress(contract_errors.ContractError):  # never registered, or already suspended
                admins[pid.partition(":")[0]].suspend(pid, "benchmark: this round size is done")

        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(leave, clients))
        self.ledger.release(clients)

    def cpu(self) -> dict[str, float]:
        return self.probe.cpu() if self.probe else {}

    def peak_rss_mb(self) -> dict[str, float]:
        return self.probe.peak_rss_mb() if self.probe else {}

    def metrics(self) -> dict[str, Any]:
        return self.probe.snapshot() if self.probe else {}

    def shim_calls(self, before: dict[str, Any]) -> dict[str, Any]:
        """Ledger calls the chaincode made through the peers since ``before`` (both orgs), from Prometheus."""
        if self.probe is None:
            return {}
        histograms = self.probe.delta(before, self.probe.snapshot(), 1)["histograms"]
        wanted = ("endorser proposal", "GET_STATE", "PUT_STATE", "GET_STATE_BY_RANGE")
        return {
            label.split(" served")[0].replace("chaincode shim ", ""): {
                "count": int(v["count"]),
                "mean_ms": round(v["mean_ms"], 3) if v["count"] else math.nan,
            }
            for label, v in histograms.items()
            if any(w in label for w in wanted)
        }

    def log_tail(self, lines: int = 15) -> dict[str, list[str]]:
        """The last warnings and errors of each peer and chaincode server (the network folder is removed later)."""
        if not self.ledger.is_fabric:
            return {}
        out = {}
        for log in sorted((self.ledger.location.path / "logs").glob("*.log")):
            if log.stem.startswith(("peer", "ccserver")):
                with contextlib.suppress(OSError):
                    text = log.read_text(errors="replace").splitlines()
                    out[log.stem] = [x[-400:] for x in text if "WARN" in x or "ERRO" in x or "Error" in x][-lines:]
        return out


def make_updates(count: int, malicious: float, rng: np.random.Generator) -> tuple[list[bytes], list[bool]]:
    """LoRA-shaped deltas: a shared direction plus per-client noise (honest clients agree roughly);
    the first ``malicious`` fraction is sign-flipped and scaled by 5, which the detector should reject."""
    direction = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    bad = [i < round(malicious * count) for i in range(count)]
    out = []
    for is_bad in bad:
        scale = -5.0 if is_bad else 1.0
        tensors = {
            k: (0.01 * scale * (d + rng.standard_normal(d.shape))).astype(np.float32) for k, d in direction.items()
        }
        out.append(encode(tensors))
    return out, bad


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two :meth:`FabricProbe.cpu` readings, by process group (peer, ccserver...)."""
    groups: dict[str, float] = {}
    for proc, seconds in after.items():
        group = re.sub(r"\d+$", "", re.sub(r"\.org\d+$", "", proc))  # ccserver1 -> ccserver, peer0.org1 -> peer
        groups[group] = round(groups.get(group, 0.0) + seconds - before.get(proc, seconds), 2)
    return groups


def one_round(scale: ScaleLedger, n: int, settings: Settings, rng: np.random.Generator, model: Model) -> dict[str, Any]:
    """Registers N new trainers and runs one full round with them through the round driver; returns a result
    row (``model`` advances)."""
    limit = settings.step_limit
    row: dict[str, Any] = {"backend": scale.name, "n": n, "load_1min": round(os.getloadavg()[0], 2)}
    tag = f"{n}-{int(time.time() * 1000) % 10**8:x}"
    started = time.perf_counter()
    trainers = scale.new_trainers(n, tag)
    row["issue_identities_s"] = round(time.perf_counter() - started, 3)
    retrying = Retrying()

    def finalize_probe() -> Callable[[], dict[str, Any]]:
        cpu_before, metrics_before = scale.cpu(), scale.metrics()
        return lambda: {
            "finalize_cpu_s": cpu_delta(cpu_before, scale.cpu()),
            "finalize_shim": scale.shim_calls(metrics_before),
        }

    ledger = TimedRounds(
        scale.aggregator, head=model.hash, state=model.state, limit=limit, row=row, probe=finalize_probe
    )
    ledger.previous = model.previous
    updates, malicious = make_updates(n, settings.malicious, rng)
    bad: dict[str, bool] = {}

    def collect(number: int) -> None:
        """Every trainer submits its update concurrently (the SubmitUpdate phase)."""
        submit = run_concurrently(
            f"{scale.name} N={n} submit",
            [
                retrying(
                    lambda c=c, u=u: c.submit_update(number, u, samples=SAMPLES, privacy=PRIVACY, train_loss=TRAIN_LOSS)
                )
                for c, u in zip(trainers, updates, strict=True)
            ],
            settings.workers,
            limit,
        )
        row.update(submit.stats("submit"))
        check_phase("SubmitUpdate", submit, limit)
        for record, data, is_bad in zip(submit.results, updates, malicious, strict=True):
            ledger.payloads[record.participant] = data
            bad[record.participant] = is_bad

    try:
        enrol = run_concurrently(
            f"{scale.name} N={n} enrol",
            [retrying(lambda c=c: scale.ledger.enrol(c, dataset_size=1000, schema_hash=SCHEMA)) for c in trainers],
            settings.workers,
            limit,
        )
        check_phase("EnrolTrainer", enrol, limit)
        register = run_concurrently(
            f"{scale.name} N={n} register",
            [retrying(lambda c=c: c.register("trainer")) for c in trainers],
            settings.workers,
            limit,
        )
        row.update(register.stats("register"))
        check_phase("RegisterParticipant", register, limit)
        outcome = RoundDriver(ledger, collect=collect, strategy=FedAvg()).run_round()
        rejected = {u.participant for u in ledger.previous if u.status == "rejected"}
        row["malicious_rejected"] = sum(1 for p, is_bad in bad.items() if is_bad and p in rejected)
        row["honest_rejected"] = sum(1 for p, is_bad in bad.items() if not is_bad and p in rejected)
        # decoding the accepted updates, FedAvg, encoding the aggregate: the aggregator's own work
        own_work = outcome.seconds["fetch_verify"] + outcome.seconds["aggregation"] + ledger.encode_seconds
        row["fedavg_s"] = round(own_work, 3)
        model.hash, model.state, model.previous = ledger.model_hash, ledger.state, ledger.previous
        row["peak_rss_mb"] = scale.peak_rss_mb()
        row["status"] = "ok"
    except StepFailed as exc:
        row["status"] = "failed"
        row["failed_step"] = exc.step
        row["error"] = str(exc)
        row["peak_rss_mb"] = scale.peak_rss_mb()
        row["network_log_tail"] = scale.log_tail()
        logger.error("%s N=%d: %s", scale.name, n, exc)
    finally:
        scale.release(trainers)
        row["transient_retries"] = retrying.count
        row["transient_samples"] = retrying.samples
    return row


def sweep(scale: ScaleLedger, sizes: Sequence[int], settings: Settings, deadline: float) -> list[dict[str, Any]]:
    """One round per size, in order, until a step fails (the break point) or ``deadline`` (monotonic) passes."""
    rng = np.random.default_rng(settings.seed)
    genesis = scale.aggregator.register_genesis_model(zero_model(), name="scale-adapter")
    model = Model(genesis.hash, decode(zero_model()))
    rows = []
    for n in sizes:
        if time.monotonic() > deadline:
            rows.append({"backend": scale.name, "n": n, "status": "skipped", "error": "overall --time-limit reached"})
            logger.warning("%s: overall time limit reached; N=%d skipped", scale.name, n)
            break
        row = one_round(scale, n, settings, rng, model)
        logger.info(
            "%s N=%d: %s",
            scale.name,
            n,
            {k: v for k, v in row.items() if k.endswith(("_s", "_tps", "_shim", "error"))},
        )
        rows.append(row)
        if row["status"] != "ok":
            break  # the break point of this backend: larger rounds would fail the same way
    return rows


def detector_at_scale(sizes: Sequence[int], seed: int, limit: float) -> list[dict[str, Any]]:
    """FinalizeRound's detector in this process at round sizes beyond the ledger runs: time and peak memory.

    Feature records come from real updates (``update_features`` as SubmitUpdate computes them); the verdict
    is :func:`fedledger.chaincode.verdicts.detect` with the default rules, as each endorsing peer runs it.
    """
    import tracemalloc

    from threadpoolctl import threadpool_limits

    rules = Rules()
    rng = np.random.default_rng(seed)
    out = []
    records: list[dict[str, Any]] = []
    for n in sorted(sizes):
        while len(records) < n:  # reuse the smaller sizes' records; add new updates only
            updates, _bad = make_updates(min(1000, n - len(records)), 0.1, rng)
            for data in updates:
                features = update_features(decode(data), sketch_dim=rules.sketch_dim)
                records.append(screened(features, samples=SAMPLES, epsilon=epsilon_of([PRIVACY], PRIVACY.delta)))
        direction = direction_of(records[:n], [SAMPLES] * n)
        if not out:
            detect(2, rules, records[:50], direction)  # warm-up: first-call costs are not per-round costs
        tracemalloc.start()
        started = time.perf_counter()
        detect(2, rules, records[:n], direction)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # The chaincode servers use OpenBLAS' default thread pool; on a saturated machine one thread is faster.
        with threadpool_limits(limits=1, user_api="blas"):
            started = time.perf_counter()
            detect(2, rules, records[:n], direction)
            single = time.perf_counter() - started
        row = {
            "n": n,
            "detector_s": round(seconds, 3),
            "detector_blas1_s": round(single, 3),
            "peak_mb": round(peak / 2**20, 1),
        }
        logger.info("detector alone at N=%d: %s", n, row)
        out.append(row)
        if seconds > limit:
            break
    return out
