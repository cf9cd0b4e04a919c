"""Plain-text tables for terminal reports (no dependency: the demo must print on any terminal)."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.chaincode.records import Round


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "") -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [title] if title else []
    out.append(" | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)))
    out.append(line.replace("+", "+"))
    out += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells[1:]]
    return "\n".join(out)


def privacy_line(record: Round) -> str:
    """One line under a round's table: whether its updates were secret-shared, and across whom."""
    if not record.shared:
        return "  plaintext round (rules secure_aggregation is off, or fewer than 2 organisations hold a share key)"
    orgs = [h["org"] for h in record.share_holders]
    return (
        f"  secret-shared across {', '.join(orgs)}: members sent sealed shares and their hashes only; each "
        "organisation's peers sketched and summed its own shares; the model is the sum of the sums"
    )
