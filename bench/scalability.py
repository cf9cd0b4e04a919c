#!/usr/bin/env python3
"""Participants per round, 10 → 1,000, on the real native Fabric network (and the embedded ledger).

Simulated clients, real transactions. For each round size N, on each backend (bounded; 127.0.0.1)::

    .venv/bin/python bench/scalability.py            # full: N = 10, 30, 100, 300, 1000, 3000, 10000
    .venv/bin/python bench/scalability.py --quick    # N = 10, 30, 100

1. N fresh trainer identities (on Fabric issued from the org CAs by ``LocalFabricNetwork``, alternating
   Org1/Org2, each with its own gRPC connection to its org's gateway peer) → RegisterParticipant,
   ``--workers`` at a time (throughput, latency p50/p99).
2. The aggregator opens a round; every trainer submits one ~100 KB LoRA-shaped float32 update
   (``commit_latency.make_update`` shapes; a shared direction plus noise, a ``--malicious`` fraction
   sign-flipped and scaled so that the detector has work) concurrently (commits/s, p50/p99).
3. CloseRound, then FinalizeRound: the detector runs inside endorsement on both orgs' peers over the N
   update records (time, chaincode-server CPU, peak memory). The same verdict is recomputed in this
   process from ListUpdates (``anomaly.screening.screen_round``) to split detector from ledger cost.
4. FedAvg of the accepted updates (``trainer.strategy.FedAvg``) → CommitAggregate (time).

Every step has a time limit; the first step that fails or runs out of time ends that backend's sweep and
is reported as its break point. The Fabric network is its own (``--network-dir``, port offset 20000),
brought up with ``make network-up`` and taken down at the end, also on error or SIGTERM.
Per-participant slopes are fitted and extrapolated to 10,000 participants on paper.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from aggregation_latency import detector_version
from commit_latency import EPSILON, SAMPLES, SCHEMA, SHAPES, bench_network, until_discovered, zero_model
from harness import (
    CORE_PACKAGES,
    DOCS,
    FABRIC_PACKAGES,
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
from tqdm import tqdm

from fedledger.anomaly.features import direction_of
from fedledger.chaincode import errors as contract_errors
from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.chaincode.encoding import dumps
from fedledger.chaincode.transactions.finalize import detect
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.embedded import forget_ledger
from fedledger.sdk.gateway import Gateway, connect
from fedledger.tensors import decode, encode
from fedledger.trainer.strategy import FedAvg

logger = logging.getLogger("bench.scalability")

STUDY = "scalability"
EXTRAPOLATE_TO = 10_000
# Limits of the network as configured (network/peer.sh, network/templates/configtx.yaml, Fabric's core.yaml).
GATEWAY_ENDORSEMENT_TIMEOUT_S = 30.0  # core.yaml peer.gateway.endorsementTimeout (not overridden)
CHAINCODE_EXECUTE_TIMEOUT_S = 120.0  # CORE_CHAINCODE_EXECUTETIMEOUT in network/peer.sh
CLIENT_ENDORSE_TIMEOUT_S = 15.0  # FabricGatewayBackend's default endorse_timeout
ABSOLUTE_MAX_BYTES = 99 * 1024 * 1024  # configtx.yaml BatchSize.AbsoluteMaxBytes: one transaction must fit
TOTAL_QUERY_LIMIT = 100_000  # core.yaml ledger.state.totalQueryLimit: records one range query may return


class StepFailed(RuntimeError):
    """A step of the flow failed or ran out of time: the sweep stops at this round size."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


# --- ledgers under test ------------------------------------------------------------------------


class EmbeddedScale:
    """A fresh embedded consortium (SQLite) in a temporary folder; every client in this process."""

    name = "embedded"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fedledger-scale-")
        self.consortium = create_consortium(Path(self._tmp.name))
        self._gateways: dict[int, Gateway] = {}
        admin = self._client("Org1MSP", "Admin", admin=True)
        admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
        self.aggregator = self._client("Org1MSP", "scale-aggregator")

    def _client(self, mspid: str, name: str, *, admin: bool = False) -> FedLedgerClient:
        identity, signer = self.consortium.user(mspid, name, admin=admin)
        gateway = connect(identity, signer=signer, ledger_dir=self.consortium.ledger_dir)
        network = gateway.get_network("mychannel")
        client = FedLedgerClient(network.get_contract("fedledger"), network)
        self._gateways[id(client)] = gateway
        return client

    def new_trainers(self, count: int, tag: str) -> list[FedLedgerClient]:
        return [self._client("Org1MSP" if i % 2 == 0 else "Org2MSP", f"t{i}-{tag}") for i in range(count)]

    def release(self, clients: Sequence[FedLedgerClient]) -> None:
        for client in clients:
            if gateway := self._gateways.pop(id(client), None):
                gateway.close()

    def cpu(self) -> dict[str, float]:
        return {}

    def peak_rss_mb(self) -> dict[str, float]:
        return {}

    def log_tail(self) -> dict[str, list[str]]:
        return {}

    def metrics(self) -> dict[str, Any]:
        return {}

    def shim_calls(self, before: dict[str, Any]) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        for gateway in self._gateways.values():
            gateway.close()
        forget_ledger(self.consortium.ledger_dir)
        self._tmp.cleanup()


class FabricScale:
    """The native network in ``network_dir``; trainers get fresh identities from the org CAs."""

    def __init__(self, network_dir: Path, step_limit: float) -> None:
        from commit_latency import FabricProbe

        from fedledger.sdk.fabric import load_network_dir
        from fedledger.sdk.fabric.local import LocalFabricNetwork

        self.name = "fabric"
        self.network_dir = network_dir
        self.profile = load_network_dir(network_dir)
        # Thousands of issued identities: on tmpfs when there is one, so that taking the network down does not
        # spend minutes deleting them from disk (issuing them is not what is measured).
        shm = Path("/dev/shm")
        self._issued = tempfile.TemporaryDirectory(prefix="fedledger-ids-", dir=shm if shm.is_dir() else None)
        self.members = LocalFabricNetwork(network_dir, Path(self._issued.name))
        self.orgs = sorted(self.profile.orgs.values(), key=lambda o: o.mspid)[:2]
        self.probe = FabricProbe(network_dir)
        self._backends: dict[int, Any] = {}
        every_org = [o.mspid for o in self.profile.orgs.values()]
        # The admin and the aggregator wait until every org's peer has each block: FinalizeRound is endorsed
        # by both peers, and a peer that lags behind the last submissions would read another set of updates.
        admin = self._client(self.orgs[0].mspid, "Admin", admin=True, committed_on=every_org)
        with contextlib.suppress(contract_errors.AlreadyExists):  # a reused network (--keep-network)
            until_discovered(lambda: admin.init_consortium({"member_msps": sorted(every_org)}))
        # The aggregator may wait as long as a step may take, so that the network's own limits
        # (gateway endorsementTimeout, chaincode executetimeout) are what we observe, not the client's.
        self.aggregator = self._client(
            self.orgs[0].mspid,
            f"scale-aggregator-{int(time.time()):x}",
            committed_on=every_org,
            endorse_timeout=step_limit,
            evaluate_timeout=step_limit,
            commit_status_timeout=step_limit,
        )

    def _client(self, mspid: str, name: str, *, admin: bool = False, **options: Any) -> FedLedgerClient:
        identity, signer = self.members.identity(mspid, name, admin=admin)
        backend = self.profile.org(mspid).backend(identity, signer, **options)
        network = Gateway(backend, backend.identity).get_network(self.profile.channel)
        client = FedLedgerClient(network.get_contract(self.profile.chaincode), network)
        self._backends[id(client)] = backend
        return client

    def new_trainers(self, count: int, tag: str) -> list[FedLedgerClient]:
        return [self._client(self.orgs[i % len(self.orgs)].mspid, f"t{i}-{tag}") for i in range(count)]

    def release(self, clients: Sequence[FedLedgerClient]) -> None:
        for client in clients:
            if backend := self._backends.pop(id(client), None):
                backend.close()

    def cpu(self) -> dict[str, float]:
        return self.probe.cpu()

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) of each network process so far."""
        out = {}
        for pid_file in sorted(self.probe.pids_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{int(pid_file.read_text())}/status").read_text()
                kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
                out[pid_file.stem] = round(int(kb) / 1024, 1)
        return out

    def metrics(self) -> dict[str, Any]:
        return self.probe.snapshot()

    def shim_calls(self, before: dict[str, Any]) -> dict[str, Any]:
        """Ledger calls the chaincode made through the peers since ``before`` (both orgs), from Prometheus."""
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
        out = {}
        for log in sorted((self.network_dir / "logs").glob("*.log")):
            if log.stem.startswith(("peer", "ccserver")):
                with contextlib.suppress(OSError):
                    text = log.read_text(errors="replace").splitlines()
                    out[log.stem] = [x[-400:] for x in text if "WARN" in x or "ERRO" in x or "Error" in x][-lines:]
        return out

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._issued.cleanup()


# --- updates -----------------------------------------------------------------------------------


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


# --- concurrent phases -------------------------------------------------------------------------

# Gateway answers a real client retries: gossip-based discovery briefly loses a peer when the machine is
# saturated ("no combination of peers can be derived"), or a connection is not ready yet.
TRANSIENT = ("endorsement policy", "UNAVAILABLE")
RETRIES = 3


class Retrying:
    """Wraps calls so that transient gateway errors are retried (bounded) and counted."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, call: Callable[[], Any]) -> Callable[[], Any]:
        from fedledger.sdk.errors import GatewayError

        def wrapped() -> Any:
            for attempt in range(RETRIES + 1):
                try:
                    return call()
                except GatewayError as exc:
                    if attempt == RETRIES or not any(t in str(exc) for t in TRANSIENT):
                        raise
                    with self._lock:
                        self.count += 1
                        if len(self.samples) < 3:
                            self.samples.append(str(exc)[:300])
                    time.sleep(0.5 * 2**attempt)
            raise AssertionError("unreachable")

        return wrapped


@dataclasses.dataclass
class Phase:
    n: int
    latencies: list[float]
    errors: list[str]
    wall: float
    timed_out: bool
    results: list[Any]

    def stats(self, prefix: str) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000
        ok = len(self.latencies)
        return {
            f"{prefix}_ok": ok,
            f"{prefix}_errors": self.n - ok,  # failed, or still pending at the step limit
            f"{prefix}_s": round(self.wall, 3),
            f"{prefix}_tps": round(ok / self.wall, 2) if self.wall > 0 else math.nan,
            f"{prefix}_p50_ms": round(float(np.percentile(lat, 50)), 1) if ok else math.nan,
            f"{prefix}_p99_ms": round(float(np.percentile(lat, 99)), 1) if ok else math.nan,
        }


def run_concurrently(label: str, calls: Sequence[Callable[[], Any]], workers: int, limit: float) -> Phase:
    """Runs ``calls`` ``workers`` at a time; stops waiting after ``limit`` seconds (pending ones are cancelled)."""
    latencies: list[float] = []
    errors: list[str] = []
    results: list[Any] = [None] * len(calls)
    lock = threading.Lock()
    bar = tqdm(total=len(calls), desc=label, leave=False)

    def timed(i: int) -> None:
        started = time.perf_counter()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # counted and reported; the phase goes on
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:400])
            return
        finally:
            bar.update(1)
        with lock:
            latencies.append(time.perf_counter() - started)

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=label.split()[0])
    started = time.perf_counter()
    futures = [pool.submit(timed, i) for i in range(len(calls))]
    _done, pending = wait(futures, timeout=limit, return_when=ALL_COMPLETED)
    wall = time.perf_counter() - started
    # In-flight calls end by their own gRPC deadlines; queued ones are dropped.
    pool.shutdown(wait=False, cancel_futures=True)
    bar.close()
    return Phase(len(calls), latencies, errors, wall, bool(pending), results)


def timed_call(step: str, call: Callable[[], Any], limit: float) -> tuple[Any, float]:
    """``call()`` in a worker thread; StepFailed if it raises or takes longer than ``limit`` seconds."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=step)
    started = time.perf_counter()
    future = pool.submit(call)
    try:
        result = future.result(timeout=limit)
    except TimeoutError as exc:
        raise StepFailed(step, f"no answer within the step limit of {limit:.0f} s") from exc
    except Exception as exc:
        elapsed = time.perf_counter() - started
        raise StepFailed(step, f"after {elapsed:.1f} s, {type(exc).__name__}: {exc}"[:800]) from exc
    finally:
        pool.shutdown(wait=False)
    return result, time.perf_counter() - started


def check_phase(step: str, phase: Phase, limit: float) -> None:
    if phase.timed_out:
        raise StepFailed(step, f"{len(phase.latencies)} of {phase.n} done within the step limit of {limit:.0f} s")
    if phase.errors:
        raise StepFailed(step, f"{len(phase.errors)} of {phase.n} failed, e.g. {phase.errors[0]}")


# --- one round of N participants ---------------------------------------------------------------


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for proc, seconds in after.items():
        group = re.sub(r"\d+$", "", re.sub(r"\.org\d+$", "", proc))  # ccserver1 -> ccserver, peer0.org1 -> peer
        groups[group] = round(groups.get(group, 0.0) + seconds - before.get(proc, seconds), 2)
    return groups


def one_round(ledger: Any, n: int, args: argparse.Namespace, rng: np.random.Generator, model: dict) -> dict[str, Any]:
    """Registers N new trainers and runs one full round with them; returns a result row."""
    limit = args.step_limit
    row: dict[str, Any] = {"backend": ledger.name, "n": n, "load_1min": round(os.getloadavg()[0], 2)}
    tag = f"{n}-{int(time.time() * 1000) % 10**8:x}"
    started = time.perf_counter()
    trainers = ledger.new_trainers(n, tag)
    row["issue_identities_s"] = round(time.perf_counter() - started, 3)
    retrying = Retrying()
    try:
        register = run_concurrently(
            f"{ledger.name} N={n} register",
            [retrying(lambda c=c: c.register("trainer", dataset_size=1000, schema_hash=SCHEMA)) for c in trainers],
            args.workers,
            limit,
        )
        row.update(register.stats("register"))
        check_phase("RegisterParticipant", register, limit)

        updates, malicious = make_updates(n, args.malicious, rng)
        base_hash = model["hash"]
        rounds = ledger.aggregator.rounds()
        number = max((r.number for r in rounds), default=0) + 1
        _, row["open_round_s"] = timed_call(
            "OpenRound",
            lambda: ledger.aggregator.open_round(number, base_model=base_hash, deadline=time.time() + 7200),
            limit,
        )
        submit = run_concurrently(
            f"{ledger.name} N={n} submit",
            [
                retrying(lambda c=c, u=u: c.submit_update(number, u, samples=SAMPLES, epsilon=EPSILON, train_loss=0.5))
                for c, u in zip(trainers, updates, strict=True)
            ],
            args.workers,
            limit,
        )
        row.update(submit.stats("submit"))
        check_phase("SubmitUpdate", submit, limit)
        by_participant = {
            u.participant: (u, data, bad) for u, data, bad in zip(submit.results, updates, malicious, strict=True)
        }

        _, row["close_round_s"] = timed_call("CloseRound", lambda: ledger.aggregator.close_round(number), limit)
        cpu_before, metrics_before = ledger.cpu(), ledger.metrics()
        finalized, row["finalize_s"] = timed_call(
            "FinalizeRound", lambda: ledger.aggregator.finalize_round(number), limit
        )
        row["finalize_cpu_s"] = cpu_delta(cpu_before, ledger.cpu())
        row["finalize_shim"] = ledger.shim_calls(metrics_before)
        row["accepted"] = len(finalized.accepted)
        row["rejected"] = len(finalized.rejected)
        rejected = set(finalized.rejected)
        row["malicious_rejected"] = sum(1 for p, (_u, _d, bad) in by_participant.items() if bad and p in rejected)
        row["honest_rejected"] = sum(1 for p, (_u, _d, bad) in by_participant.items() if not bad and p in rejected)

        # What the aggregator reads next, and the detector alone over the same records in this process.
        records, row["list_updates_s"] = timed_call("ListUpdates", lambda: ledger.aggregator.updates(number), limit)
        row["update_record_bytes"] = round(statistics.median(len(dumps(r)) for r in records))
        rules = ledger.aggregator.rules()
        t0 = time.perf_counter()
        # The contract's own call, in this process, with the previous round's direction as FinalizeRound derives it.
        previous = [u for u in model.get("previous", []) if u.status == "accepted"]
        direction = direction_of([u.features for u in previous], [u.samples for u in previous])
        verdicts = detect(number, rules, records, direction)
        row["detector_in_process_s"] = round(time.perf_counter() - t0, 3)
        here = {r.participant for r, v in zip(records, verdicts, strict=True) if not v.accepted}
        row["verdicts_match"] = here == rejected

        t0 = time.perf_counter()
        accepted = [by_participant[p] for p in sorted(finalized.accepted)]
        results = [(decode(data), SAMPLES) for _u, data, _bad in accepted]
        new_state = FedAvg().aggregate_fit(number, model["state"], results)
        payload = encode(new_state)
        row["fedavg_s"] = round(time.perf_counter() - t0, 3)
        committed, row["commit_aggregate_s"] = timed_call(
            "CommitAggregate",
            lambda: ledger.aggregator.commit_aggregate(
                number, payload, update_hashes=[u.hash for u, _d, _b in accepted], metrics={"bench": "scalability"}
            ),
            limit,
        )
        model.update(hash=committed.hash, state=new_state, previous=records)
        row["peak_rss_mb"] = ledger.peak_rss_mb()
        row["status"] = "ok"
    except StepFailed as exc:
        row["status"] = "failed"
        row["failed_step"] = exc.step
        row["error"] = str(exc)
        row["peak_rss_mb"] = ledger.peak_rss_mb()
        row["network_log_tail"] = ledger.log_tail()
        logger.error("%s N=%d: %s", ledger.name, n, exc)
    finally:
        ledger.release(trainers)
        row["transient_retries"] = retrying.count
        row["transient_samples"] = retrying.samples
    for key in ("open_round_s", "close_round_s", "finalize_s", "list_updates_s", "commit_aggregate_s"):
        if key in row:
            row[key] = round(row[key], 3)
    return row


def detector_at_scale(sizes: Sequence[int], seed: int, limit: float) -> list[dict[str, Any]]:
    """FinalizeRound's detector in this process at round sizes beyond the ledger runs: time and peak memory.

    Feature records come from real updates (``update_features`` as SubmitUpdate computes them); the detector
    is ``finalize.detect`` with the default rules, as each endorsing peer runs it.
    """
    import tracemalloc
    from types import SimpleNamespace

    from threadpoolctl import threadpool_limits

    from fedledger.anomaly.features import update_features
    from fedledger.chaincode.records import Rules

    rules = Rules()
    rng = np.random.default_rng(seed)
    out = []
    records: list[SimpleNamespace] = []
    for n in sorted(sizes):
        while len(records) < n:  # reuse the smaller sizes' records; add new updates only
            updates, _bad = make_updates(min(1000, n - len(records)), 0.1, rng)
            for data in updates:
                features = update_features(decode(data), sketch_dim=rules.sketch_dim, samples=SAMPLES)
                records.append(SimpleNamespace(features=features, samples=SAMPLES, epsilon=EPSILON))
        direction = direction_of([r.features for r in records[:n]], [SAMPLES] * n)
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


def sweep(ledger: Any, sizes: Sequence[int], args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    genesis = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    model = {"hash": ledger.aggregator.register_genesis_model(zero_model(), name="scale-adapter").hash}
    model["state"] = genesis
    rows = []
    for n in sizes:
        if time.monotonic() > deadline:
            rows.append({"backend": ledger.name, "n": n, "status": "skipped", "error": "overall --time-limit reached"})
            logger.warning("%s: overall time limit reached; N=%d skipped", ledger.name, n)
            break
        row = one_round(ledger, n, args, rng, model)
        logger.info(
            "%s N=%d: %s",
            ledger.name,
            n,
            {k: v for k, v in row.items() if k.endswith(("_s", "_tps", "_shim", "error"))},
        )
        rows.append(row)
        if row["status"] != "ok":
            break  # the break point of this backend: larger rounds would fail the same way
    return rows


def setup_aggregator(ledger: Any) -> None:
    ledger.aggregator.register("aggregator", dataset_size=0, schema_hash=SCHEMA)


# --- fits and extrapolation --------------------------------------------------------------------


def fit(ns: Sequence[float], ts: Sequence[float], degree: int) -> list[float]:
    """Non-negative least squares t(N) = c0 + c1 N (+ c2 N²): no cost term may be negative."""
    from scipy.optimize import nnls

    x, y = np.asarray(ns, float), np.maximum(np.asarray(ts, float), 1e-6)
    degree = min(degree, len(x) - 1)
    if degree < 1:
        return [float(y[0]) if len(y) else math.nan]
    # Absolute residuals: the largest rounds, which the extrapolation continues, weigh the most.
    design = np.vander(x, degree + 1, increasing=True)
    coefficients, _residual = nnls(design, y)
    return [float(c) for c in coefficients]


def evaluate_fit(coefficients: Sequence[float], n: float) -> float:
    return float(sum(c * n**i for i, c in enumerate(coefficients)))


def formula(coefficients: Sequence[float]) -> str:
    terms = [f"{coefficients[0]:.3g}"]
    if len(coefficients) > 1:
        terms.append(f"{coefficients[1]:.3g}·N")
    if len(coefficients) > 2:
        terms.append(f"{coefficients[2]:.3g}·N²")
    return " + ".join(terms) + " s"


def crossing(coefficients: Sequence[float], limit: float, upto: int = 10**6) -> int | None:
    """Smallest N (on a 1 % grid) whose fitted time exceeds ``limit``."""
    n = 10.0
    while n <= upto:
        if evaluate_fit(coefficients, n) > limit:
            return int(n)
        n *= 1.01
    return None


def extrapolate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-participant slopes from the completed rounds, and the time each step would take at 10,000."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        ok = [r for r in rows if r["backend"] == backend and r.get("status") == "ok"]
        if len(ok) < 2:
            continue
        ns = [r["n"] for r in ok]
        steps = [
            ("register (wall)", "register_s", 1),
            ("submit (wall)", "submit_s", 1),
            ("FinalizeRound", "finalize_s", 2),
            ("detector alone (in process)", "detector_in_process_s", 2),
            ("ListUpdates", "list_updates_s", 1),
            ("FedAvg", "fedavg_s", 1),
            ("CommitAggregate", "commit_aggregate_s", 1),
        ]
        for label, key, degree in steps:
            coefficients = fit(ns, [r[key] for r in ok], degree)
            out.append(
                {
                    "backend": backend,
                    "step": label,
                    "formula": formula(coefficients),
                    "coefficients": coefficients,
                    "per_participant_ms_at_max_n": round(1000 * ok[-1][key] / ok[-1]["n"], 3),
                    "measured_max_n": ok[-1]["n"],
                    "measured_s": ok[-1][key],
                    "predicted_10k_s": round(evaluate_fit(coefficients, EXTRAPOLATE_TO), 1),
                    "n_exceeding_gateway_30s": crossing(coefficients, GATEWAY_ENDORSEMENT_TIMEOUT_S)
                    if key == "finalize_s"
                    else None,
                }
            )
        record = statistics.median(r["update_record_bytes"] for r in ok)
        out.append(
            {
                "backend": backend,
                "step": "FinalizeRound write set (update records only, est.)",
                "formula": f"{record:.0f} B·N",
                "coefficients": [0.0, record],
                "per_participant_ms_at_max_n": math.nan,
                "measured_max_n": ok[-1]["n"],
                "measured_s": math.nan,
                "predicted_10k_s": math.nan,
                "predicted_10k_bytes": int(record * EXTRAPOLATE_TO),
            }
        )
    return out


# --- outputs -----------------------------------------------------------------------------------

TABLE = (
    ("backend", "backend"),
    ("N", "n"),
    ("status", "status"),
    ("register/s", "register_tps"),
    ("register p50 ms", "register_p50_ms"),
    ("submit/s", "submit_tps"),
    ("submit p50 ms", "submit_p50_ms"),
    ("submit p99 ms", "submit_p99_ms"),
    ("FinalizeRound s", "finalize_s"),
    ("detector alone s", "detector_in_process_s"),
    ("ListUpdates s", "list_updates_s"),
    ("FedAvg s", "fedavg_s"),
    ("CommitAggregate s", "commit_aggregate_s"),
    ("rejected (malicious/honest)", "rejected_split"),
    ("load 1 min", "load_1min"),
)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        r = {**r, "rejected_split": f"{r.get('malicious_rejected', '—')}/{r.get('honest_rejected', '—')}"}
        out.append([r.get(key, math.nan) for _h, key in TABLE])
    return out


def plot(rows: Sequence[dict[str, Any]], fits: Sequence[dict[str, Any]]) -> list[Path]:
    plt = pyplot()
    paths = []
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for backend in dict.fromkeys(r["backend"] for r in rows):
        ok = [r for r in rows if r["backend"] == backend and "submit_tps" in r]
        for key, label, style in (("submit_tps", "SubmitUpdate", "-o"), ("register_tps", "RegisterParticipant", "--s")):
            points = [(r["n"], r[key]) for r in ok if key in r and r[key] == r[key]]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=f"{backend}: {label}")
    ax.set(xscale="log", yscale="log", xlabel="participants per round N", ylabel="commits / s")
    ax.set_title("Throughput vs round size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(figure, RESULTS / "scalability_throughput.png"))

    figure, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.logspace(1, math.log10(EXTRAPOLATE_TO), 60)
    for backend in dict.fromkeys(r["backend"] for r in rows):
        ok = [r for r in rows if r["backend"] == backend and r.get("status") == "ok"]
        for key, label, style in (
            ("finalize_s", "FinalizeRound", "o"),
            ("detector_in_process_s", "detector alone", "x"),
        ):
            if not ok:
                continue
            (line,) = ax.plot([r["n"] for r in ok], [r[key] for r in ok], style, label=f"{backend}: {label}")
            step = "FinalizeRound" if key == "finalize_s" else "detector alone (in process)"
            found = next((f for f in fits if f["backend"] == backend and f["step"] == step), None)
            if found:
                ax.plot(grid, [evaluate_fit(found["coefficients"], n) for n in grid], ":", color=line.get_color())
    ax.axhline(GATEWAY_ENDORSEMENT_TIMEOUT_S, color="red", lw=0.8, ls="--", label="gateway endorsementTimeout 30 s")
    ax.axhline(CHAINCODE_EXECUTE_TIMEOUT_S, color="black", lw=0.8, ls="--", label="chaincode executetimeout 120 s")
    ax.set(xscale="log", yscale="log", xlabel="participants per round N", ylabel="seconds")
    ax.set_title("FinalizeRound time vs round size (dotted: fit, extrapolated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(save_figure(figure, RESULTS / "scalability_finalize.png"))
    return paths


def break_summary(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        ok = [r["n"] for r in mine if r.get("status") == "ok"]
        failed = [r for r in mine if r.get("status") == "failed"]
        largest = max(ok, default=0)
        if failed:
            f = failed[0]
            lines.append(
                f"- **{backend}**: largest complete round N = {largest}; broke at N = {f['n']} in "
                f"**{f['failed_step']}**: `{f['error']}`"
            )
            tx = re.search(r"transaction ([0-9a-f]{64})", f.get("error", ""))
            for node, tail in (f.get("network_log_tail") or {}).items():
                about = [x for x in tail if tx and tx.group(1) in x]  # the failed transaction's own log lines
                if about:
                    lines.append(f"  - {node} log: " + " / ".join(f"`{x[-220:]}`" for x in about[-2:]))
        else:
            lines.append(
                f"- **{backend}**: every round size completed (largest N = {largest}); no break within the "
                "measured range."
            )
    return lines


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What the largest complete Fabric round says about where FinalizeRound spends its time."""
    ok = [r for r in rows if r["backend"] == "fabric" and r.get("status") == "ok" and r.get("finalize_shim")]
    if not ok:
        return []
    r = ok[-1]
    shim = r["finalize_shim"]
    calls = sum(v["count"] for k, v in shim.items() if "endorser" not in k)
    busy = sum(v["count"] * v["mean_ms"] for k, v in shim.items() if "endorser" not in k and v["count"]) / 1000
    endorse = next((v["mean_ms"] for k, v in shim.items() if "endorser" in k), math.nan)
    counts = ", ".join(f"{k} {v['count']:,}" for k, v in shim.items() if "endorser" not in k)
    return [
        f"- At N = {r['n']}, FinalizeRound took {r['finalize_s']} s on the client; each endorsing peer spent "
        f"{endorse / 1000:.2f} s on the proposal (mean of the two). The detector alone (`finalize.detect`, "
        f"same records, this process) took {r['detector_in_process_s']} s.",
        f"- The rest is the contract's ledger traffic: {calls:,} shim calls on the two peers together "
        f"({counts}), "
        f"{busy:.2f} s of peer-side service time in total, i.e. about {calls / 2 / r['n']:.1f} sequential "
        "round trips per participant per peer (read each update, the previous round's updates for its "
        "direction, then write each update's verdict, the participant's trust and the payout). The peers "
        "answer each call in well under a millisecond, so the time is spent in the Python chaincode server: a "
        "thread hand-off to its asyncio loop, protobuf and gRPC per call (`chaincode/fabric/context.py`), JSON "
        "decoding of every update record and encoding of every write, and the detector itself.",
        f"- Chaincode servers used {(r.get('finalize_cpu_s') or {}).get('ccserver', math.nan)} CPU s during "
        f"FinalizeRound (both orgs); peers {(r.get('finalize_cpu_s') or {}).get('peer', math.nan)} s.",
    ]


def render(report: dict[str, Any]) -> str:
    rows, fits = report["rows"], report["fits"]
    fabric_ok = [r["n"] for r in rows if r["backend"] == "fabric" and r.get("status") == "ok"]
    target = max(fabric_ok, default=0) >= 1000
    fit_rows = [
        [
            f["backend"],
            f["step"],
            f["formula"],
            f["measured_max_n"],
            f["measured_s"],
            f["per_participant_ms_at_max_n"],
            f"{f['predicted_10k_bytes'] / 2**20:.1f} MiB" if f.get("predicted_10k_bytes") else f["predicted_10k_s"],
        ]
        for f in fits
    ]
    finalize_fits = [f for f in fits if f["step"] == "FinalizeRound" and f["backend"] == "fabric"]
    cross = [
        f"- {f['backend']}: the fitted FinalizeRound time passes the gateway's 30 s endorsement timeout at "
        f"N ≈ {f['n_exceeding_gateway_30s'] or '> 10⁶'}."
        for f in finalize_fits
    ]
    sections = [
        (
            "Method",
            "\n".join(
                [
                    f"- Round sizes N = {', '.join(map(str, report['sizes']))} on Fabric, "
                    f"{', '.join(map(str, report.get('embedded_sizes', report['sizes'])))} on the embedded ledger, "
                    "in that order, on one ledger per backend (participants accumulate; each size registers N *new* "
                    "trainers).",
                    f"- Update: {len(SHAPES)} float32 LoRA-shaped tensors (rank 8, width 800), "
                    f"{report['update_bytes']:,} bytes as safetensors, sent as transient data; a shared direction plus "
                    f"noise, the first {report['malicious']:.0%} sign-flipped and scaled by 5 "
                    "(so FinalizeRound writes anomalies).",
                    f"- {report['workers']} client threads in one process; on Fabric every trainer has its own "
                    "identity issued by its org's CA and its own gRPC connection (Org1/Org2 alternating). The "
                    "aggregator waits until both peers have each of its blocks (`committed_on`).",
                    "- Times are wall-clock on the client, one round per size (register and submit are N "
                    "transactions each, so their throughput and percentiles are over N samples; FinalizeRound, "
                    "ListUpdates and CommitAggregate are single transactions).",
                    f"- Every step is bounded by {report['step_limit']:.0f} s; the first failing step ends a backend's "
                    "sweep and is its break point. The Fabric network is the benchmark's own "
                    f"({report.get('network', 'not run')}), brought up and taken down by the script.",
                    "- Detector: the code in this tree (" + report["detector_version"] + ").",
                ]
            ),
        ),
        ("Results", markdown_table([h for h, _k in TABLE], table_rows(rows))),
        (
            "FinalizeRound on Fabric: where the time goes",
            markdown_table(
                (
                    "N",
                    "FinalizeRound s",
                    "detector alone s",
                    "endorsement per peer, ms (mean)",
                    "shim calls on both peers (count, mean ms)",
                    "CPU s by process group",
                    "peak RSS MB",
                ),
                [
                    [
                        r["n"],
                        r.get("finalize_s", math.nan),
                        r.get("detector_in_process_s", math.nan),
                        next((v["mean_ms"] for k, v in (r.get("finalize_shim") or {}).items() if "endorser" in k), "—"),
                        ", ".join(
                            f"{k} {v['count']} at {v['mean_ms']} ms"
                            for k, v in (r.get("finalize_shim") or {}).items()
                            if "endorser" not in k
                        ),
                        ", ".join(f"{k} {v}" for k, v in (r.get("finalize_cpu_s") or {}).items()),
                        ", ".join(f"{k} {v}" for k, v in (r.get("peak_rss_mb") or {}).items() if "ccserver" in k),
                    ]
                    for r in rows
                    if r["backend"] == "fabric" and "finalize_s" in r
                ],
            )
            + "\n\nShim calls are the chaincode's ledger reads and writes as the peers served them (Prometheus "
            "`chaincode_shim_request_duration`, both endorsing peers together); each is one round trip between "
            "the Python chaincode server and its peer, made one after another inside the transaction.",
        ),
        ("Where it breaks", "\n".join(break_summary(rows) + cross + findings(rows))),
        (
            f"Extrapolation to {EXTRAPOLATE_TO:,} participants (on paper)",
            markdown_table(
                (
                    "backend",
                    "step",
                    "fitted t(N)",
                    "largest N measured",
                    "measured s",
                    "ms per participant",
                    f"predicted at N = {EXTRAPOLATE_TO:,}",
                ),
                fit_rows,
            )
            + "\n\nLinear fits for per-transaction steps (wall time of N transactions), quadratic for FinalizeRound "
            "and the detector (the neighbour-distance feature compares every pair of sketches). Limits of this "
            f"network: gateway endorsementTimeout {GATEWAY_ENDORSEMENT_TIMEOUT_S:.0f} s (Fabric's core.yaml "
            f"default), chaincode executetimeout {CHAINCODE_EXECUTE_TIMEOUT_S:.0f} s (network/peer.sh), client "
            f"endorse timeout {CLIENT_ENDORSE_TIMEOUT_S:.0f} s (FabricGatewayBackend default; the benchmark's "
            f"aggregator raises it to the step limit), AbsoluteMaxBytes {ABSOLUTE_MAX_BYTES / 2**20:.0f} MiB per "
            f"transaction, totalQueryLimit {TOTAL_QUERY_LIMIT:,} records per range query.",
        ),
        (
            "FinalizeRound's detector alone, beyond the ledger runs",
            markdown_table(
                ("N", "detector s", "same, BLAS 1 thread", "peak traced memory MB"),
                [
                    [d["n"], d["detector_s"], d["detector_blas1_s"], d["peak_mb"]]
                    for d in report.get("detector_scale", [])
                ],
            )
            + "\n\n`finalize.detect` with the default rules over N feature records of real updates, in this process "
            "(numpy allocations traced with tracemalloc). Each endorsing peer's chaincode server runs this once per "
            "FinalizeRound; the pairwise terms (neighbour distances, the Theil-Sen slope of norms on samples) make "
            "time and memory grow with N².",
        ),
        (
            "Target",
            f"Participants per round on the real network, 10 → 100 → 1,000: **{'met' if target else 'missed'}** "
            f"(largest complete round on Fabric: N = {max(fabric_ok, default=0)}).",
        ),
        (
            "Plots",
            figure_link(RESULTS / "scalability_throughput.png", "throughput")
            + "\n\n"
            + figure_link(RESULTS / "scalability_finalize.png", "FinalizeRound"),
        ),
    ]
    if report.get("notes"):
        sections.append(("Analysis", report["notes"]))
    return render_page(
        "Scalability: participants per round",
        command=report["command"],
        machine=report["machine"],
        sections=sections,
        intro="Generated by `bench/scalability.py`; raw numbers in `bench/results/scalability.{csv,json}`. "
        "Re-running overwrites this page.",
    )


# --- main --------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so that the ``finally`` blocks take the network down."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N = 10, 30, 100 (a few minutes)")
    parser.add_argument("--sizes", help="comma-separated round sizes (default 10,30,100,300,1000,3000,10000)")
    parser.add_argument("--embedded-sizes", help="round sizes on the embedded ledger (default: --sizes)")
    parser.add_argument("--backends", default="embedded,fabric", help="embedded, fabric, or both")
    parser.add_argument("--workers", type=int, default=32, help="client threads for register and submit")
    parser.add_argument("--malicious", type=float, default=0.1, help="fraction of sign-flipped updates per round")
    parser.add_argument("--step-limit", type=float, default=300.0, help="seconds any one step may take")
    parser.add_argument("--time-limit", type=float, default=3000.0, help="seconds for the whole run")
    parser.add_argument(
        "--network-dir", type=Path, default=Path(__file__).resolve().parents[1] / "run" / "bench-scalability"
    )
    parser.add_argument(
        "--detector-sizes",
        help="round sizes for the in-process detector alone (default 1000,3000,10000; quick 1000; '' to skip)",
    )
    parser.add_argument("--port-offset", type=int, default=20000)
    parser.add_argument("--keep-network", action="store_true", help="leave the network up at the end")
    parser.add_argument("--notes", type=Path, default=Path(__file__).with_name("scalability_notes.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the doc and plots from the saved JSON (e.g. after editing the notes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fedledger").setLevel(logging.WARNING)
    if args.render_only:
        report = json.loads((RESULTS / f"{STUDY}.json").read_text())
        report["notes"] = args.notes.read_text().strip() if args.notes and args.notes.exists() else ""
        report["fits"] = extrapolate(report["rows"])
        write_json(RESULTS / f"{STUDY}.json", report)
        plot(report["rows"], report["fits"])
        (DOCS / f"bench-{STUDY}.md").write_text(render(report))
        logger.info("rewrote %s from %s", DOCS / f"bench-{STUDY}.md", RESULTS / f"{STUDY}.json")
        return 0
    sizes = [
        int(s) for s in (args.sizes or ("10,30,100" if args.quick else "10,30,100,300,1000,3000,10000")).split(",")
    ]
    embedded_sizes = [int(s) for s in args.embedded_sizes.split(",")] if args.embedded_sizes else sizes
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.detector_sizes is None:
        args.detector_sizes = "1000" if args.quick else "1000,3000,10000"
    if unknown := set(backends) - {"embedded", "fabric"}:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    deadline = time.monotonic() + args.time_limit
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer="fabric" in backends),
        "sizes": sizes,
        "embedded_sizes": embedded_sizes,
        "workers": args.workers,
        "malicious": args.malicious,
        "step_limit": args.step_limit,
        "update_bytes": len(make_updates(1, 0.0, np.random.default_rng(0))[0][0]),
        "detector_version": detector_version(),
        "rows": [],
    }
    started = time.monotonic()
    with sigterm_as_exit():
        if "embedded" in backends:
            embedded = EmbeddedScale()
            try:
                setup_aggregator(embedded)
                report["rows"] += sweep(embedded, embedded_sizes, args, deadline)
            finally:
                embedded.close()
        if "fabric" in backends:
            report["network"] = f"{args.network_dir}, port offset {args.port_offset}"
            with bench_network(args.network_dir, args.port_offset, "default", args.keep_network) as network_dir:
                fabric = FabricScale(network_dir, args.step_limit)
                try:
                    setup_aggregator(fabric)
                    report["rows"] += sweep(fabric, sizes, args, deadline)
                finally:
                    fabric.close()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["machine"]["load average at end (1/5/15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report["fits"] = extrapolate(report["rows"])
    if args.detector_sizes:
        report["detector_scale"] = detector_at_scale(
            [int(x) for x in args.detector_sizes.split(",")], args.seed, args.step_limit
        )
    if args.notes and args.notes.exists():
        report["notes"] = args.notes.read_text().strip()
    table = markdown_table([h for h, _k in TABLE], table_rows(report["rows"]))
    print_report(
        "Scalability: participants per round", command=report["command"], machine=report["machine"], table=table
    )
    print("\n".join(break_summary(report["rows"])))
    for f in report["fits"]:
        print(
            f"  {f['backend']:9s} {f['step']:52s} {f['formula']:36s} → N=10,000: "
            f"{f.get('predicted_10k_bytes') or f['predicted_10k_s']}"
        )
    for d in report.get("detector_scale", []):
        print(f"  detector alone at N={d['n']}: {d['detector_s']} s, peak {d['peak_mb']} MB")
    if not args.no_write:
        flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in report["rows"]]
        write_csv(RESULTS / f"{STUDY}.csv", flat)
        write_json(RESULTS / f"{STUDY}.json", report)
        plot(report["rows"], report["fits"])
        (DOCS / f"bench-{STUDY}.md").write_text(render(report))
        logger.info(
            "wrote %s, %s and %s", RESULTS / f"{STUDY}.csv", RESULTS / f"{STUDY}.json", DOCS / f"bench-{STUDY}.md"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
