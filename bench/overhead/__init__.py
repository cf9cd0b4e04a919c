"""Overhead of the ledger: one federated fine-tuning run with the ledger off, on the embedded ledger, on
a real native Fabric network, and as a Flower FedAvg run of the same model and data.

    .venv/bin/python -m fedledger.bench.overhead            # all-MiniLM-L6-v2 + LoRA, 5 members, 3 rounds, 5 repeats
    .venv/bin/python -m fedledger.bench.overhead --quick    # tiny random BERT + LoRA, 3 rounds (minutes)

Every mode computes the same thing: the same model (loaded afresh for each run with the same seed), the
same breast-cancer-as-text split and Dirichlet partition, the same per-member trainer seeds, no DP,
sample-weighted FedAvg, central evaluation on the same held-out set after every round:

- ``off``: ``experiments.simulation.run_simulation`` (in memory: the round driver over ``InMemoryRounds``,
  every update accepted; updates still go through the wire format).
- ``embedded``: ``experiments.federation.run_federation`` on a fresh embedded ledger (signed transactions, the
  contract featurising every update at SubmitUpdate, the IsolationForest at FinalizeRound, the encrypted
  update store, the model card).
- ``fabric``: the same ``run_federation`` on a fresh native Fabric network of its own per repeat
  (``FEDLEDGER_NETWORK_DIR``/``FEDLEDGER_PORT_OFFSET``, brought up and down by bench/ledgers.py's
  ``bench_network``; a fresh network because the ledger's latest model would otherwise be the next run's
  starting point).
- ``flower``: flwr's own legacy ``Server`` loop with its ``FedAvg`` strategy and ``NumPyClient`` clients
  (``to_client()``), reached through a minimal in-process ``ClientProxy`` instead of Ray (not installed) or
  gRPC: ``Server.fit`` runs Flower's configure_fit → fit_clients → aggregate_fit → evaluate unchanged.

The modes are interleaved within each repeat (off, embedded, flower, fabric), and wall-time ratios are
taken against ``off`` of the same repeat; medians over repeats are quoted. Wall time starts after the
model is loaded and ends when the run returns. The ledger runs' own timings (timings.json) split the
extra time into ledger transactions and training.
"""
