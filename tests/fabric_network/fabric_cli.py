"""Drives the network of ``make network-up`` with the ``peer`` CLI, for the network tests.

Also decodes committed transactions (through qscc) so tests can check what reached the ledger:
validation code, endorsing orgs, write set and chaincode event.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fedledger.chaincode.names import DEFAULT_CHANNEL

REPO = Path(__file__).resolve().parents[2]
CHANNEL = DEFAULT_CHANNEL


def network_dir() -> Path:
    return Path(os.environ.get("FEDLEDGER_NETWORK_DIR", REPO / "run" / "network"))


def clock_offset_file() -> Path:
    """Where the tests put the seconds by which the consortium's fake clock is ahead: the chaincode servers
    add it to their own clock (FEDLEDGER_CLOCK_OFFSET_FILE), so moving past a deadline moves the endorsers'
    time too, and a proposal stamped with the fake clock is not refused as skewed."""
    return network_dir() / "test-clock-offset"


def fabric_bin_dir() -> Path:
    env = (REPO / "fabric-bin" / "paths.env").read_text()
    match = re.search(r"^FABRIC_BIN_DIR=(.*)$", env, re.M)
    assert match is not None, f"no FABRIC_BIN_DIR= line in {REPO / 'fabric-bin' / 'paths.env'}"
    return Path(match.group(1))


@dataclass(frozen=True)
class InvokeResult:
    tx_id: str
    status: str  # validation code as printed by the CLI, e.g. VALID
    payload: str


@dataclass(frozen=True)
class CommittedTx:
    tx_id: str
    validation_code: str
    endorsers: list[str]
    writes: dict[str, bytes | None]  # key -> value (None: delete), for the invoked chaincode
    event_name: str
    event_payload: bytes


class CliError(RuntimeError):
    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n{output}")
        self.output = output


class FabricCli:
    """Runs peer CLI commands as a given org user against the local network."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run = run_dir or network_dir()
        self.doc = json.loads((self.run / "network.json").read_text())
        self.bin = fabric_bin_dir()

    def org(self, n: int) -> dict:
        return self.doc["organizations"][f"Org{n}MSP"]

    def env(self, org: int, user: str = "User1") -> dict[str, str]:
        o = self.org(org)
        return {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FABRIC_CFG_PATH": str(self.run / "config" / "peer"),
            "FABRIC_LOGGING_SPEC": "INFO",
            "CORE_PEER_TLS_ENABLED": "true",
            "CORE_PEER_LOCALMSPID": o["mspid"],
            "CORE_PEER_MSPCONFIGPATH": o["users"][user]["msp_dir"],
            "CORE_PEER_TLS_ROOTCERT_FILE": o["peer"]["tls_root_cert"],
            "CORE_PEER_ADDRESS": o["peer"]["endpoint"],
        }

    def _orderer_args(self) -> list[str]:
        orderer = self.doc["orderers"][0]
        return ["-o", orderer["endpoint"], "--tls", "--cafile", orderer["tls_root_cert"]]

    def _run(self, args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["peer", *args], env=env, capture_output=True, timeout=timeout, check=False)

    def invoke(
        self,
        chaincode: str,
        args: list[str],
        *,
        org: int = 1,
        user: str = "User1",
        peers: tuple[int, ...] = (1, 2),
        transient: dict[str, bytes] | None = None,
        timeout: float = 120,
    ) -> InvokeResult:
        """Endorses on ``peers``, submits, waits for the commit and returns its validation status
        (also when it is not VALID). Raises CliError when endorsement or submission fails."""
        cmd = [
            "chaincode",
            "invoke",
            *self._orderer_args(),
            "-C",
            CHANNEL,
            "-n",
            chaincode,
            "-c",
            json.dumps({"Args": args}),
            "--waitForEvent",
            "--waitForEventTimeout",
            f"{int(timeout)}s",
        ]
        for n in peers:
            cmd += [
                "--peerAddresses",
                self.org(n)["peer"]["endpoint"],
                "--tlsRootCertFiles",
                self.org(n)["peer"]["tls_root_cert"],
            ]
        if transient:
            cmd += ["--transient", json.dumps({k: base64.b64encode(v).decode() for k, v in transient.items()})]
        proc = self._run(cmd, self.env(org, user), timeout + 30)
        out = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
        committed = re.search(r"txid \[([0-9a-f]+)\] committed with status \((\w+)\)", out)
        if not committed:
            raise CliError(f"invoke {args[0]} failed (exit {proc.returncode})", out)
        payload = re.search(r'result: status:200(?: payload:"(.*)")?', out)
        return InvokeResult(
            tx_id=committed.group(1),
            status=committed.group(2),
            payload=_unquote_go(payload.group(1)) if payload and payload.group(1) else "",
        )

    def query(
        self,
        chaincode: str,
        args: list[str],
        *,
        org: int = 1,
        user: str = "User1",
        transient: dict[str, bytes] | None = None,
        raw: bool = False,
    ) -> bytes:
        cmd = ["chaincode", "query", "-C", CHANNEL, "-n", chaincode, "-c", json.dumps({"Args": args})]
        if raw:
            cmd.append("--hex")
        if transient:
            cmd += ["--transient", json.dumps({k: base64.b64encode(v).decode() for k, v in transient.items()})]
        proc = self._run(cmd, self.env(org, user))
        if proc.returncode != 0:
            raise CliError(f"query {args[0]} failed", proc.stderr.decode(errors="replace"))
        out = proc.stdout
        if raw:
            return bytes.fromhex(out.decode().strip())
        return out[:-1] if out.endswith(b"\n") else out

    def committed_tx(self, tx_id: str, chaincode: str, *, org: int = 1) -> CommittedTx:
        """Reads a committed transaction back from the ledger through qscc and decodes it."""
        from fabric_protos.common import common_pb2
        from fabric_protos.ledger.rwset import rwset_pb2
        from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
        from fabric_protos.msp import identities_pb2
        from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2

        raw = self.query("qscc", ["GetTransactionByID", CHANNEL, tx_id], org=org, raw=True)
        processed = transaction_pb2.ProcessedTransaction.FromString(raw)
        payload = common_pb2.Payload.FromString(processed.transactionEnvelope.payload)
        tx = transaction_pb2.Transaction.FromString(payload.data)
        action_payload = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
        endorsers = sorted(
            identities_pb2.SerializedIdentity.FromString(e.endorser).mspid for e in action_payload.action.endorsements
        )
        prp = proposal_response_pb2.ProposalResponsePayload.FromString(action_payload.action.proposal_response_payload)
        action = proposal_pb2.ChaincodeAction.FromString(prp.extension)
        writes: dict[str, bytes | None] = {}
        for ns in rwset_pb2.TxReadWriteSet.FromString(action.results).ns_rwset:
            if ns.namespace != chaincode:
                continue
            for w in kv_rwset_pb2.KVRWSet.FromString(ns.rwset).writes:
                writes[w.key] = None if w.is_delete else w.value
        from fabric_protos.peer import chaincode_event_pb2

        event = chaincode_event_pb2.ChaincodeEvent.FromString(action.events)
        return CommittedTx(
            tx_id=tx_id,
            validation_code=transaction_pb2.TxValidationCode.Name(processed.validationCode),
            endorsers=endorsers,
            writes=writes,
            event_name=event.event_name,
            event_payload=event.payload,
        )


def _unquote_go(text: str) -> str:
    """The CLI prints the payload as a Go-quoted string (%q style escapes)."""
    return bytes(text, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
