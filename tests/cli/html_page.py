"""Reads a rendered report page the way a browser would: its sections, tables (header and body rows as text)
and images, so tests assert what a reader sees rather than grep the markup."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Table:
    section: str
    header: list[list[str]] = field(default_factory=list)  # rows inside <thead>
    rows: list[list[str]] = field(default_factory=list)  # rows inside <tbody>

    def column(self, name: str) -> int:
        return self.header[0].index(name)

    def by_first_cell(self) -> dict[str, list[str]]:
        return {row[0]: row for row in self.rows}


@dataclass
class Image:
    section: str
    alt: str
    src: str


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[Table] = []
        self.images: list[Image] = []
        self.section = ""
        self._part: list[list[str]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.section = attributes.get("id") or ""
        elif tag == "table":
            self.tables.append(Table(self.section))
        elif tag in ("thead", "tbody") and self.tables:
            self._part = self.tables[-1].header if tag == "thead" else self.tables[-1].rows
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(Image(self.section, attributes.get("alt") or "", attributes.get("src") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._part is not None and self._row is not None:
            self._part.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_page(page: str) -> tuple[list[Table], list[Image]]:
    reader = _Reader()
    reader.feed(page)
    return reader.tables, reader.images


def table_with(tables: list[Table], section: str, first_heading: str, *, containing: str = "") -> Table:
    """The table of ``section`` whose first heading is ``first_heading`` (and which has a ``containing`` one)."""
    found = [
        t
        for t in tables
        if t.section == section and t.header and t.header[0][0] == first_heading and containing in t.header[0]
    ]
    assert len(found) == 1, [t.header for t in tables if t.section == section]
    return found[0]


def facts_table(tables: list[Table], section: str) -> dict[str, str]:
    """The header-less table of ``section`` whose rows are (fact, value), as a dict."""
    found = [t for t in tables if t.section == section and not t.header]
    assert len(found) == 1, [t.header for t in tables if t.section == section]
    return {row[0]: row[1] for row in found[0].rows}
