"""Time to aggregate a round (detector + FedAvg) vs number and size of updates, against this machine's
memory-bandwidth bound; and SubmitUpdate commit latency on the embedded ledger and on real Fabric.

What one run does (bounded; everything on 127.0.0.1)::

    .venv/bin/python -m fedledger.bench.aggregation_latency            # n = 10..1000, 0.1..50 MB
    .venv/bin/python -m fedledger.bench.aggregation_latency --quick    # n = 10..100, 0.1..10 MB, embedded commits

1. Memory bandwidth of this machine: numpy read (sum) and copy of a 512 MiB array, median of repeats.
2. Per update size S: a pool of distinct LoRA-shaped float32 updates (at least ``--pool-mb`` in total so
   that every pass reads from DRAM, not from the caches). The contract's path, timed in process:
   ``anomaly.features.update_features`` on one update (what each endorsing peer runs at SubmitUpdate;
   a round of n updates costs n times this), then per n ``FinalizeRound``'s verdict
   (:func:`fedledger.chaincode.verdicts.detect` → ``anomaly.screening.screen_round``) over n feature records,
   and ``trainer.strategy.FedAvg`` over the n updates. Medians of ``--repeats``.
3. Lower bound per cell: the n·S bytes every update has to be read at least once ÷ bandwidth; the table
   prints measured / bound.
4. Commit latency: :mod:`fedledger.bench.commit_latency`'s own ledgers and runs (embedded; Fabric on its own
   network at port offset 10000, brought up and taken down by ``bench_network``), p50/p99.

Results: ``bench/results/aggregation_latency.{csv,json}``, two plots, and ``docs/bench-latency.md``.
Modules: :mod:`.measure` (the measurements), :mod:`.render` (tables, plots, page), :mod:`.cli` (arguments).
"""
