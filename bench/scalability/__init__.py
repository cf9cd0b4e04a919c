"""Participants per round, 10 → 1,000, on the real native Fabric network (and the embedded ledger).

Simulated clients, real transactions. For each round size N, on each backend (bounded; 127.0.0.1)::

    .venv/bin/python -m fedledger.bench.scalability            # N = 10, 30, 100, 300, 1000, 3000, 10000
    .venv/bin/python -m fedledger.bench.scalability --quick    # N = 10, 30, 100

1. N fresh trainer identities (on Fabric issued from the org CAs by ``LocalFabricNetwork``, alternating
   Org1/Org2, each with its own gRPC connection to its org's gateway peer) → RegisterParticipant,
   ``--workers`` at a time (throughput, latency p50/p99).
2. The aggregator opens a round; every trainer submits one ~100 KB LoRA-shaped float32 update
   (:data:`fedledger.bench.ledgers.SHAPES`; a shared direction plus noise, a ``--malicious`` fraction
   sign-flipped and scaled so that the detector has work) concurrently (commits/s, p50/p99).
3. CloseRound, then FinalizeRound: the detector runs inside endorsement on both orgs' peers over the N
   update records (time, chaincode-server CPU, peak memory). The same verdict is recomputed in this
   process from ListUpdates (:func:`fedledger.chaincode.verdicts.detect`) to split detector from ledger cost.
4. FedAvg of the accepted updates (:class:`fedledger.trainer.strategy.FedAvg`) → CommitAggregate (time).

Every step has a time limit; the first step that fails or runs out of time ends that backend's sweep and
is reported as its break point. The Fabric network is its own (``--network-dir``, port offset 20000),
brought up with ``make network-up`` and taken down at the end, also on error or SIGTERM.
Per-participant slopes are fitted and extrapolated to 10,000 participants on paper.

Modules: :mod:`.measure` (the rounds), :mod:`.phases` (steps under a time limit), :mod:`.fits`
(extrapolation), :mod:`.render` (table, plots, page), :mod:`.cli` (arguments).
"""
