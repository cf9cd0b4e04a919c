"""The ``fedledger`` command. Exit codes: 0 success, 1 the check or transaction failed, 2 usage error."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from fedledger import __version__
from fedledger.cli import demo, federate, ledger, output, report, score, tx

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """Raises on a usage error instead of exiting, so that --json can report it as JSON too (subcommand parsers
    are of the same class: argparse makes them with type(parent))."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    score.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(words)
    except _UsageError as exc:
        if "--json" not in words:
            exc.parser.print_usage(sys.stderr)
            exc.parser.exit(EXIT_USAGE, f"{exc.parser.prog}: error: {exc}\n")
        command = " ".join(exc.parser.prog.split()[1:]) or "fedledger"
        output.emit(output.error_summary(command, str(exc), EXIT_USAGE, hint=f"{exc.parser.prog} --help"))
        return EXIT_USAGE
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    as_json = getattr(args, "json", False)
    try:
        # under --json stdout carries only the summary: whatever the command prints for people goes to stderr
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        if args.debug:
            raise
        return _error(args, _one_line(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _error(args, "interrupted", 130, hint="run the command again")
    except Exception as exc:  # anything unforeseen: one line, the traceback only on request
        if args.debug:
            raise
        command = shlex.join(["fedledger", "--debug", *words])
        return _error(
            args, f"{type(exc).__name__}: {_one_line(exc)}", EXIT_FAILED, hint=command, label="for the traceback"
        )
    if not isinstance(result, output.Outcome):
        return result
    if as_json:
        output.emit({"command": output.command_name(args), "ok": result.code == EXIT_OK, **result.summary})
    return result.code


def _error(args: argparse.Namespace, message: str, code: int, *, hint: str | None = None, label: str = "") -> int:
    """The error as one line on stderr, or under --json as the JSON object on stdout."""
    if getattr(args, "json", False):
        output.emit(output.error_summary(output.command_name(args), message, code, hint=hint))
    elif hint is None:
        print(f"fedledger: error: {message}", file=sys.stderr)
    else:
        print(f"fedledger: error: {message}; {label + ': ' if label else ''}{hint}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
