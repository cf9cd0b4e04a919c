"""``--json``: a machine-readable summary for scripts and CI (``demo``, ``audit``, ``score``, ``ledger verify``,
``report``).

With ``--json`` a command prints exactly one JSON object on stdout and everything meant for people (progress,
tables) on stderr. The shape is stable:

* every object has ``"command"`` (e.g. ``"ledger verify"``) and ``"ok"`` (true when the exit code is 0);
* on success or a failed check, the command's own fields (documented in README.md, "Command line");
* on an error, ``"error"`` (the cause, one line), ``"hint"`` (what to do next: a command, or advice) and
  ``"exit_code"`` (2 usage error, 1 failure), the exit code being non-zero as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What a command that supports ``--json`` returns: its exit code and its summary."""

    code: int
    summary: dict[str, Any] = field(default_factory=dict)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (progress goes to stderr); errors too are JSON, exit code non-zero",
    )


def command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def split_hint(message: str, command: str) -> tuple[str, str]:
    """fedledger's one-line errors read "cause; what to do next": the two parts, the second defaulting to the
    command's help (which always works)."""
    cause, sep, hint = message.partition("; ")
    return (cause, hint) if sep and hint else (message, f"fedledger {command} --help")


def error_summary(command: str, message: str, code: int, *, hint: str | None = None) -> dict[str, Any]:
    if hint is None:
        message, hint = split_hint(message, command)
    return {"command": command, "ok": False, "error": message, "hint": hint, "exit_code": code}


def emit(summary: dict[str, Any]) -> None:
    """The one JSON object on the real stdout (human output was redirected to stderr meanwhile)."""
    sys.stdout.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
