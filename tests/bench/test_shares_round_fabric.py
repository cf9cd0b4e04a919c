"""Round time on Fabric's bookkeeping without a network: the parallel round (members and share holders on threads)
on the embedded ledger, its cells and its page section (no timing is asserted; the Fabric run itself needs
``network/network-up.sh``)."""

from __future__ import annotations

from pathlib import Path

from fedledger.bench.shares import render
from fedledger.bench.shares.round import round_on, run_round_part
from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.sdk.connection import LedgerLocation
from fedledger.sdk.embedded import forget_ledger
from fedledger.sdk.store import UpdateStore, create_key


def _parallel_embedded(mode, updates, sizes, folder: Path):
    """The Fabric part's round (parties in parallel) on an embedded consortium instead of a namespace."""
    consortium = create_consortium(folder / "consortium")
    location = LedgerLocation("embedded", consortium.base)
    store = UpdateStore(folder / "store", create_key(folder / "store.key"))
    try:
        return round_on(
            mode, updates, sizes, folder, store, lambda o, n, a: location.client(o, n, admin=a), {}, parallel=True
        )
    finally:
        forget_ledger(consortium.ledger_dir)


def test_the_parallel_round_commits_the_weighted_mean_and_renders_the_fabric_section():
    part = run_round_part(dims=[2000], members=[5], repeats=1, seed=4, play=_parallel_embedded)
    (cell,) = part["cells"]
    assert cell["plaintext"]["accepted"] == cell["shared"]["accepted"] == 5
    assert cell["max_model_error"] <= 1e-6 and cell["shared"]["sketch_tx_s"] > 0 and cell["shared"]["sum_tx_s"] > 0

    part |= {
        "command": "python -m fedledger.bench.shares --parts round-fabric",
        "machine": {"CPU": "test", "peer version": "Version: v2.5.16"},
        "elapsed_s": 1.0,
        "network": {"organisations": 2, "batch_timeout": "50ms", "channel": "mychannel"},
    }
    heading, body = render.round_fabric_section(part)
    assert heading == "Round time on Fabric, shared vs plaintext"
    rows = render.round_time_rows(part, estimate=False)
    assert len(rows) == 2 and all(len(r) == len(render.FABRIC_ROUND_HEADERS) for r in rows)
    assert rows[1][-1] in ("**met**", "**missed**") and "BatchTimeout 50ms" in body
    assert "at the same time" in body and len(render.round_csv_rows(part)) == 2
