"""What an audit found: the counts of what it checked, and the first mismatch (``fedledger audit`` prints it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AuditReport:
    checked: dict[str, int] = field(default_factory=dict)
    mismatch: str | None = None

    @property
    def ok(self) -> bool:
        return self.mismatch is None

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def __str__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.checked.items()) or "nothing"
        return f"OK: {counts}" if self.ok else f"MISMATCH: {self.mismatch} (checked before it: {counts})"


class Mismatch(Exception):
    """The first thing that differs from the ledger; its message names the item (file and field)."""
