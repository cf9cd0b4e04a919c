"""Bench 2 — privacy-utility: accuracy, precision, recall and F1 of the demo's federated task at ε ∈ {1, 3, 8, ∞}.

The federation is the demo's (experiments/demo_setup.py): all-MiniLM-L6-v2 + LoRA, breast cancer Wisconsin as
text ("levels"), 4 honest members with a Dirichlet alpha=1 (non-IID) split of the training rows, 3 rounds, FedAvg,
evaluated on the same held-out 20 % after every round. Each member runs DP-SGD with Opacus: per-sample
clipping, Poisson sampling, RDP accountant, δ = 1e-5, and ε is the member's budget over *all* its rounds
(the noise multiplier is derived for steps x rounds). ε = ∞ is the same training without DP: the same
optimizer, learning rate, batch size and epochs, so the gap is what DP costs and nothing else.

The loop is the in-memory one (experiments.simulation.run_simulation: the round driver over InMemoryRounds,
every update accepted): the ledger does not change the model maths, and it keeps the study within its time
budget. Every configuration runs for several seeds (the split, the LoRA initialisation, the sampling and the
noise all change with the seed); the tables quote medians.

Side by side in the same run (full mode): the demo's previous DP recipe (SGD lr 0.15, batch 64, 2 epochs)
at ε = 8, to show what changed.

Run: ``python -m fedledger.bench.privacy_utility [--quick]`` from the repository root (``--render-only``
re-renders the plots and the page from ``bench/results/privacy_utility.json``). Modules: :mod:`.measure`
(the runs and their medians), :mod:`.render` (plots, target verdict, docs page), :mod:`.cli`.
"""
