"""Robustness study: attack x defence x malicious fraction on a non-IID federation (issues 5 and 11).

What one run does (bounded, no ledger; each seed's grid split over ``--jobs`` processes by attack)::

    .venv/bin/python -m fedledger.bench.robustness            # full grid, seeds 0 1 2, --jobs 2 (< 60 min)
    .venv/bin/python -m fedledger.bench.robustness --quick    # 20 % only, seed 0, 3 rounds (< 10 min)

It first prints how many cells it will run and an estimate of their compute time.

- Data: scikit-learn's breast-cancer Wisconsin table as text (``style="levels"``), 20 % held out, the rest
  split over N = 20 clients by a Dirichlet(0.5) label skew (at least 5 rows each). The malicious clients are
  the first ``round(fraction * N)`` of a seeded permutation (the 20 % attackers are among the 30 % ones).
- Model: a tiny randomly initialised BERT (hidden 64, 2 layers) with LoRA r=8 on query/value plus the
  classification head. Every cell starts from the model after ``warm_rounds`` (5) clean FedAvg rounds over
  all clients (computed once per seed): from its random initialisation the model predicts the majority class
  for 3-4 rounds, and an attack on a model that has learnt nothing cannot cost accuracy.
- Declared samples: honest clients declare their true counts; each malicious client declares the count at
  which its capped share binds (``chaincode.weights``: the count that alone beside the honest clients would
  give it ``min(max_participant_share, max_organisation_share)``); every client is its own organisation.
  Each cell records the malicious clients' share of the contract's FedAvg weight per round. The baselines and
  the warm-up weigh by these counts under the caps only; fedledger's cells under its default rules, which also
  bound counts by the round's median and weigh updates by norm, direction and diversity
  (``chaincode.weights.weight_values``).
- Attacks (:mod:`fedledger.experiments.update_attacks`, :mod:`~fedledger.experiments.attacks`,
  :mod:`~fedledger.experiments.adaptive_attacks`): sign flip, scaling x10, Gaussian noise of 10x the honest
  median norm, ALIE (z_max of Baruch et al.), IPM (epsilon 0.5), the norm-matched sign flip and IPM, label flip
  (all rows), a text backdoor (trigger "cf zq" appended to half the rows, label benign), and the adaptive,
  colluding ones: min-max and min-sum (NDSS'21), sybil copies of one colluder's sign-flipped delta, and
  ``under_threshold``,
  which tunes its copies' jitter and its push against the contract's own detector run on the round exactly
  as FinalizeRound will run it (same participants and order, declared samples, rules, previous direction).
- Colluders who submit one common update (ALIE, IPM, IPM-NM and the adaptive attacks) submit jittered copies
  of it (relative jitter 1e-3): SubmitUpdate refuses a byte copy of an update already in the round, and the
  rounds here refuse what it refuses (copies, norms over ``max_update_norm``) for every defence.
- Rounds: every cell runs :class:`~fedledger.trainer.rounds.RoundDriver` over
  :class:`~fedledger.experiments.in_memory.InMemoryRounds` under the consortium's default rules. Defence
  ``fedledger`` is the contract's verdict exactly (``contract_screen`` -> :func:`fedledger.chaincode.verdicts.
  detect`), then FedAvg of the accepted updates with the contract's capped weights. Baselines
  (:class:`fedledger.experiments.baselines.BaselineStrategy` under ``accept_all``): byzfl's Krum, Multi-Krum,
  median, trimmed mean, NNM + trimmed mean, ARC + trimmed mean, geometric median and centered clipping
  (``f`` = the number of attackers, ``no_attack_f`` without attack) and FedAvg (Flower's weighted
  ``aggregate`` over the contract's weights) over every update.
- Per round: TPR/FPR of the defences that judge single updates (fedledger, Krum, Multi-Krum; a rejected update
  is one not used), held-out accuracy/precision/recall/F1, the attackers' weight share; for the backdoor the
  attack success rate; for ``under_threshold`` the push and jitter the detector let through.

Local training depends only on (client, its data, the global state), so deltas are cached by the global
state's hash: round 1 is trained once per process and shared by every cell, and defences that reach the same
global state share later rounds too. Cells are stored as they finish (``--reuse`` resumes).

Results: tables on stdout, ``bench/results/robustness.{csv,json}``, ``bench/results/robustness_rounds.csv``,
PNGs ``bench/results/robustness_*.png`` and ``docs/bench-robustness.md``, which leads with the
discrimination table (undefended FedAvg against the clean run) and issue 11's targets.

Modules: :mod:`.grid` (settings, cells, the work split, the cell store), :mod:`.measure` (runs cells),
:mod:`.summary` (means and spreads, the tables, the targets), :mod:`.render` (plots, the docs page),
:mod:`.cli` (the command line); :mod:`.shared_mode` re-runs the ``fedledger`` cells with
secret-shared sketches (issue 13, ``docs/bench-robustness-shared.md``).
"""
