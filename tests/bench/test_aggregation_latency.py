"""The aggregation-latency study's pure parts: adapter shapes, one tiny cell of the detector + FedAvg
measurement, the tables and the page. No ledger is started and no bandwidth is measured."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedledger.bench.aggregation_latency import measure, render
from fedledger.bench.aggregation_latency.measure import MB, Grid, lora_shapes, make_pool, measure_size


@pytest.mark.parametrize("size_mb", [0.1, 1.0, 10.0, 50.0])
def test_lora_shapes_add_up_to_the_update_size(size_mb: float) -> None:
    shapes = lora_shapes(size_mb * MB)
    assert 4 * sum(math.prod(s) for s in shapes.values()) == pytest.approx(size_mb * MB, rel=0.01)
    layers = len(shapes) // 2
    assert layers == max(2, min(64, round(2 * size_mb)))
    assert shapes["layers.0.q_proj.lora_A"][0] == measure.RANK
    assert shapes["layers.0.q_proj.lora_B"][1] == measure.RANK


def test_make_pool_draws_distinct_float32_updates() -> None:
    pool = make_pool({"a": (2, 3), "b": (3, 2)}, 3, seed=1)
    assert len(pool) == 3
    assert all(u["a"].dtype == np.float32 and u["b"].shape == (3, 2) for u in pool)
    assert not np.array_equal(pool[0]["a"], pool[1]["a"])


def test_measure_size_times_each_cell_against_the_bound_and_skips_oversized_cells() -> None:
    # 0.01 MB updates: n = 4 reads ~40 kB, n = 8 ~80 kB, beyond the 60 kB cell limit.
    rows = measure_size(0.01, [4, 8], Grid(repeats=1, pool_mb=0.02, max_cell_gb=60e-6), bandwidth=1e-3)
    ok, skipped = rows
    assert ok["status"] == "ok" and ok["n"] == 4
    assert ok["distinct_in_memory"] == 4
    assert ok["detector_s"] == pytest.approx(ok["detector_submit_s"] + ok["detector_finalize_s"], abs=2e-4)
    assert ok["total_s"] == pytest.approx(ok["detector_s"] + ok["fedavg_s"], abs=2e-4)
    assert ok["bound_s"] == pytest.approx(4 * ok["update_bytes"] / 1e6, rel=1e-3)
    assert ok["ratio"] == pytest.approx(ok["total_s"] / ok["bound_s"], abs=0.1)
    assert skipped == {"size_mb": 0.01, "n": 8, "status": "skipped: 0 GB > --max-cell-gb"}


def _cell(size_mb: float, n: int, ratio: float, fedavg_ratio: float) -> dict[str, object]:
    return {
        "size_mb": size_mb,
        "n": n,
        "status": "ok",
        "features_per_update_ms": 0.1,
        "features_blas1_per_update_ms": 0.09,
        "detector_submit_s": 0.001,
        "detector_finalize_s": 0.2,
        "detector_finalize_blas1_s": 0.19,
        "fedavg_s": 0.05,
        "total_s": 0.251,
        "bound_s": 0.0001,
        "ratio": ratio,
        "fedavg_ratio": fedavg_ratio,
        "load_1min": 2.5,
    }


def _report() -> dict[str, object]:
    return {
        "command": "python -m fedledger.bench.aggregation_latency --quick",
        "machine": {"CPU": "test CPU"},
        "repeats": 3,
        "pool_mb": 512.0,
        "detector_version": "test",
        "bandwidth": {"read_gbps": 10.9, "copy_gbps": 28.3, "array_mb": 512, "repeats": 7},
        "bandwidth_used": 28.3,
        "rows": [
            _cell(0.1, 10, 900.0, 12.0),
            _cell(0.1, 100, 300.0, 8.0),
            {"size_mb": 50.0, "n": 1000, "status": "skipped: 50 GB > --max-cell-gb"},
        ],
        "commit": {
            "medians": [
                {
                    "backend": "embedded",
                    "concurrency": 1,
                    "runs": 3,
                    "n": 30,
                    "errors": 0,
                    "p50_ms": 1.5,
                    "p99_ms": 4.25,
                    "throughput_tps": 480.0,
                }
            ],
            "update_bytes": 102_800,
            "plan": [[1, 30]],
            "verdicts": ["- **embedded**: verdict line"],
        },
    }


def test_table_rows_show_skipped_cells_with_dashes() -> None:
    rows = render.table_rows(_report()["rows"])  # type: ignore[arg-type]
    assert all(len(r) == len(render.HEADERS) for r in rows)
    assert rows[0][:3] == [0.1, 10, 0.1]
    assert rows[0][-3:] == [900.0, 12.0, 2.5]
    assert rows[2] == [50.0, 1000, "skipped: 50 GB > --max-cell-gb", *["—"] * (len(render.HEADERS) - 3)]


def test_render_has_both_tables_and_the_bound_comparison() -> None:
    page = render.render(_report())
    assert "| " + " | ".join(render.HEADERS) + " |" in page
    assert "| " + " | ".join(render.COMMIT_HEADERS) + " |" in page
    assert "| embedded | 1 | 3 | 30 | 0 | 1.5 | 4.25 | 480.0 |" in page
    assert "Measured / bound ranges from **300.0x** (S = 0.1 MB, n = 100) to **900.0x** (S = 0.1 MB, n = 10)" in page
    assert "FedAvg alone runs at 8.0x (S = 0.1 MB, n = 100) of the bound." in page
    assert "- **embedded**: verdict line" in page
    assert "**10.9 GB/s**" in page


def test_render_leaves_out_commit_latency_when_it_was_not_measured() -> None:
    page = render.render({**_report(), "commit": None})
    assert "## Commit latency" not in page
