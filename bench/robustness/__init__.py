"""Robustness study: attack x defence x malicious fraction on a non-IID federation (issue 5, bench 1).

What one run does (bounded, in one process per seed, no ledger)::

    .venv/bin/python -m fedledger.bench.robustness            # full grid, 3 seeds (~30-40 min on 2 busy cores)
    .venv/bin/python -m fedledger.bench.robustness --quick    # 20 % only, 1 seed, 3 rounds (a few minutes)

- Data: scikit-learn's breast-cancer Wisconsin table as text (``style="levels"``), 20 % held out, the rest
  split over N = 10 clients by a Dirichlet(0.5) label skew. The malicious clients are the first
  ``round(fraction * N)`` of a seeded permutation (so the 10 % attackers are among the 20 % ones).
- Model: a tiny randomly initialised BERT (hidden 64, 2 layers) with LoRA r=8 on query/value plus the
  classification head (4,226 trainable values). MiniLM learns nothing in the first rounds and costs ~28 s
  per round of 10 clients on this machine; the grid needs ~8,000 local trainings, so it runs on the tiny
  model, which reaches ~0.9 accuracy in 4-5 rounds (measured before choosing; see docs/bench-robustness.md).
- Attacks (:mod:`fedledger.experiments.update_attacks`, :mod:`fedledger.experiments.attacks`): sign flip,
  scaling x10 (model replacement), Gaussian noise, ALIE (z_max of Baruch et al.), IPM (epsilon 0.5), the
  norm-matched sign flip and IPM, label flip (all rows) and a text backdoor (trigger "cf zq" on half the rows,
  label benign). Colluding attacks (ALIE, IPM, IPM-NM) see the round's honest deltas (standard threat model).
- Rounds: every cell runs :class:`~fedledger.trainer.rounds.RoundDriver` over
  :class:`~fedledger.experiments.in_memory.InMemoryRounds` under the consortium's default rules. Defence
  ``fedledger`` is the contract's verdict exactly (``contract_screen``: the features the contract stores at
  SubmitUpdate, :func:`fedledger.chaincode.verdicts.detect` at FinalizeRound with the round's seed and the
  previous round's accepted direction), then sample-weighted FedAvg of the accepted updates. Baselines
  (:class:`fedledger.experiments.baselines.BaselineStrategy` under ``accept_all``): Krum, Multi-Krum, median,
  trimmed mean (byzfl, ``f`` = the number of attackers, 2 without attack) and FedAvg (Flower's weighted
  ``aggregate``) over every update.
- Per round: TPR/FPR of the defences that judge single updates (fedledger, Krum, Multi-Krum; a rejected
  update is one not selected), held-out accuracy/precision/recall/F1; for the backdoor also the attack
  success rate (accuracy on triggered held-out rows that are not benign).

Local training depends only on (client, its data, the global state), so deltas are cached by the global
state's hash: round 1 is trained once per seed and shared by every cell, and defences that reach the same
global state share later rounds too. Cells run in a fixed order.

Results: a table on stdout, ``bench/results/robustness.{csv,json}``, ``bench/results/robustness_rounds.csv``,
PNGs ``bench/results/robustness_*.png`` and ``docs/bench-robustness.md``.

Modules: :mod:`.grid` (settings, cells, the cell store), :mod:`.measure` (runs cells), :mod:`.summary`
(medians, targets), :mod:`.render` (tables, plots, the docs page), :mod:`.cli` (the command line).
"""
