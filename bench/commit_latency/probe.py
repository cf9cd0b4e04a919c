"""Where the time of a Fabric transaction goes: Prometheus metrics of every peer and orderer, and CPU seconds of
every network process, as differences between two snapshots (:class:`FabricProbe`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from fedledger.chaincode.names import CONTRACT_NAME

logger = logging.getLogger("bench.commit_latency")

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """The samples of a node's operations endpoint (``{url}/metrics``); none when it cannot be reached."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # 127.0.0.1 operations endpoint
            text = response.read().decode()
    except OSError as exc:
        logger.warning("cannot scrape %s: %s", url, exc)
        return {}
    return parse_metrics(text)


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition → ``{(metric name, frozenset of labels): value}`` (comments skipped)."""
    samples: Samples = {}
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
    """Sum of the samples of metric ``name`` whose labels include ``labels`` (a value ending in ``*``: prefix)."""
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
        {"chaincode": CONTRACT_NAME, "success": "true"},
    ),
    *(
        (
            f"chaincode shim {kind} served by the peer (each peer)",
            "peer",
            "chaincode_shim_request_duration",
            {"chaincode": f"{CONTRACT_NAME}_*", "type": kind},
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
        """CPU seconds (user + system) so far of every network process, and of this process."""
        ticks = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for pid_file in sorted(self.pids_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                out[pid_file.stem] = (int(fields[11]) + int(fields[12])) / ticks
        out["benchmark client (this process)"] = time.process_time()
        return out

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) of each network process so far, in MB."""
        out = {}
        for pid_file in sorted(self.pids_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError, StopIteration):
                status = Path(f"/proc/{int(pid_file.read_text())}/status").read_text()
                kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
                out[pid_file.stem] = round(int(kb) / 1024, 1)
        return out

    def snapshot(self) -> dict[str, Any]:
        """Every node's metrics, every process's CPU seconds, and the time."""
        return {
            "metrics": {name: scrape(url) for name, url in self.urls.items()},
            "cpu": self.cpu(),
            "time": time.perf_counter(),
        }

    def delta(self, before: dict[str, Any], after: dict[str, Any], commits: int) -> dict[str, Any]:
        """Between two snapshots: blocks cut, each of :data:`HISTOGRAMS` (count, mean ms, per commit), and CPU
        per process group (ms per commit, cores busy)."""
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
            stem = re.sub(r"\d+$", "", re.sub(r"\.org\d+$", "", proc)).rstrip(".")
            group = CPU_GROUPS[stem] if stem in CPU_GROUPS else str(proc)
            groups[group] = groups.get(group, 0.0) + seconds - before["cpu"].get(proc, seconds)
        out["wall_s"] = wall
        out["cpu_ms_per_commit"] = {g: 1000 * v / per_commit for g, v in groups.items()}
        out["cpu_busy_cores"] = {g: v / wall for g, v in groups.items()} if wall > 0 else {}
        return out
