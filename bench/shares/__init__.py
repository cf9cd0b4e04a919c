"""Secret-shared updates (issue 13's share layer) beside today's plaintext mode: member and organisation compute,
bytes per member, and how well the count sketch estimates norms and cosines.

What one run does (in process, one thread; no ledger, no network)::

    .venv/bin/python -m fedledger.bench.shares            # d = 10^5 and 10^6, K = 2 and 3, 10 and 50 members
    .venv/bin/python -m fedledger.bench.shares --quick    # the same dimensions, 10 members, one repeat

1. Per dimension d, one round of LoRA-like updates (8 tensors: rank-8 A and B of 4 layers; each member's update
   is the round's common direction, a low-rank member part and DP-like Gaussian noise), float32.
2. **Shares**, per K (organisations): every member runs :func:`fedledger.shares.share_update` (encode in fixed
   point, split, commit, seal each share to its organisation with HPKE), timed. The sketch seed is then derived
   from all the commitments (as the issue wants: fixed only after every share is committed), and every
   organisation opens each of its shares (HPKE, header, commitment) and computes its ring sketch at the rules'
   sketch size, timed. The summed share sketches are the update's sketch estimate. Organisation 0 then opens and
   sums its shares of the first N members with integer weights summing to the contract's WEIGHT_UNITS
   (``sum_shares``), timed; the organisations' sums are combined and decoded (timed), and the result is checked
   against the plaintext weighted mean.
3. **Plaintext** (today), in the same run: each member encodes its update with the codec and seals it into the
   update store under the one consortium AES-256-GCM key (:class:`fedledger.sdk.store.UpdateStore`, on a tmpfs
   folder); each endorsing peer hashes, decodes and computes ``update_features`` (sketch included) of every
   update; the aggregator reads N updates back from the store and takes the float64 weighted mean.
4. Sketch accuracy: each update's norm and every pair's cosine estimated from its (summed share) sketch against
   the exact values from the float update: median and 90th percentile of the norm's relative error and the
   cosine's absolute error; targets norm <= 5 % and cosine <= 0.05 (medians).

5. **What leaks** (:mod:`.leak`; ``--parts leak`` runs it alone and keeps the saved timing): what an outsider
   reconstructs of one update from its on-chain sketch with the seed known (estimator, least squares, OMP,
   against zero and random baselines), and what one organisation learns from its own share: real DP-SGD updates
   of the demo's adapter (MiniLM, offline; ``--real-members 0`` skips them), synthetic ones of its shapes, 128
   values, and the all-layer adapter.

6. **Round time, shared vs plaintext** (:mod:`.round`; ``--parts round`` runs it alone and keeps the rest): one
   whole round on the embedded ledger in each mode on the same synthetic updates (d = 10^5 and 10^6, 10 and 50
   members, 2 organisations, 3 repeats on fresh ledgers), with the project's Aggregator, RoundDriver,
   ShareHolder and the members' ``seal_update``: total wall time, each step, bytes per member, ratio to 1.3x.

7. **Round time on Fabric** (:mod:`.round_fabric`; ``--parts round-fabric``, not run unless asked: it needs a
   running network, ``network/network-up.sh``, which it neither starts nor stops): the same round on the native
   network, a fresh chaincode namespace per round, the members submitting at the same time and the two
   organisations' share holders acting at the same time (threads, each party its own identity and connection);
   cells ``--fabric-cells`` (d = 10^5 and 10^6 with 10 members, 10^5 with 50).

Round compute (critical path, compute only) = one member's time + N sketches at one organisation + its sum of N
+ combining; the plaintext analogue = one member's time + N feature computations at one peer + the aggregation.
Target: shares <= 1.3x plaintext. Members work in parallel and so do organisations, so one of each is the path.

Results: a table on stdout, ``bench/results/shares.{csv,json}`` (+ ``shares_leak.csv``, ``shares_round.csv``,
``shares_round_fabric.csv``) and ``docs/bench-shares.md``. Modules: :mod:`.measure` (the runs), :mod:`.leak` (What
leaks), :mod:`.round` (Round time), :mod:`.round_fabric` (Round time on Fabric), :mod:`.render` (tables, files,
page), :mod:`.cli` (arguments).
"""
