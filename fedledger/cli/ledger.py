"""``fedledger ledger init|verify|info``: the embedded ledger's administration."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from fedledger.chaincode.embedded.bootstrap import DEFAULT_ORGANIZATIONS, create_consortium, open_consortium
from fedledger.chaincode.embedded.ledger import DB_NAME, EmbeddedLedger
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.names import DEFAULT_CHANNEL
from fedledger.cli.output import Outcome, add_json_option


def _organizations(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, text.split(",")):
        mspid, sep, domain = item.partition("=")
        if not sep or not mspid or not domain:
            raise argparse.ArgumentTypeError(f"expected MSPID=domain, got {item!r}")
        pairs[mspid] = domain
    return pairs


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ledger", help="create, inspect and verify an embedded ledger")
    sub = parser.add_subparsers(dest="ledger_command", metavar="<action>", required=True)

    init = sub.add_parser("init", help="create MSP identities and a new embedded ledger in DIR")
    init.add_argument("dir", type=Path, help="folder for organizations/ and ledger/")
    init.add_argument(
        "--orgs",
        type=_organizations,
        default=DEFAULT_ORGANIZATIONS,
        help="comma-separated MSPID=domain (default: Org1MSP=org1.example.com,Org2MSP=org2.example.com)",
    )
    init.add_argument("--channel", default=DEFAULT_CHANNEL)
    init.set_defaults(run=_init)

    verify = sub.add_parser(
        "verify",
        help="re-check block hashes and signatures, the world state and the history; report the first tampered block",
    )
    verify.add_argument("dir", type=Path, help="consortium folder (from 'ledger init') or its ledger/ folder")
    add_json_option(verify)
    verify.set_defaults(run=_verify)

    info = sub.add_parser("info", help="height, channel and organisations of an embedded ledger")
    info.add_argument("dir", type=Path)
    info.set_defaults(run=_info)


def ledger_dir(path: Path) -> Path:
    """The embedded ledger folder that ``path`` names: a run folder (``fedledger demo --out``), a consortium
    folder (``fedledger ledger init``) or the ledger folder itself; FileNotFoundError with the command that
    creates one when none holds a ledger."""
    for candidate in (path / "consortium" / "ledger", path / "ledger", path):
        if (candidate / DB_NAME).is_file():
            return candidate
    raise FileNotFoundError(
        f"no embedded ledger in {path} (nor in its ledger/ or consortium/ledger/ folder); give a run or "
        f"consortium folder, or create one with `fedledger ledger init {path}`"
    )


def _init(args: argparse.Namespace) -> int:
    consortium = create_consortium(args.dir, args.orgs, channel=args.channel)
    print(f"created ledger {consortium.ledger_dir} for {', '.join(sorted(consortium.organizations))}")
    for mspid in sorted(consortium.organizations):
        print(f"  {mspid} admin MSP: {consortium.organizations[mspid].user_msp('Admin')}")
    return 0


def _verify(args: argparse.Namespace) -> Outcome:
    folder = ledger_dir(args.dir)
    report = verify_ledger(folder)
    print(report)
    return Outcome(0 if report.ok else 1, {"ledger": str(folder), "result": str(report)})


def _info(args: argparse.Namespace) -> int:
    folder = ledger_dir(args.dir)
    ledger = EmbeddedLedger.open(folder, read_only=True)
    try:
        summary = {
            "channel": ledger.config["channel"],
            "height": ledger.height(),
            "organizations": sorted(ledger.config["organizations"]),
            "orderer": ledger.config["orderer"]["mspid"],
        }
    finally:
        ledger.close()
    with contextlib.suppress(FileNotFoundError):  # a bare ledger folder has no MSP index
        summary["msp_folders"] = {m: str(o.path) for m, o in open_consortium(folder.parent).organizations.items()}
    print(json.dumps(summary, indent=2))
    return 0
