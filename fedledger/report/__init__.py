"""``fedledger report``: a self-contained HTML page for a run folder, its ledger facts read through the SDK."""

from .page import build_report, write_report
from .rundir import LedgerUnreachableError, RunDirError

__all__ = ["LedgerUnreachableError", "RunDirError", "build_report", "write_report"]
