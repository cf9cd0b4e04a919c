"""The shares study's outputs: the member/organisation table, the round table, the sketch-accuracy table with the
targets met or missed, the CSV/JSON files and ``docs/bench-shares.md``, from a report dict (also one read back
from its JSON)."""

from __future__ import annotations

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

STUDY = "shares"
PAGE = DOCS / "bench-shares.md"

CELL_HEADERS = (
    "d",
    "K",
    "member ms: shares (encode+split+commit+seal)",
    "member ms: plaintext (encode+AES store)",
    "org ms per share: open+verify+ring sketch",
    "peer ms per update today: hash+decode+features",
    "peer ms: float count sketch alone",
    "MB sent per member: shares",
    "MB per member: plaintext sealed",
    "bytes ratio",
)
ROUND_HEADERS = (
    "d",
    "K",
    "members N",
    "org s: open+sum N shares",
    "s: combine K sums + decode",
    "plaintext s: read+aggregate N",
    "round compute s: shares",
    "round compute s: plaintext",
    "ratio",
    "<= 1.3x (compute only: the share protocol's transactions are not built yet)",
    "round compute s: plaintext, sketch only",
    "ratio to it",
)
ACCURACY_HEADERS = (
    "d",
    "updates",
    "pairs",
    "norm rel. error median",
    "norm p90",
    "cosine abs. error median",
    "cosine p90",
    "exact cosine median",
    "norm <= 5 %",
    "cosine <= 0.05",
)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def cell_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            f"{c['d']:,}",
            c["k"],
            _ms(c["member_shares_s"]),
            _ms(c["member_plain_s"]),
            _ms(c["org_open_sketch_s"]),
            _ms(c["peer_features_s"]),
            _ms(c["peer_sketch_s"]),
            round(c["bytes_shares"] / 1e6, 2),
            round(c["bytes_plain_sealed"] / 1e6, 2),
            round(c["bytes_shares"] / c["bytes_plain_sealed"], 2),
        ]
        for c in report["cells"]
    ]


def round_rows(report: dict[str, Any]) -> list[list[Any]]:
    target = report["targets"]["ratio"]
    return [
        [
            f"{r['d']:,}",
            r["k"],
            r["n"],
            round(r["org_sum_s"], 3),
            round(r["combine_s"], 3),
            round(r["plain_aggregate_s"], 3),
            round(r["round_shares_s"], 3),
            round(r["round_plain_s"], 3),
            round(r["ratio"], 2),
            _verdict(r["ratio"] <= target),
            round(r["round_plain_sketch_only_s"], 3),
            round(r["ratio_sketch_only"], 2),
        ]
        for r in report["rounds"]
    ]


def accuracy_rows(report: dict[str, Any]) -> list[list[Any]]:
    targets = report["targets"]
    return [
        [
            f"{a['d']:,}",
            a["updates"],
            a["pairs"],
            f"{100 * a['norm_rel_error_median']:.2f} %",
            f"{100 * a['norm_rel_error_p90']:.2f} %",
            round(a["cosine_abs_error_median"], 4),
            round(a["cosine_abs_error_p90"], 4),
            round(a["exact_cosine_median"], 3),
            _verdict(a["norm_rel_error_median"] <= targets["norm"]),
            _verdict(a["cosine_abs_error_median"] <= targets["cosine"]),
        ]
        for a in report["accuracy"]
    ]


def tables(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Per member and per share (medians)", markdown_table(CELL_HEADERS, cell_rows(report))),
        ("Per round", markdown_table(ROUND_HEADERS, round_rows(report))),
        (
            f"Sketch accuracy (sketch size {report['sketch_dim']}, {report['sketch_blocks']} blocks)",
            markdown_table(ACCURACY_HEADERS, accuracy_rows(report)),
        ),
    ]


def print_summary(report: dict[str, Any]) -> None:
    print_report(
        "Secret-shared updates vs today's plaintext mode",
        command=report["command"],
        machine=report["machine"],
        table="\n\n".join(f"{heading}\n{body}" for heading, body in tables(report)),
    )
    print(f"\nlargest error of the decoded weighted mean: {max(c['max_mean_error'] for c in report['cells']):.3g}")


def render_markdown(report: dict[str, Any]) -> str:
    worst = max(c["max_mean_error"] for c in report["cells"])
    setup = (
        f"LoRA-like float32 updates: rank-{report['rank']} A and B of {report['layers']} layers (8 tensors); each "
        "member's update is the round's common direction, a rank-2 part of its own and Gaussian noise, all of "
        f"scale 0.01. Fixed point at {report['scale']} fractional bits in Z_2^64; shares sealed with HPKE "
        "(X25519, HKDF-SHA256, AES-128-GCM). The sketch seed is derived from every commitment of the round. "
        f"Medians over every member ({report['members'][-1]}) and, for sums, over {report['repeats']} repeats; one "
        "thread, compute only (no ledger, no transport). The plaintext member seals into today's "
        "`UpdateStore` on a tmpfs folder. Round compute = one member + N sketches (shares) or N feature "
        "computations (plaintext) at one organisation + its sum of N (+ combining K sums): members, and "
        "organisations, work in parallel. The last two columns compare with a plaintext peer that computes only "
        "the count sketch (what the detector reads) instead of today's full feature set. The modes run "
        "interleaved, member by member and update by update. Every decoded weighted mean was checked against the "
        f"float64 weighted mean of the plaintext updates: largest difference {worst:.3g} "
        f"(bound 2^-33 = {2.0**-33:.3g})."
    )
    sections = [("Setup", setup), *tables(report)]
    sections.append(
        files_section(
            STUDY,
            "one row per (d, K, N): the round table's numbers",
            "every timing sample's median, the cells, rounds and accuracy rows, the machine and the command",
        )
    )
    return report_page("Secret-shared updates", report, sections, study=STUDY, make_target="bench-shares")


def write_outputs(report: dict[str, Any]) -> list[Path]:
    written = [write_csv(RESULTS / f"{STUDY}.csv", report["rounds"]), write_json(RESULTS / f"{STUDY}.json", report)]
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render_markdown(report))
    return [*written, PAGE]
