"""Round time, shared vs plaintext: one whole round on the embedded ledger in each mode, on the same updates.

Each round runs on a fresh embedded consortium (two organisations, each with its share key registered) with the
project's own parties: the members' code path (``seal_update`` + SubmitSharedUpdate, or the codec + the update
store + SubmitUpdate), the organisations' :class:`ShareHolder` and the :class:`Aggregator` driven by
:class:`RoundDriver`. Only the rules' ``secure_aggregation`` differs between the two modes. Every party runs in
this process in turn (members one after the other, then organisation 1 then 2), so the round's wall time is the
sum of every party's work plus the ledger's; the setup (consortium, enrolment, genesis) is not timed.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.bench.shares.measure import RATIO_TARGET, lora_shapes
from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.chaincode.privacy_budget import steps_within
from fedledger.chaincode.records import OrgShares
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.connection import LedgerLocation
from fedledger.sdk.embedded import forget_ledger
from fedledger.sdk.store import UpdateStore, create_key
from fedledger.tensors import NDState, encode
from fedledger.trainer.aggregator import Aggregator
from fedledger.trainer.member import seal_update
from fedledger.trainer.rounds import RoundDriver
from fedledger.trainer.share_holder import ShareHolder, load_or_create_share_key

logger = logging.getLogger("bench.shares")

ORGS = ("Org1MSP", "Org2MSP")
MODES = ("plaintext", "shared")
#: What each member declares (the synthetic demo's DP-SGD parameters).
PRIVACY = steps_within(1.0, noise_multiplier=2.0, sample_rate=0.01, delta=1e-5)
#: The steps of a round as reported, in order: the driver's laps and the parties' own times inside them.
STEP_KEYS = (
    "open_s",
    "members_s",
    "screen_s",
    "sketch_tx_s",
    "fetch_sums_s",
    "sum_tx_s",
    "aggregate_s",
    "commit_s",
    "sketch_submit_s",
    "sum_submit_s",
)


#: Opens a client of the ledger under test: (MSP ID, user name, admin?) -> client.
Connect = Callable[[str, str, bool], FedLedgerClient]


def each(work: Callable[[int], None], count: int, *, parallel: bool) -> None:
    """``work(0..count-1)``: one after the other, or all at once on threads (separate parties of a deployment)."""
    if not parallel:
        for i in range(count):
            work(i)
        return
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(work, range(count)))


class _TimedHolder(ShareHolder):
    """The real share holder, with the wall time of its two steps (open + the peers' work) kept, and of their
    transactions alone (submit: the opened shares to the organisation's peers, endorse, order, commit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = {"sketch": 0.0, "sum": 0.0}
        self.submit_seconds = {"sketch": 0.0, "sum": 0.0}
        for what, name in (("sketch", "submit_share_sketches"), ("sum", "submit_share_sum")):
            setattr(self.client, name, self._submit_timed(what, getattr(self.client, name)))

    def _submit_timed(self, what: str, submit: Callable[..., OrgShares]) -> Callable[..., OrgShares]:
        def timed(*args: Any, **kwargs: Any) -> OrgShares:
            started = time.perf_counter()
            try:
                return submit(*args, **kwargs)
            finally:
                self.submit_seconds[what] += time.perf_counter() - started

        return timed

    def _timed(self, what: str, step: Callable[[int], OrgShares | None], number: int) -> OrgShares | None:
        started = time.perf_counter()
        try:
            return step(number)
        finally:
            self.seconds[what] += time.perf_counter() - started

    def sketch(self, number: int) -> OrgShares | None:
        return self._timed("sketch", super().sketch, number)

    def sum(self, number: int) -> OrgShares | None:
        return self._timed("sum", super().sum, number)


class _AllAtOnce(ShareHolder):
    """Every organisation's share holder acting at the same time (threads), as separate organisations do; keeps
    the wall time of each step (the slowest organisation's)."""

    def __init__(self, holders: Sequence[ShareHolder]) -> None:  # pyright: ignore[reportMissingSuperCall]
        self.holders = list(holders)
        self.seconds = {"sketch": 0.0, "sum": 0.0}

    def _all(self, what: str, number: int) -> None:
        started = time.perf_counter()
        each(lambda i: getattr(self.holders[i], what)(number), len(self.holders), parallel=True)
        self.seconds[what] += time.perf_counter() - started

    def sketch(self, number: int) -> OrgShares | None:
        self._all("sketch", number)
        return None

    def sum(self, number: int) -> OrgShares | None:
        self._all("sum", number)
        return None


@dataclass
class RoundSample:
    """One round of one mode: its times, bytes and committed model."""

    mode: str
    total_s: float
    steps: dict[str, float]
    member_s: list[float] = field(default_factory=list)
    update_bytes: list[int] = field(default_factory=list)  # plaintext: the encoded update; shared: sealed shares
    commitment_bytes: list[int] = field(default_factory=list)  # shared: the commitments sent on chain
    accepted: list[str] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)  # each member's FedAvg weight on the ledger (0: rejected)
    model: NDState = field(default_factory=dict)


def synthetic_updates(d: int, members: int, seed: int) -> tuple[list[NDState], list[int]]:
    """``members`` float32 LoRA-shaped deltas of about ``d`` values: one shared direction plus noise (as the
    synthetic demo's honest members), and each member's sample count."""
    rng = np.random.default_rng(seed)
    shapes = lora_shapes(d)
    direction = {k: rng.standard_normal(s) for k, s in shapes.items()}
    updates = [
        {k: (0.01 * v + 0.004 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in direction.items()}
        for _ in range(members)
    ]
    sizes = [int(x) for x in rng.integers(200, 400, size=members)]
    return updates, sizes


def one_round(
    mode: str, updates: Sequence[NDState], sizes: Sequence[int], folder: Path, rules: Mapping[str, Any] | None = None
) -> RoundSample:
    """One round of ``mode`` on a fresh embedded consortium in ``folder`` (see the module docstring); ``rules``:
    more rules than the defaults (the same in both modes)."""
    store = UpdateStore(folder / "store", create_key(folder / "store.key"))
    consortium = create_consortium(folder / "consortium")
    try:
        location = LedgerLocation("embedded", consortium.base)
        return round_on(
            mode,
            updates,
            sizes,
            folder,
            store,
            lambda org, name, admin: location.client(org, name, admin=admin),
            dict(rules or {}),
        )
    finally:
        forget_ledger(consortium.ledger_dir)


def round_on(
    mode: str,
    updates: Sequence[NDState],
    sizes: Sequence[int],
    folder: Path,
    store: UpdateStore,
    connect: Connect,
    rules: dict[str, Any],
    *,
    parallel: bool = False,
) -> RoundSample:
    """One round of ``mode`` on an empty ledger ``connect`` opens clients of; ``parallel``: the members submit at
    the same time and the organisations' share holders act at the same time (threads), else one after the other."""
    admin = connect(ORGS[0], "Admin", True)
    admin.init_consortium(
        {
            "member_msps": list(ORGS),
            "secure_aggregation": mode == "shared",
            "epsilon_total": 100.0,
            # every member is honest here: the bench times the round, not the detector's verdicts
            "detector_min_updates": 4,
            **rules,
        }
    )
    admins = {org: connect(org, "Admin", True) for org in ORGS}
    holders = [
        _TimedHolder(c, store, load_or_create_share_key(folder / "keys" / f"{org}.pem"), org=org)
        for org, c in admins.items()
    ]
    for holder in holders:
        holder.register()
    timed: list[ShareHolder] = [_AllAtOnce(holders)] if parallel else list(holders)
    aggregator = Aggregator(connect(ORGS[0], "aggregator", False), store, holders=timed)
    aggregator.ensure_registered(list(admins.values()))
    trainers = []
    for i, size in enumerate(sizes):
        org = ORGS[i % len(ORGS)]
        trainer = connect(org, f"member-{i:03d}", False)
        admins[org].enrol_trainer(trainer.whoami()["id"].partition(":")[2], dataset_size=size, schema_hash="5" * 64)
        trainer.register("trainer")
        trainers.append(trainer)
    aggregator.publish_genesis({k: np.zeros(v.shape, np.float32) for k, v in updates[0].items()}, name="bench")

    sample = RoundSample(mode=mode, total_s=0.0, steps={})

    def collect(number: int) -> None:
        each(lambda i: member(number, trainers[i], updates[i], sizes[i]), len(trainers), parallel=parallel)

    def member(number: int, trainer: FedLedgerClient, delta: NDState, size: int) -> None:
        started = time.perf_counter()
        record = trainer.round(number)
        if record.shared:
            pid = trainer.whoami()["id"]
            commitments = seal_update(trainer, store, record, delta, participant=pid)
            trainer.submit_shared_update(number, commitments, samples=size, privacy=PRIVACY, train_loss=0.5)
        else:
            payload = encode(delta)
            store.put(payload)
            trainer.submit_update(number, payload, samples=size, privacy=PRIVACY, train_loss=0.5)
        sample.member_s.append(time.perf_counter() - started)
        if record.shared:
            sample.update_bytes.append(sum(len(store.sealed_share(c)) for c in commitments))
            sample.commitment_bytes.append(sum(len(c.encode()) for c in commitments))
        else:
            sample.update_bytes.append(len(payload))

    started = time.perf_counter()
    outcome = RoundDriver(aggregator, collect=collect).run_round()
    sample.total_s = time.perf_counter() - started
    if outcome.model is None:
        raise RuntimeError(f"{mode} round committed no model ({len(outcome.rejected)} update(s) rejected)")
    shared = aggregator.client.round(outcome.number).shared
    if shared != (mode == "shared"):
        raise RuntimeError(f"the {mode} round ran {'shared' if shared else 'plaintext'}")
    seconds = outcome.seconds
    sketch = sum(h.seconds["sketch"] for h in timed)  # pyright: ignore[reportAttributeAccessIssue]
    sums = sum(h.seconds["sum"] for h in timed)  # pyright: ignore[reportAttributeAccessIssue]
    # the transactions alone: the slowest organisation's when they act at once, else both one after the other
    submits = [h.submit_seconds for h in holders]
    combine = max if parallel else sum
    sample.steps = {
        "open_s": seconds["open_round"],
        "members_s": seconds["wait_for_deadline"],
        "screen_s": seconds["finalize_round"] - sketch,  # CloseRound + FinalizeRound (the detector)
        "sketch_tx_s": sketch,  # every organisation's SubmitShareSketches (one after the other, or at once)
        "fetch_sums_s": seconds["fetch_verify"] - sums,  # the updates (plaintext) or the sums read and combined
        "sum_tx_s": sums,  # every organisation's SubmitShareSum
        "aggregate_s": seconds["aggregation"] + seconds["evaluation"],
        "commit_s": seconds["commit_aggregate"],
        "sketch_submit_s": combine(s["sketch"] for s in submits),
        "sum_submit_s": combine(s["sum"] for s in submits),
    }
    sample.accepted = sorted(u["participant"] for u in outcome.accepted)
    ledger = {u.participant: u for u in aggregator.client.updates(outcome.number)}
    sample.weights = [
        ledger[t.whoami()["id"]].weight if ledger[t.whoami()["id"]].status == "accepted" else 0 for t in trainers
    ]
    sample.model = aggregator.global_state()[1]
    return sample


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _summary(samples: Sequence[RoundSample]) -> dict[str, Any]:
    return {
        "total_s": _median([s.total_s for s in samples]),
        **{key: _median([s.steps[key] for s in samples]) for key in STEP_KEYS},
        "member_s": _median([t for s in samples for t in s.member_s]),
        "bytes_per_member": _median([b for s in samples for b in s.update_bytes]),
        "commitment_bytes_per_member": _median([b for s in samples for b in s.commitment_bytes]),
        "accepted": _median([len(s.accepted) for s in samples]),
        "totals_s": [round(s.total_s, 4) for s in samples],
    }


def weighted_mean(updates: Sequence[NDState], weights: Sequence[int]) -> NDState:
    """The float64 weighted mean of ``updates`` (FedAvg of a zero base model at server rate 1)."""
    total = float(sum(weights))
    mean: NDState = {}
    for k in updates[0]:
        acc = np.zeros(updates[0][k].shape, np.float64)
        for w, u in zip(weights, updates, strict=True):
            acc += w * u[k].astype(np.float64)
        mean[k] = acc / total
    return mean


def model_difference(a: NDState, b: NDState) -> float:
    """The largest absolute difference between two states."""
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in a)


def weight_difference(a: Sequence[int], b: Sequence[int]) -> float:
    """The largest difference between two rounds' weights, relative to the total weight."""
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) / max(1, sum(a))


#: Plays one round of a mode on a fresh ledger, in a scratch folder: (mode, updates, sizes, folder) -> sample.
Play = Callable[[str, Sequence[NDState], Sequence[int], Path], RoundSample]


def run_round_part(
    *,
    dims: Sequence[int],
    members: Sequence[int],
    repeats: int,
    seed: int,
    rules: Mapping[str, Any] | None = None,
    play: Play | None = None,
    cells: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """Every (d, members) cell: ``repeats`` rounds per mode (seed ``seed + repeat``, a fresh ledger each), the
    modes interleaved on the same updates; medians, the ratio shared/plaintext against the target, and how far
    apart the two modes' models are when they accepted the same updates. ``play``: how a round is played (default:
    :func:`one_round` on the embedded ledger with ``rules``); ``cells``: (d, members) pairs measured instead of
    every d with every number of members."""
    if play is None:
        play = lambda mode, updates, sizes, folder: one_round(mode, updates, sizes, folder, rules)  # noqa: E731
    for mode in MODES:  # warm-up, not reported: imports, first-use caches of the ledger and the crypto
        with tempfile.TemporaryDirectory(prefix="fedledger-bench-round-warmup-") as tmp:
            play(mode, *synthetic_updates(1000, 4, seed), Path(tmp))
    results = []
    for d, n in cells or [(d, n) for d in dims for n in members]:
        runs: dict[str, list[RoundSample]] = {mode: [] for mode in MODES}
        errors: list[float] = []  # each model against the exact weighted mean under its round's weights
        cross: list[float] = []  # the shared model against the plaintext one (same accepted set)
        weight_gaps: list[float] = []
        same_sets = 0
        for repeat in range(repeats):
            updates, sizes = synthetic_updates(d, n, seed + repeat)
            for mode in MODES:
                with tempfile.TemporaryDirectory(prefix=f"fedledger-bench-round-{mode}-") as tmp:
                    runs[mode].append(play(mode, updates, sizes, Path(tmp)))
                logger.info("d=%d N=%d repeat %d %s: %.2f s", d, n, repeat, mode, runs[mode][-1].total_s)
            plain, shared = runs["plaintext"][-1], runs["shared"][-1]
            for run in (plain, shared):
                errors.append(model_difference(run.model, weighted_mean(updates, run.weights)))
            if plain.accepted == shared.accepted:
                same_sets += 1
                cross.append(model_difference(shared.model, plain.model))
                weight_gaps.append(weight_difference(plain.weights, shared.weights))
        plain, shared = _summary(runs["plaintext"]), _summary(runs["shared"])
        ratio = shared["total_s"] / plain["total_s"]
        results.append(
            {
                "d": sum(v.size for v in updates[0].values()),
                "n": n,
                "orgs": len(ORGS),
                "repeats": repeats,
                "plaintext": plain,
                "shared": shared,
                "ratio": ratio,
                "met": ratio <= RATIO_TARGET,
                "same_accepted_repeats": same_sets,
                "max_model_error": max(errors),
                "max_shared_vs_plaintext": max(cross) if cross else float("nan"),
                "max_weight_gap": max(weight_gaps) if weight_gaps else float("nan"),
            }
        )
    rules = dict(rules or {})
    return {"cells": results, "target": RATIO_TARGET, "modes": list(MODES), "orgs": len(ORGS), "rules": rules}
