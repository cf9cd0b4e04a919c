"""What is not the product: attacks, robust-aggregation baselines, the in-memory ledger and simulation, and the
one-process federation the demo runs. Benchmarks and tests build on it; the product packages never import it.

- ``attacks`` / ``update_attacks``: malicious-client modes (data and update attacks) and ``MaliciousMember``.
- ``baselines``: Krum, Multi-Krum, median, trimmed mean (byzfl) and FedAvg (flwr).
- ``in_memory``: ``InMemoryRounds``, the round driver's ledger without a ledger, screened as the contract does.
- ``simulation``: ``run_simulation``, a federation in one process over ``InMemoryRounds``.
- ``federation`` / ``demo_setup``: ``run_federation`` over a real ledger, and the demo's model, data and rules.
"""
