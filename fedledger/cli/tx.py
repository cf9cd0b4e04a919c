"""``fedledger evaluate|submit``: call any contract transaction as a given MSP identity."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fedledger.chaincode.names import CONTRACT_NAME, DEFAULT_CHANNEL
from fedledger.cli.ledger import ledger_dir
from fedledger.identity import load_msp_identity
from fedledger.sdk.connection import LedgerLocation, open_client
from fedledger.sdk.errors import CommitError, GatewayError

logger = logging.getLogger(__name__)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("evaluate", "run a query transaction (nothing is written)"),
        ("submit", "submit a transaction and wait for its commit"),
    ):
        parser = commands.add_parser(name, help=helptext)
        parser.add_argument("function", help="transaction name, e.g. ListParticipants or RegisterParticipant")
        parser.add_argument("args", nargs="*", help="transaction arguments (strings)")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--ledger-dir", type=Path, help="embedded consortium or ledger folder")
        where.add_argument("--network-dir", type=Path, help="Fabric network folder with network.json (make network-up)")
        parser.add_argument("--msp-dir", type=Path, required=True, help="the caller's MSP folder (signcerts, keystore)")
        parser.add_argument("--mspid", required=True, help="the caller's MSP ID, e.g. Org1MSP")
        parser.add_argument("--channel", help=f"default: the network's, or {DEFAULT_CHANNEL}")
        parser.add_argument("--chaincode", help=f"default: the network's, or {CONTRACT_NAME}")
        parser.add_argument(
            "--transient", action="append", default=[], metavar="KEY=FILE", help="transient field read from FILE"
        )
        parser.set_defaults(run=_run, submit=name == "submit")


def _transient(items: list[str]) -> dict[str, bytes]:
    fields = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--transient expects KEY=FILE, got {item!r}")
        fields[key] = Path(path).read_bytes()
    return fields


def _location(args: argparse.Namespace) -> LedgerLocation:
    if args.ledger_dir is not None:
        return LedgerLocation(
            "embedded",
            ledger_dir(args.ledger_dir),
            channel=args.channel or DEFAULT_CHANNEL,
            chaincode=args.chaincode or CONTRACT_NAME,
        )
    from fedledger.sdk.fabric.profile import load_network_dir

    profile = load_network_dir(args.network_dir)
    return LedgerLocation(
        "fabric",
        args.network_dir,
        channel=args.channel or profile.channel,
        chaincode=args.chaincode or profile.chaincode,
    )


def _run(args: argparse.Namespace) -> int:
    identity, signer = load_msp_identity(args.msp_dir, args.mspid)
    contract = open_client(_location(args), identity, signer).contract
    try:
        if args.submit:
            result = contract.submit(args.function, arguments=args.args, transient=_transient(args.transient))
            print(f"committed {result.transaction_id} in block {result.block_number}", file=sys.stderr)
            data = result.result
        else:
            data = contract.evaluate(args.function, arguments=args.args, transient=_transient(args.transient))
    except (GatewayError, CommitError) as exc:
        first, *details = str(exc).splitlines()
        print(f"fedledger: {args.function} failed: {first}", file=sys.stderr)
        for detail in details:  # what each endorser or orderer said: with -v
            logger.info("%s", detail.strip())
        return 1
    print(json.dumps(json.loads(data), indent=2) if data else "")
    return 0
