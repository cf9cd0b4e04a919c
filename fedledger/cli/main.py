"""The ``fedledger`` command. Exit codes: 0 success, 1 the check or transaction failed, 2 usage error."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence

from fedledger import __version__
from fedledger.cli import demo, federate, ledger, report, tx

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedledger",
        description=(
            "Federated fine-tuning where every update is validated and recorded on a ledger "
            "(Hyperledger Fabric, or the embedded ledger for a laptop)."
        ),
        epilog="Run 'fedledger <command> --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"fedledger {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    demo.add_parser(commands)
    ledger.add_parser(commands)
    tx.add_parsers(commands)
    federate.add_parsers(commands)
    report.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        if args.debug:
            raise
        print(f"fedledger: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fedledger: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything unforeseen: one line, the traceback only on request
        if args.debug:
            raise
        command = shlex.join(["fedledger", "--debug", *(argv if argv is not None else sys.argv[1:])])
        print(
            f"fedledger: error: {type(exc).__name__}: {_one_line(exc)}; for the traceback: {command}", file=sys.stderr
        )
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
