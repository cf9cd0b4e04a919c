"""Find what a run folder holds and how to reach its ledger.

A run folder is what ``fedledger demo`` (with or without ``--synthetic``) or ``run_federation`` writes:
``model/provenance.json`` (the model card, naming the ledger), ``model/timings.json`` (where each round's
time went) and, on the embedded ledger, ``consortium/`` (MSP folders and the ledger itself). ``fedledger
aggregator --card CARD`` writes only the card; its run folder is the card's parent. Every path the card
records is relative to the run folder, so a run moved or copied elsewhere is read (and audited) where it is
now. Nothing here writes to the run folder: the ledger is read with an identity that already exists in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.experiments.baseline import BASELINE as BASELINE_NAME
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import UpdateStore, load_key

CARD = "model"
PROVENANCE = Path(CARD) / "provenance.json"
TIMINGS = Path(CARD) / "timings.json"
BASELINE = Path(CARD) / BASELINE_NAME
CONSORTIUM = "consortium"


class RunDirError(ValueError):
    """The folder is not a run folder (a usage error: the user pointed at the wrong place)."""


class LedgerUnreachableError(RuntimeError):
    """The run folder names a ledger that cannot be reached from here (the check failed)."""


@dataclass(frozen=True)
class RunDir:
    path: Path
    provenance: dict[str, Any] | None
    timings: dict[str, Any] | None
    ledger: dict[str, Any]  # kind: embedded | fabric, channel, path / chaincode, ...
    card: Path  # the model card folder: <run>/model, or the card folder that was named
    baseline: dict[str, Any] | None = None  # the starting model's held-out scores ({"model", "metrics"})

    @property
    def kind(self) -> str:
        return str(self.ledger.get("kind", "?"))

    def resolve(self, recorded: str | Path) -> Path:
        """A path the card recorded: relative to the run folder (runs made before relocatable runs recorded
        absolute paths, which are kept as they are)."""
        return self.path / recorded  # an absolute ``recorded`` replaces self.path

    def store(self, *, network_dir: Path | None = None) -> UpdateStore:
        """The run's store, opened with the key the card names, if any (read-only use)."""
        recorded = self.ledger.get("store")
        if recorded is None:
            raise RunDirError(f"{self.card / 'provenance.json'} names no update store; the run cannot be audited")
        store = self.resolve(recorded)
        if Path(recorded).is_absolute() and (self.path / "store").is_dir():
            store = self.path / "store"  # an old run recorded where it was made: check the copy that is here
        if network_dir is not None and self.ledger.get("network_dir"):
            # the store of a Fabric run lives beside its network: follow the network that was named
            recorded_network = self.resolve(self.ledger["network_dir"]).resolve()
            if store.resolve().is_relative_to(recorded_network):
                store = network_dir / store.resolve().relative_to(recorded_network)
        recorded_key = self.ledger.get("store_key")
        key = self.resolve(recorded_key) if recorded_key else store.parent / "store.key"
        if not store.is_dir() or (recorded_key and not key.is_file()):
            raise LedgerUnreachableError(
                f"the run's update store is not at {store}{f' (key {key})' if recorded_key else ''}; copy the run "
                "folder whole, store included"
            )
        return UpdateStore(store, load_key(key) if key.is_file() else None)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); restore it from the run, or re-run it") from exc


def _holds_a_run(path: Path) -> bool:
    return (path / PROVENANCE).is_file() or (path / CONSORTIUM / "organizations" / "index.txt").is_file()


def locate(path: Path | str) -> RunDir:
    """What the run folder holds; a clear RunDirError when it is not one."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(
            f"run folder {path} does not exist; pass the --out folder of `fedledger demo` (e.g. demo-out)"
        )
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a run folder; pass the folder that holds model/ or consortium/")
    card = path / CARD
    if (path / PROVENANCE.name).is_file():  # the card folder itself was named
        card, path = path, path.parent
    provenance = _read_json(card / PROVENANCE.name)
    timings = _read_json(card / TIMINGS.name)
    if provenance is not None:
        ledger = dict(provenance.get("ledger") or {})
    elif (path / CONSORTIUM / "organizations" / "index.txt").is_file():
        ledger = {"kind": "embedded", "path": CONSORTIUM}
    else:
        parent = path.absolute().parent
        hint = (
            f"its parent is one: `fedledger report {parent}`"
            if _holds_a_run(parent)
            else "pass the --out folder of a `fedledger demo` run (e.g. demo-out)"
        )
        raise RunDirError(
            f"{path} is not a fedledger run folder: it has neither {PROVENANCE} (written at the end of a federated "
            f"run) nor {CONSORTIUM}/ (an embedded ledger); {hint}"
        )
    if ledger.get("kind") == "embedded" and (path / CONSORTIUM / "organizations" / "index.txt").is_file():
        # The consortium moves with the folder: an old run recorded an absolute path, check the copy that is here.
        ledger["path"] = CONSORTIUM
    return RunDir(path, provenance, timings, ledger, card, _read_json(card / BASELINE_NAME))


def connect_ledger(run: RunDir, *, network_dir: Path | None = None) -> FedLedgerClient:
    """A read-only client of the run's ledger, as an organisation admin that already exists there."""
    from fedledger.sdk.connection import LedgerLocation

    if run.kind == "embedded":
        base = run.resolve(run.ledger.get("path", CONSORTIUM))
        if not (base / "organizations" / "index.txt").is_file():
            raise LedgerUnreachableError(
                f"the run's embedded ledger is not at {base}: copy the run's consortium/ folder back into {run.path}"
            )
        from fedledger.chaincode.embedded.bootstrap import open_consortium

        location = LedgerLocation.from_record({**run.ledger, "path": str(base)})
        mspid = sorted(open_consortium(base).organizations)[-1]
        return location.client(mspid, "Admin", admin=True)  # cryptogen-style Admin@, created with the consortium
    if run.kind == "fabric":
        where = network_dir or (run.resolve(run.ledger["network_dir"]) if run.ledger.get("network_dir") else None)
        if where is None or not (where / "network.json").is_file():
            raise LedgerUnreachableError(
                f"this run was on Fabric (channel {run.ledger.get('channel', '?')}, chaincode "
                f"{run.ledger.get('chaincode', '?')}) but its provenance does not record the network folder and "
                f"{where or 'no --network-dir'} has no network.json; bring the network up (`make network-up`) and "
                "pass its folder with --network-dir"
            )
        from fedledger.sdk.fabric.profile import load_network_dir

        profile = load_network_dir(where)
        location = LedgerLocation(
            "fabric",
            where,
            channel=run.ledger.get("channel") or profile.channel,
            chaincode=run.ledger.get("chaincode") or profile.chaincode,
        )
        return location.client(sorted(profile.orgs)[-1], "Admin", admin=True)  # cryptogen's Admin@
    raise LedgerUnreachableError(
        f"{run.path / PROVENANCE} names a ledger of kind {run.kind!r}; this fedledger reads 'embedded' and 'fabric'"
    )
