"""SubmitUpdate commit latency (p50/p99) and throughput, Fabric network beside the embedded ledger.

What one run does (bounded; everything on 127.0.0.1)::

    .venv/bin/python -m fedledger.bench.commit_latency            # or: make bench-commit
    .venv/bin/python -m fedledger.bench.commit_latency --quick    # concurrency 1 and 10, one run per cell

1. Embedded ledger: a fresh consortium in a temporary folder.
2. Fabric: a *separate* native network (``FEDLEDGER_PORT_OFFSET``/``FEDLEDGER_NETWORK_DIR``, default
   offset 10000 in ``run/bench-network``) is brought up fresh for each ``--batch-timeouts`` value and
   taken down at the end, so a network another process uses (``run/network``) is never touched.
   ``--fabric-network-dir DIR`` uses an already running network instead and never stops it.
3. On each backend: an aggregator, a genesis model and T trainers (alternating Org1/Org2, each its
   own client identity and, on Fabric, its own gRPC connection to its org's peer). Then, per
   concurrency C and repeat, a fresh round is opened, C worker threads submit one ~100 KB float32
   update per trainer (a participant submits once per round, so every submission of a run is a
   different identity), and the round is abandoned. Latency = ``submit_update`` call to VALID commit
   status, on the client. Throughput = commits / wall time of the run.
4. Fabric only: lone transactions split into endorse / submit / commit-status, peer and orderer
   Prometheus metrics and per-process CPU per cell (where the time goes), and the contract's own
   per-update compute measured in process.

Results: a table on stdout, ``bench/results/commit_latency.{csv,json}``,
``bench/results/commit_latency_breakdown.csv`` and ``docs/bench-commit-latency.md``
(``FEDLEDGER_BENCH_OUT`` moves results and page elsewhere, e.g. for short runs).

Modules: :mod:`.measure` (the runs), :mod:`.probe` (Fabric metrics and CPU), :mod:`.render` (tables, files and
page), :mod:`.cli` (arguments).
"""
