"""The aggregate-check study's outputs: the table of commit times (checked beside hash-only), the CSV/JSON files and
the docs page (``docs/bench-aggregate-check.md``), from a report dict (also one read back from its JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedledger.bench.harness import (
    DOCS,
    RESULTS,
    files_section,
    markdown_table,
    print_report,
    report_page,
    write_csv,
    write_json,
)

STUDY = "aggregate_check"
PAGE = DOCS / "bench-aggregate-check.md"

HEADERS = (
    "ledger",
    "updates x MB",
    "runs",
    "hash-only s (median)",
    "hash-only min-max s",
    "checked s (median)",
    "checked min-max s",
    "checked - hash-only s",
    "checked / hash-only",
    "proposals",
    "transient MB",
)
IN_PROCESS_HEADERS = ("updates", "arithmetic s (aggregate_state)", "SHA-256 of the updates s")


def summary_rows(medians: Sequence[dict[str, Any]], update_mb: float) -> list[list[Any]]:
    """One row per (ledger, n): both modes' medians, the difference and the ratio."""
    cells: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for m in medians:
        cells.setdefault((m["ledger"], m["n"]), {})[m["mode"]] = m
    rows = []
    for (ledger, n), modes in cells.items():
        checked, plain = modes.get("checked"), modes.get("hash-only")
        if checked is None or plain is None:
            continue
        rows.append(
            [
                ledger,
                f"{n} x {update_mb:g}",
                min(checked["runs"], plain["runs"]),
                plain["median_s"],
                f"{plain['min_s']:.3g}-{plain['max_s']:.3g}",
                checked["median_s"],
                f"{checked['min_s']:.3g}-{checked['max_s']:.3g}",
                round(checked["median_s"] - plain["median_s"], 3),
                round(checked["median_s"] / plain["median_s"], 2) if plain["median_s"] else float("nan"),
                checked["transactions"],
                checked["transient_mb"],
            ]
        )
    return rows


def in_process_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[r["n"], r["arithmetic_s"], r["sha256_s"]] for r in rows]


def summary_table(report: dict[str, Any]) -> str:
    return markdown_table(HEADERS, summary_rows(report["medians"], report["update_mb"]))


def print_summary(report: dict[str, Any]) -> None:
    print_report(
        "CommitAggregate: peers recompute (checked) vs hashing only",
        command=report["command"],
        machine=report["machine"],
        table=summary_table(report),
    )
    if report.get("in_process"):
        print("\nIn process (single thread):")
        print(markdown_table(IN_PROCESS_HEADERS, in_process_rows(report["in_process"])))
    for error in report.get("errors", []):
        print(f"error: {error}")


def render_markdown(report: dict[str, Any]) -> str:
    setup = (
        f"Each update is {report['update_mb']:g} MiB of float32 ({report['elements']:,} values, two rank-16 LoRA "
        f"pairs); the rules' `aggregate_chunk_elements` is {report['chunk_elements']:,} and the SDK keeps every "
        f"proposal under {report['budget_mib']:g} MiB of transient data. Each run is a fresh round (n SubmitUpdate, "
        "all accepted) ended by one timed commit of the honest FedAvg aggregate; medians over "
        f"{report['repeats']} runs per cell, the two modes alternating. **checked**: "
        "`FedLedgerClient.commit_aggregate` (AggregateChunks batches, then CommitAggregate; the endorsers verify "
        "every input chunk against its on-chain hash and recompute the model). **hash-only**: the same proposals "
        "and transient bytes on the baseline transactions, which verify the same hashes and write the same records "
        "but do not recompute (bench/aggregate_check/baseline.py). Time = the client call, from the model's bytes "
        "to the last commit status."
    )
    sections = [
        ("Setup", setup),
        ("CommitAggregate time", summary_table(report)),
    ]
    if report.get("in_process"):
        sections.append(
            (
                "In process",
                "The arithmetic alone (`chaincode.aggregation.aggregate_state`, float64, one thread) and SHA-256 "
                "of the updates, on this machine:\n\n"
                + markdown_table(IN_PROCESS_HEADERS, in_process_rows(report["in_process"])),
            )
        )
    if report.get("errors"):
        sections.append(("Errors", "\n".join(f"- {e}" for e in report["errors"])))
    sections.append(
        files_section(
            STUDY,
            "one row per timed commit: ledger, n, mode, run, seconds, proposals, transient MB",
            "the runs, the medians, the in-process timings, the machine and the command",
        )
    )
    return report_page(
        "CommitAggregate with recomputation", report, sections, study=STUDY, make_target="bench-aggregate-check"
    )


def write_outputs(report: dict[str, Any]) -> list[Path]:
    written = [
        write_csv(RESULTS / f"{STUDY}.csv", report["runs"]),
        write_json(RESULTS / f"{STUDY}.json", report),
    ]
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render_markdown(report))
    return [*written, PAGE]
