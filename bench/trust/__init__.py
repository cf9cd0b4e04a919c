"""Bench 6 — trust scores and the reward split, from the real contract on the embedded ledger.

Seven trainers take part in ``--rounds`` federated rounds (default 8) run through the SDK, the update store
and the contract exactly as ``fedledger demo`` runs them (the members of trainer/, the aggregator as the
round driver's ledger):

* four honest hospitals/clinics: local LoRA training on their own (Dirichlet non-IID) rows every round;
* ``clinic-e`` (intermittent): honest in some rounds, skips every third round (2, 5, 8) and in rounds 3 and 6
  submits a low-quality update (Gaussian noise with the per-coordinate spread of the previous round's
  accepted updates, in place of its real delta);
* ``mallory`` (malicious from the start): sign flip scaled by 10 every round (the demo's attacker);
* ``lab-h`` (sleeper): honest until ``--turn`` (default after round 3), then scales its delta by 10.

Every update comes from real local training (all-MiniLM-L6-v2 + LoRA, breast cancer as text); the attacks
are applied to the trained delta. The contract's FinalizeRound computes the features, runs the detector,
moves trust (beta reputation, suspension below ``trust_suspend_below``) and pays the round's reward pool by
samples x trust. After each round the study reads back, per participant: trust, status, the verdict of its
update, and the payout; at the end the balances. Nothing is computed outside the contract.

Run: ``python -m fedledger.bench.trust [--quick]`` from the repository root (``--render-only`` re-renders
the plots and the page from ``bench/results/trust.json``). Modules: :mod:`.measure` (the federation and what
the ledger records), :mod:`.render` (plots, tables, findings, docs page), :mod:`.cli`.
"""
