#!/usr/bin/env python3
"""SubmitUpdate commit latency (p50/p99) and throughput, Fabric network beside the embedded ledger.

What one run does (bounded; everything on 127.0.0.1)::

    .venv/bin/python bench/commit_latency.py            # or: make bench

1. Embedded ledger: a fresh consortium in a temporary folder.
2. Fabric: a *separate* native network (``FEDLEDGER_PORT_OFFSET``/``FEDLEDGER_NETWORK_DIR``, default
   offset 10000 in ``run/bench-network``) is brought up fresh for each ``--batch-timeouts`` value and
   taken down at the end, so a network another process uses (``run/network``) is never touched.
   ``--fabric-network-dir DIR`` uses an already running network instead and never stops it.
3. On each backend: an aggregator, a genesis model and T trainers (alternating Org1/Org2, each its
   own client identity and, on Fabric, its own gRPC connection to its org's peer). Then, per
   concurrency C and repeat, a fresh round is opened, C worker threads submit one ~100 KB float32
   safetensors update per trainer (a participant submits once per round, so every submission of a
   run is a different identity), and the round is abandoned. Latency = ``submit_update`` call to
   VALID commit status, on the client. Throughput = commits / wall time of the run.
4. Fabric only: lone transactions split into endorse / submit / commit-status, peer and orderer
   Prometheus metrics and per-process CPU per cell (where the time goes), and the contract's own
   per-update compute measured in process.

Results: a table on stdout, ``bench/results/commit_latency.{csv,json}``,
``bench/results/commit_latency_breakdown.csv`` and ``docs/bench-commit-latency.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from harness import CORE_PACKAGES, FABRIC_PACKAGES, fmt, machine_facts, markdown_table
from safetensors.numpy import save as save_safetensors
from tqdm import tqdm

from fedledger.chaincode import errors as contract_errors
from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.sdk.backend import Proposal
from fedledger.sdk.client import UPDATE_FIELD, FedLedgerClient
from fedledger.sdk.embedded import forget_ledger
from fedledger.sdk.gateway import Gateway, connect

logger = logging.getLogger("bench.commit_latency")

from .ledgers import EPSILON, SAMPLES, SCHEMA, SHAPES, bench_network, configured_batch_timeout, make_update, until_discovered, zero_model  # noqa: E402,E501 (moved by the bench split)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "bench-commit-latency.md"
NOTES = REPO / "bench" / "commit_latency_notes.md"

TARGET_TPS = 150.0
TARGET_P50_MS = 150.0
DONE = ("aggregated", "abandoned")


# --- updates -----------------------------------------------------------------------------------


# --- results -----------------------------------------------------------------------------------

STAT_KEYS = (
    "n",
    "committed",
    "errors",
    "mvcc_retries",
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "max_ms",
    "throughput_tps",
    "wall_s",
)


@dataclasses.dataclass
class RunResult:
    backend: str
    concurrency: int
    run: int
    n: int
    errors: int
    latencies: list[float]
    wall: float
    retried: int = 0
    error_samples: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def p(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies), q)) * 1000 if self.latencies else float("nan")

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def throughput(self) -> float:
        return self.ok / self.wall if self.wall > 0 else float("nan")

    def row(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "concurrency": self.concurrency,
            "run": self.run,
            "n": self.n,
            "committed": self.ok,
            "errors": self.errors,
            "mvcc_retries": self.retried,
            "p50_ms": round(self.p(50), 2),
            "p99_ms": round(self.p(99), 2),
            "mean_ms": round(self.mean_ms, 2),
            "max_ms": round(max(self.latencies) * 1000, 2) if self.latencies else float("nan"),
            "throughput_tps": round(self.throughput, 2),
            "wall_s": round(self.wall, 3),
        }


def median_row(runs: Sequence[RunResult]) -> dict[str, Any]:
    rows = [r.row() for r in runs]
    out: dict[str, Any] = {"backend": runs[0].backend, "concurrency": runs[0].concurrency, "run": "median"}
    for key in STAT_KEYS:
        out[key] = round(statistics.median(float(r[key]) for r in rows), 2)
    for key in ("n", "committed", "mvcc_retries"):
        out[key] = int(out[key])
    out["errors"] = sum(r.errors for r in runs)  # all runs together, not a median
    out["runs"] = len(rows)
    return out


# --- ledgers under test ------------------------------------------------------------------------


class Ledger(Protocol):
    name: str
    trainers: list[FedLedgerClient]

    def open_round(self) -> int: ...

    def end_round(self, number: int) -> None: ...

    def retried(self) -> int: ...

    def close(self) -> None: ...


class _Rounds:
    """Rounds driven by one aggregator: open a fresh one per run, abandon it afterwards."""

    aggregator: FedLedgerClient
    genesis: str

    def _setup_model(self) -> None:
        try:
            latest = self.aggregator.latest_model()
        except contract_errors.NotFound:
            self.genesis = self.aggregator.register_genesis_model(zero_model(), name="bench-adapter").hash
            return
        if set(latest.manifest) != set(SHAPES):
            raise SystemExit(
                f"the ledger's latest model has other tensors ({sorted(latest.manifest)}); the benchmark needs a "
                "fresh network (drop --fabric-network-dir to let it bring up its own)"
            )
        self.genesis = latest.hash

    def open_round(self) -> int:
        rounds = self.aggregator.rounds()
        number = max((r.number for r in rounds), default=0) + 1
        if rounds:
            last = max(rounds, key=lambda r: r.number)
            if last.status not in DONE:
                self.aggregator.abandon_round(last.number, "benchmark: make room for a new round")
        self.aggregator.open_round(number, base_model=self.genesis, deadline=time.time() + 3600)
        return number

    def end_round(self, number: int) -> None:
        self.aggregator.abandon_round(number, "benchmark round done")


def _register_all(clients: Sequence[FedLedgerClient], workers: int, what: str) -> None:
    def register(client: FedLedgerClient) -> None:
        with contextlib.suppress(contract_errors.AlreadyExists):
            client.register("trainer", dataset_size=1000, schema_hash=SCHEMA)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(register, c) for c in clients]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"register {what}", leave=False):
            future.result()


class EmbeddedLedgerUnderTest(_Rounds):
    """A fresh embedded consortium (SQLite) in a temporary folder; all clients in this process."""

    def __init__(self, trainers: int, workers: int) -> None:
        self.name = "embedded"
        self._tmp = tempfile.TemporaryDirectory(prefix="fedledger-bench-")
        self.consortium = create_consortium(Path(self._tmp.name))
        self._gateways: list[Gateway] = []
        admin = self._client("Org1MSP", "Admin", admin=True)
        admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
        self.aggregator = self._client("Org1MSP", "aggregator")
        self.aggregator.register("aggregator", dataset_size=0, schema_hash=SCHEMA)
        self._setup_model()
        self.trainers = [self._client("Org1MSP" if i % 2 == 0 else "Org2MSP", f"trainer{i}") for i in range(trainers)]
        _register_all(self.trainers, workers, self.name)

    def _client(self, mspid: str, name: str, *, admin: bool = False) -> FedLedgerClient:
        identity, signer = self.consortium.user(mspid, name, admin=admin)
        gateway = connect(identity, signer=signer, ledger_dir=self.consortium.ledger_dir)
        self._gateways.append(gateway)
        network = gateway.get_network("mychannel")
        return FedLedgerClient(network.get_contract("fedledger"), network)

    def retried(self) -> int:
        return 0

    def close(self) -> None:
        for gateway in self._gateways:
            gateway.close()
        forget_ledger(self.consortium.ledger_dir)
        self._tmp.cleanup()


class FabricLedgerUnderTest(_Rounds):
    """The native network in ``network_dir``; trainers get fresh identities from the org CAs."""

    def __init__(self, network_dir: Path, trainers: int, workers: int, name: str = "fabric") -> None:
        from fedledger.sdk.fabric import load_network_dir
        from fedledger.sdk.fabric.local import LocalFabricNetwork

        self.name = name
        self.network_dir = network_dir
        self.profile = load_network_dir(network_dir)
        # New trainer identities are issued from the org CAs into the network folder's bench/ area.
        self.members = LocalFabricNetwork(network_dir, network_dir / "bench-identities")
        self.orgs = sorted(self.profile.orgs.values(), key=lambda o: o.mspid)[:2]
        tag = f"{int(time.time()):x}"
        self.backends: list[Any] = []
        admin = self._client(self.orgs[0].name, user="Admin")
        rules = {"member_msps": sorted(o.mspid for o in self.profile.orgs.values())}
        with contextlib.suppress(contract_errors.AlreadyExists):
            until_discovered(lambda: admin.init_consortium(rules))
        self.aggregator = self._client(self.orgs[0].name, common_name=f"bench-aggregator-{tag}")
        self.aggregator.register("aggregator", dataset_size=0, schema_hash=SCHEMA)
        self._setup_model()
        self.trainer_backends: list[Any] = []
        self.trainers: list[FedLedgerClient] = []
        for i in range(trainers):
            org = self.orgs[i % len(self.orgs)]
            self.trainers.append(self._client(org.name, common_name=f"bench-trainer{i}-{tag}"))
            self.trainer_backends.append(self.backends[-1])
        _register_all(self.trainers, workers, self.name)

    def _client(self, org: str, *, user: str = "User1", common_name: str | None = None) -> FedLedgerClient:

        connection = self.profile.org(org)
        if common_name is None:
            backend = self.profile.connect(org, user=user)
        else:
            identity, signer = self.members.identity(connection.mspid, common_name)
            backend = connection.backend(identity, signer)
        self.backends.append(backend)
        network = Gateway(backend, backend.identity).get_network(self.profile.channel)
        return FedLedgerClient(network.get_contract(self.profile.chaincode), network)

    def retried(self) -> int:
        return sum(b.retried for b in self.backends)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


# --- one measured run --------------------------------------------------------------------------


def measure(ledger: Ledger, concurrency: int, n: int, run: int, rng: np.random.Generator) -> RunResult:
    """One round: ``n`` different trainers each submit one update, ``concurrency`` at a time."""
    if n > len(ledger.trainers):
        raise ValueError(f"{n} submissions need {n} trainers; only {len(ledger.trainers)} are registered")
    number = ledger.open_round()
    updates = [make_update(rng) for _ in range(n)]
    trainers = ledger.trainers[:n]
    retried_before = ledger.retried()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        started = time.perf_counter()
        try:
            trainers[i].submit_update(number, updates[i], samples=SAMPLES, epsilon=EPSILON, train_loss=0.5)
        except Exception as exc:  # counted and reported; the run goes on
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)

    bar = tqdm(total=n, desc=f"{ledger.name} c={concurrency} run {run}", leave=False)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix=f"c{concurrency}") as pool:
        for future in as_completed([pool.submit(submit, i) for i in range(n)]):
            future.result()
            bar.update(1)
    wall = time.perf_counter() - started
    bar.close()
    ledger.end_round(number)
    if errors:
        logger.warning(
            "%s c=%d run %d: %d of %d failed, e.g. %s", ledger.name, concurrency, run, len(errors), n, errors[0]
        )
    result = RunResult(
        ledger.name, concurrency, run, n, len(errors), latencies, wall, ledger.retried() - retried_before, errors[:3]
    )
    logger.info(
        "%s c=%d run %d: n %d, p50 %.1f ms, p99 %.1f ms, %.1f commits/s",
        ledger.name,
        concurrency,
        run,
        n,
        result.p(50),
        result.p(99),
        result.throughput,
    )
    return result


def lone_breakdown(ledger: FabricLedgerUnderTest, count: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """Sequential lone transactions split into the Gateway steps: endorse, submit, commit status."""
    number = ledger.open_round()
    rows = []
    for i in tqdm(range(count), desc=f"{ledger.name} lone breakdown", leave=False):
        backend = ledger.trainer_backends[i]
        proposal = Proposal(
            ledger.profile.channel,
            ledger.profile.chaincode,
            "SubmitUpdate",
            tuple(str(a).encode() for a in (number, SAMPLES, repr(EPSILON), repr(0.5))),
            {UPDATE_FIELD: make_update(rng)},
        )
        t0 = time.perf_counter()
        transaction = backend.endorse(proposal)
        t1 = time.perf_counter()
        backend.submit_endorsed(transaction)
        t2 = time.perf_counter()
        code, _block = backend.commit_status(proposal.channel, transaction.transaction_id)
        t3 = time.perf_counter()
        if code != "VALID":
            logger.warning("lone transaction %s committed %s", transaction.transaction_id, code)
            continue
        rows.append(
            {
                "endorse_ms": (t1 - t0) * 1000,
                "submit_ms": (t2 - t1) * 1000,
                "commit_status_ms": (t3 - t2) * 1000,
                "total_ms": (t3 - t0) * 1000,
            }
        )
    ledger.end_round(number)
    return rows


# --- where the time goes (Fabric) --------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    samples: Samples = {}
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # 127.0.0.1 operations endpoint
            text = response.read().decode()
    except OSError as exc:
        logger.warning("cannot scrape %s: %s", url, exc)
        return samples
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            with contextlib.suppress(ValueError):
                samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def _labels_match(have: frozenset[tuple[str, str]], want: dict[str, str]) -> bool:
    """``want`` values ending in ``*`` match by prefix (chaincode labels carry the package id)."""
    labels = dict(have)
    for key, value in want.items():
        got = labels.get(key)
        if got is None or not (got.startswith(value[:-1]) if value.endswith("*") else got == value):
            return False
    return True


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and _labels_match(ls, labels))


# (what it measures, node kind, Prometheus histogram, label filter)
HISTOGRAMS: list[tuple[str, str, str, dict[str, str]]] = [
    (
        "gateway Endorse (gateway peer)",
        "peer",
        "grpc_server_unary_request_duration",
        {"service": "gateway_Gateway", "method": "Endorse"},
    ),
    (
        "gateway Submit (gateway peer)",
        "peer",
        "grpc_server_unary_request_duration",
        {"service": "gateway_Gateway", "method": "Submit"},
    ),
    (
        "gateway CommitStatus (gateway peer)",
        "peer",
        "grpc_server_unary_request_duration",
        {"service": "gateway_Gateway", "method": "CommitStatus"},
    ),
    (
        "endorser proposal incl. chaincode (each peer)",
        "peer",
        "endorser_proposal_duration",
        {"chaincode": "fedledger", "success": "true"},
    ),
    *(
        (
            f"chaincode shim {kind} served by the peer (each peer)",
            "peer",
            "chaincode_shim_request_duration",
            {"chaincode": "fedledger_*", "type": kind},
        )
        for kind in ("GET_STATE", "GET_STATE_BY_RANGE", "PUT_STATE")
    ),
    ("block validation, VSCC + MVCC (per block, each peer)", "peer", "gossip_privdata_validation_duration", {}),
    ("block commit to ledger (per block, each peer)", "peer", "ledger_block_processing_time", {}),
    ("orderer broadcast validate (per tx, leader)", "orderer", "broadcast_validate_duration", {}),
    ("orderer broadcast enqueue (per tx, leader)", "orderer", "broadcast_enqueue_duration", {}),
    ("raft WAL fsync (each orderer)", "orderer", "etcd_disk_wal_fsync_duration_seconds", {}),
]

CPU_GROUPS = {"ccserver": "chaincode servers (Python, 2 orgs)", "orderer": "orderers (3)", "peer": "peers (2)"}


class FabricProbe:
    """Prometheus metrics of every peer and orderer plus CPU seconds of every network process."""

    def __init__(self, network_dir: Path) -> None:
        data = json.loads((network_dir / "network.json").read_text())
        self.urls: dict[str, str] = {o["name"]: o["operations"] for o in data.get("orderers", [])}
        self.kinds = dict.fromkeys(self.urls, "orderer")
        for org in (data.get("organizations") or {}).values():
            peer = org.get("peer") or {}
            if peer.get("operations"):
                self.urls[peer["name"]] = peer["operations"]
                self.kinds[peer["name"]] = "peer"
        self.pids_dir = network_dir / "pids"

    def cpu(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for pid_file in sorted(self.pids_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                out[pid_file.stem] = (int(fields[11]) + int(fields[12])) / ticks
        out["benchmark client (this process)"] = time.process_time()
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "metrics": {name: scrape(url) for name, url in self.urls.items()},
            "cpu": self.cpu(),
            "time": time.perf_counter(),
        }

    def delta(self, before: dict[str, Any], after: dict[str, Any], commits: int) -> dict[str, Any]:
        per_commit = max(commits, 1)
        out: dict[str, Any] = {"commits": commits, "histograms": {}}
        heights = [
            total(after["metrics"][node], "ledger_blockchain_height")
            - total(before["metrics"][node], "ledger_blockchain_height")
            for node, kind in self.kinds.items()
            if kind == "peer"
        ]
        out["blocks"] = max(heights, default=0.0)
        out["tx_per_block"] = commits / out["blocks"] if out["blocks"] else float("nan")
        for label, kind, name, labels in HISTOGRAMS:
            s = c = 0.0
            for node, node_kind in self.kinds.items():
                if node_kind == kind:
                    s += total(after["metrics"][node], f"{name}_sum", **labels)
                    s -= total(before["metrics"][node], f"{name}_sum", **labels)
                    c += total(after["metrics"][node], f"{name}_count", **labels)
                    c -= total(before["metrics"][node], f"{name}_count", **labels)
            out["histograms"][label] = {
                "count": c,
                "mean_ms": 1000 * s / c if c else float("nan"),
                "per_commit": c / per_commit,
            }
        wall = after["time"] - before["time"]
        groups: dict[str, float] = {}
        for proc, seconds in after["cpu"].items():
            stem = re.sub(r"\d+$", "", re.sub(r"\.org\d+$", "", proc))
            group = CPU_GROUPS.get(stem.rstrip("."), proc)
            groups[group] = groups.get(group, 0.0) + seconds - before["cpu"].get(proc, seconds)
        out["wall_s"] = wall
        out["cpu_ms_per_commit"] = {g: 1000 * v / per_commit for g, v in groups.items()}
        out["cpu_busy_cores"] = {g: v / wall for g, v in groups.items()} if wall > 0 else {}
        return out


def contract_compute_profile(repeats: int = 200) -> dict[str, float]:
    """The contract's per-update work for one 100 KB update, in this process (median ms)."""
    from fedledger.anomaly.features import update_features
    from fedledger.chaincode import tensors
    from fedledger.chaincode.records import Rules

    data = make_update(np.random.default_rng(1))
    steps: dict[str, list[float]] = {
        "parse safetensors": [],
        "check finite": [],
        "update_features (norms + count sketch)": [],
        "sha256": [],
    }
    for _ in range(repeats):
        t0 = time.perf_counter()
        parsed = tensors.parse(data, "update")
        t1 = time.perf_counter()
        tensors.check_finite(parsed, "update")
        t2 = time.perf_counter()
        update_features(parsed, sketch_dim=Rules().sketch_dim)
        t3 = time.perf_counter()
        tensors.sha256_hex(data)
        t4 = time.perf_counter()
        for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            steps[key].append(value)
    return {k: round(statistics.median(v) * 1000, 3) for k, v in steps.items()}


# --- network lifecycle -------------------------------------------------------------------------


# --- reporting ---------------------------------------------------------------------------------


SUMMARY_HEADERS = ("backend", "concurrency", "runs", "n/run", "failed", "p50 ms", "p99 ms", "mean ms", "commits/s")


def summary_rows(medians: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            m["backend"],
            m["concurrency"],
            m["runs"],
            m["n"],
            m["errors"],
            m["p50_ms"],
            m["p99_ms"],
            m["mean_ms"],
            m["throughput_tps"],
        ]
        for m in medians
    ]


def verdicts(medians: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for backend in dict.fromkeys(m["backend"] for m in medians):
        cells = [m for m in medians if m["backend"] == backend]
        c1 = next((m for m in cells if m["concurrency"] == 1), None)
        best = max(cells, key=lambda m: m["throughput_tps"])
        p50 = f"p50 at concurrency 1 = {c1['p50_ms']:.1f} ms" if c1 else "concurrency 1 not measured"
        p50_ok = c1 is not None and c1["p50_ms"] <= TARGET_P50_MS
        tps_ok = best["throughput_tps"] >= TARGET_TPS
        lines.append(
            f"- **{backend}**: {p50} (target ≤ {TARGET_P50_MS:.0f} ms: **{'met' if p50_ok else 'missed'}**); "
            f"best throughput {best['throughput_tps']:.0f} commits/s at concurrency {best['concurrency']} "
            f"(target ≥ {TARGET_TPS:.0f}: **{'met' if tps_ok else 'missed'}**)."
        )
    return lines


def write_outputs(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    fields = ["backend", "concurrency", "run", "runs", *STAT_KEYS]
    with (RESULTS / "commit_latency.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in report["runs"]:
            writer.writerow({**row, "runs": 1})
        for row in report["medians"]:
            writer.writerow(row)
    step_fields = ["endorse_ms", "submit_ms", "commit_status_ms", "total_ms"]
    with (RESULTS / "commit_latency_breakdown.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["backend", "n", *step_fields])
        writer.writeheader()
        for backend, steps in report["breakdown"].items():
            writer.writerow({"backend": backend, "n": steps["n"], **{k: round(steps[k], 2) for k in step_fields}})
    (RESULTS / "commit_latency.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render_markdown(report))
    logger.info("wrote %s, %s and %s", RESULTS / "commit_latency.csv", RESULTS / "commit_latency.json", DOC)


def render_markdown(report: dict[str, Any]) -> str:
    out = [
        "# SubmitUpdate commit latency and throughput",
        "",
        "Generated by `bench/commit_latency.py` (`make bench`); raw numbers in `bench/results/` "
        "(`commit_latency.csv`: every run and the medians; `commit_latency_breakdown.csv`; `commit_latency.json`: "
        "everything, including the metrics below). Re-running overwrites this file.",
        "",
        "Command:",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"Wall time of the whole benchmark: {report.get('elapsed_s', 0):.0f} s.",
        "",
        "## Machine",
        "",
        markdown_table(("fact", "value"), list(report["machine"].items())),
        "",
        "## Method",
        "",
        f"- Update: one safetensors file of {len(SHAPES)} float32 LoRA-like tensors "
        f"({', '.join(f'`{k}` {s[0]}x{s[1]}' for k, s in SHAPES.items())}), {report['update_bytes']:,} bytes, "
        "sent as transient data (as `FedLedgerClient.submit_update` does); random per submission.",
        "- Each run: a fresh round; `n` different registered trainers (a participant submits once per round) each "
        "submit one update through `FedLedgerClient.submit_update`; `concurrency` worker threads in one client "
        "process; each trainer has its own identity (on Fabric issued by its org's CA, with its own gRPC connection "
        "to its organisation's gateway peer; trainers alternate Org1/Org2). The round is abandoned afterwards.",
        "- Latency: on the client, from the call to the VALID commit status (endorsement by both orgs under "
        "MAJORITY, ordering, commit). Throughput: committed updates / wall time of the run.",
        f"- {report['repeats']} runs per cell after one warm-up round; the table quotes the median over the runs of "
        "each statistic (with n ≤ 200 per run, p99 is close to the run's maximum).",
        "- Fabric: the native network of this repository (Fabric 2.5, Org1 + Org2 with one peer each, 3 Raft "
        "orderers, TLS everywhere, the contract as chaincode-as-a-service in Python, one server per org), as a "
        "separate instance the benchmark brings up and takes down; "
        + (", ".join(report["networks"]) or "none")
        + ", MaxMessageCount 100, PreferredMaxBytes 2 MB (transactions are small: the update bytes are transient, "
        "only the update's hash and features are written, so blocks are cut by the timer or the count).",
        "- Embedded: the SQLite ledger in the client process (one block per transaction, writers serialised).",
        "",
        "## Results (medians of runs)",
        "",
        markdown_table(SUMMARY_HEADERS, summary_rows(report["medians"])),
        "",
        "Targets (issue 3): ≥ 150 commits/s, and p50 ≤ 150 ms at concurrency 1.",
        "",
        *verdicts(report["medians"]),
        "",
    ]
    if report["breakdown"]:
        out += [
            "## A lone transaction on Fabric, step by step (medians)",
            "",
            markdown_table(
                ("backend", "n", "endorse ms", "submit ms", "commit status ms", "total ms"),
                [
                    [b, s["n"], s["endorse_ms"], s["submit_ms"], s["commit_status_ms"], s["total_ms"]]
                    for b, s in report["breakdown"].items()
                ],
            ),
            "",
            "Endorse: the gateway peer runs the proposal on both orgs' peers and chaincode servers (the 100 KB "
            "transient goes to each). Submit: the signed envelope is handed to the orderers (returns once "
            "enqueued). Commit status: waiting until the gateway peer has the block, validated and committed — "
            "this is where the orderer's BatchTimeout shows.",
            "",
        ]
    if report["profile"]:
        out += ["## Where the time goes (Fabric; each cell's runs together)", ""]
        for key, prof in report["profile"].items():
            out += [
                f"### {key}: {prof['commits']} commits in {prof['blocks']:.0f} blocks "
                f"({prof['tx_per_block']:.1f} transactions per block)",
                "",
                markdown_table(
                    ("step (Prometheus histogram)", "observations / commit", "mean ms"),
                    [[k, round(v["per_commit"], 2), v["mean_ms"]] for k, v in prof["histograms"].items()],
                ),
                "",
                markdown_table(
                    ("process group", "CPU ms / commit", "cores busy (avg)"),
                    [
                        [g, v, round(prof["cpu_busy_cores"].get(g, float("nan")), 2)]
                        for g, v in sorted(prof["cpu_ms_per_commit"].items(), key=lambda kv: -kv[1])
                    ],
                ),
                "",
            ]
    if report["contract_compute"]:
        out += [
            "## The contract's own compute per 100 KB update (in process, median of 200)",
            "",
            markdown_table(("step", "ms"), list(report["contract_compute"].items())),
            "",
            "Each endorsing org runs this once per SubmitUpdate (twice per commit under MAJORITY of 2). "
            "IsolationForest is not part of SubmitUpdate (it runs once per round, in FinalizeRound).",
            "",
        ]
    if report.get("notes"):
        out += ["## Analysis", "", report["notes"], ""]
    return "\n".join(out)


def print_summary(report: dict[str, Any]) -> None:
    print()
    print("SubmitUpdate commit latency — fedledger")
    for key, value in report["machine"].items():
        print(f"  {key:36s} {value}")
    print(f"  {'command':36s} {report['command']}")
    print(f"  {'update':36s} {report['update_bytes']:,} bytes ({len(SHAPES)} float32 tensors, safetensors)")
    print()
    rows = summary_rows(report["medians"])
    widths = [max(len(h), *(len(fmt(r[i])) for r in rows)) for i, h in enumerate(SUMMARY_HEADERS)]
    print("  ".join(h.rjust(w) for h, w in zip(SUMMARY_HEADERS, widths, strict=True)))
    for row in rows:
        print("  ".join(fmt(v).rjust(w) for v, w in zip(row, widths, strict=True)))
    print()
    for backend, steps in report["breakdown"].items():
        print(
            f"{backend} lone transaction (median of {steps['n']}): endorse {steps['endorse_ms']:.1f} ms, "
            f"submit {steps['submit_ms']:.1f} ms, commit status {steps['commit_status_ms']:.1f} ms, "
            f"total {steps['total_ms']:.1f} ms"
        )
    print("\n".join(verdicts(report["medians"])))
    if report["errors"]:
        print(f"errors (first of each run): {report['errors'][:5]}")


# --- main --------------------------------------------------------------------------------------


def plan_cells(concurrency: Sequence[int], min_n: int, per_client: int) -> list[tuple[int, int]]:
    """(concurrency, submissions per run): at least ``min_n``, and ``per_client`` per worker."""
    return [(c, max(min_n, per_client * c)) for c in concurrency]


def bench_ledger(
    ledger: Ledger,
    plan: list[tuple[int, int]],
    repeats: int,
    rng: np.random.Generator,
    probe: FabricProbe | None,
    report: dict[str, Any],
) -> None:
    warm = min(10, len(ledger.trainers))
    measure(ledger, warm, warm, 0, rng)  # warm-up round (connections, caches); not reported
    for concurrency, n in plan:
        before = probe.snapshot() if probe else None
        runs = [measure(ledger, concurrency, n, run, rng) for run in range(1, repeats + 1)]
        if probe and before is not None:
            report["profile"][f"{ledger.name} c={concurrency}"] = probe.delta(
                before, probe.snapshot(), sum(r.ok for r in runs)
            )
        report["runs"] += [r.row() for r in runs]
        report["medians"].append(median_row(runs))
        report["errors"] += [e for r in runs for e in r.error_samples[:1]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,10,50", help="comma-separated concurrency levels")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell (medians are quoted)")
    parser.add_argument("--min-n", type=int, default=60, help="submissions per run, at least")
    parser.add_argument("--per-client", type=int, default=4, help="submissions per run = max(min-n, per-client * C)")
    parser.add_argument("--breakdown", type=int, default=20, help="lone Fabric transactions timed step by step")
    parser.add_argument("--backends", default="embedded,fabric", help="embedded, fabric, or both (comma-separated)")
    parser.add_argument(
        "--batch-timeouts",
        default="default,50ms,20ms",
        help="orderer BatchTimeout of the benchmark's own network, one fresh network each; 'default' = the "
        "repository's setting (network/lib.sh); the others show what a shorter timeout would give",
    )
    parser.add_argument(
        "--fabric-network-dir", type=Path, help="use this running network as is (never brought up or down)"
    )
    parser.add_argument(
        "--network-dir", type=Path, default=REPO / "run" / "bench-network", help="run folder of its own network"
    )
    parser.add_argument("--port-offset", type=int, default=10000, help="FEDLEDGER_PORT_OFFSET of its own network")
    parser.add_argument("--keep-network", action="store_true", help="leave the benchmark's network up at the end")
    parser.add_argument("--no-write", action="store_true", help="print only; do not overwrite results and docs")
    parser.add_argument("--notes", type=Path, default=NOTES, help="markdown put in the doc as its analysis section")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="only rewrite the doc from bench/results/commit_latency.json (e.g. after editing the notes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("fedledger").setLevel(logging.WARNING)
    if args.render_only:
        saved = json.loads((RESULTS / "commit_latency.json").read_text())
        saved["notes"] = args.notes.read_text().strip() if args.notes and args.notes.exists() else ""
        DOC.write_text(render_markdown(saved))
        logger.info("rewrote %s from %s", DOC, RESULTS / "commit_latency.json")
        return 0

    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not concurrency or min(concurrency) < 1 or args.repeats < 1:
        parser.error("--concurrency must list positive integers and --repeats must be >= 1")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"embedded", "fabric"}:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    plan = plan_cells(concurrency, args.min_n, args.per_client)
    trainers = max([n for _c, n in plan] + [args.breakdown, 10])
    batch_timeouts = [b.strip() for b in args.batch_timeouts.split(",") if b.strip()]
    shown = [os.path.relpath(sys.executable, REPO), "bench/commit_latency.py"]
    command = " ".join(shlex.quote(a) for a in [*shown, *(argv if argv is not None else sys.argv[1:])])
    rng = np.random.default_rng(args.seed)
    report: dict[str, Any] = {
        "command": command,
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer=True),
        "update_bytes": len(make_update(rng)),
        "repeats": args.repeats,
        "plan": plan,
        "trainers": trainers,
        "batch_timeouts": [] if args.fabric_network_dir else batch_timeouts,
        "runs": [],
        "medians": [],
        "breakdown": {},
        "profile": {},
        "errors": [],
        "contract_compute": {},
        "networks": [],
    }
    logger.info("plan (concurrency, n per run): %s; %d runs each; %d trainers per ledger", plan, args.repeats, trainers)
    started = time.monotonic()

    if "embedded" in backends:
        embedded = EmbeddedLedgerUnderTest(trainers, max(concurrency))
        try:
            bench_ledger(embedded, plan, args.repeats, rng, None, report)
        finally:
            embedded.close()

    if "fabric" in backends:
        report["contract_compute"] = contract_compute_profile()
        targets: list[tuple[str, contextlib.AbstractContextManager[Path]]] = []
        if args.fabric_network_dir:
            targets.append(("fabric", contextlib.nullcontext(args.fabric_network_dir)))
        else:
            for bt in batch_timeouts:
                targets.append(("fabric", bench_network(args.network_dir, args.port_offset, bt, args.keep_network)))
        for base_name, target in targets:
            with target as network_dir:
                name = f"{base_name} (BatchTimeout {configured_batch_timeout(network_dir)})"
                report["networks"].append(name)
                fabric = FabricLedgerUnderTest(network_dir, trainers, max(concurrency), name=name)
                try:
                    bench_ledger(fabric, plan, args.repeats, rng, FabricProbe(network_dir), report)
                    rows = lone_breakdown(fabric, args.breakdown, rng) if args.breakdown else []
                    if rows:
                        report["breakdown"][name] = {
                            "n": len(rows),
                            **{k: statistics.median(r[k] for r in rows) for k in rows[0]},
                        }
                finally:
                    fabric.close()

    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.notes and args.notes.exists():
        report["notes"] = args.notes.read_text().strip()
    print_summary(report)
    if not args.no_write:
        write_outputs(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
