"""CommitAggregate with the peers' recomputation vs the same commit hashing only: 10 and 100 updates of 1 MB.

What one run does (bounded; everything on 127.0.0.1)::

    .venv/bin/python -m fedledger.bench.aggregate_check            # or: make bench-aggregate-check
    .venv/bin/python -m fedledger.bench.aggregate_check --quick    # embedded only, one run per cell

1. Embedded ledger: a fresh consortium in a temporary folder. Fabric (if the binaries are there): a network of
   its own (``--network-dir``, ``--port-offset``, default 30000), brought up with the study's contract and taken
   down at the end.
2. The served contract is :class:`~fedledger.bench.aggregate_check.baseline.BaselineContract`: the product's
   contract plus two transactions for the baseline, ``AggregateChunksHashOnly`` and ``CommitAggregateHashOnly``,
   the same commit (the same transient bytes, each chunk checked against its hash on the ledger, the model's
   chunk hashes, the same records) without the recomputation.
3. Per update count n (default 10 and 100, ascending; n trainers enrolled, each with a 1 MB float32 update):
   a warm-up round, then ``--repeats`` runs of each mode, alternating which goes first. A run is a fresh round
   (n SubmitUpdate, CloseRound, FinalizeRound; all accepted) and one timed commit of the honest FedAvg
   aggregate: ``checked`` = ``FedLedgerClient.commit_aggregate`` (AggregateChunks batches, then
   CommitAggregate: the endorsers recompute), ``hash-only`` = the same plan of proposals on the baseline
   transactions. Time = the client call, from the aggregate's bytes to the commit status (the SDK decodes the
   inputs, plans the proposals under the 32 MB budget and submits them). Medians are quoted.
4. In process, per n: the arithmetic alone (``chaincode.aggregation.aggregate_state``) and SHA-256 of the
   inputs, for the analysis.

Results: a table on stdout, ``bench/results/aggregate_check.{csv,json}`` and ``docs/bench-aggregate-check.md``.
Modules: :mod:`.baseline` (the served contract), :mod:`.measure` (the runs), :mod:`.render` (tables, files, page),
:mod:`.cli` (arguments).
"""
