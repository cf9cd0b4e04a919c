"""``fedledger report``: a self-contained HTML page for a run folder, its ledger facts read through the SDK."""

from fedledger.report.page import build_report, write_report
from fedledger.report.rundir import LedgerUnreachableError, RunDirError

__all__ = ["LedgerUnreachableError", "RunDirError", "build_report", "write_report"]
