"""InMemoryRounds: a :class:`~fedledger.trainer.rounds.RoundLedger` without a ledger, for experiments.

It keeps what the contract keeps, computed the way the contract computes it: every payload is decoded and
checked against the genesis manifest by the shared codec, featurised by :func:`update_features` with the
rules' sketch size, and screened at the end of the round by the contract's own verdict function
(:func:`fedledger.chaincode.verdicts.detect`) with the configuration the rules give, including the previous
round's accepted direction. Only signatures, blocks and rewards are missing. ``screen`` replaces the
contract's verdict, e.g. :func:`accept_all` for an undefended baseline.

``sketch_mode="shared"`` featurises each round as a secret-shared round does (issue 13): every update is split
into one additive share per holder organisation (:func:`fedledger.shares.make_shares`), each share is ring
sketched under the round's seed (:func:`~fedledger.chaincode.share_protocol.sketch_seed` of the round, the
updates' commitment digests and a stand-in for the closing transaction's id), and the detector and the FedAvg
weights read what :func:`~fedledger.chaincode.share_protocol.summed_features` makes of the sketches; the
previous direction is the previous round's organisations' weighted share sums sketched under the new seed (what
``chaincode.transactions.shares._shared_direction`` reads). SubmitUpdate's refusals (:func:`refusal`) stay
computed from the update in both modes, so that both modes screen the same submissions. The seed hashes the
shares' commitments, and shares are fresh randomness, so a shared run's projections differ from run to run even
with ``close_seed`` fixed (as on a chain).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fedledger import shares
from fedledger.anomaly.features import direction_of, update_features
from fedledger.anomaly.screening import Verdict
from fedledger.chaincode import share_protocol
from fedledger.chaincode.records import Rules
from fedledger.chaincode.rules import apply_patch
from fedledger.chaincode.verdicts import detect, screened
from fedledger.chaincode.weights import WEIGHT_UNITS, accepted_weights
from fedledger.tensors import Manifest, NDState, decode, encode, manifest, sha256_hex
from fedledger.trainer.rounds import Contribution, RoundOutcome, Step
from fedledger.trainer.strategy import Strategy

__all__ = [
    "HOLDER_ORGS",
    "HeldUpdate",
    "InMemoryRounds",
    "Screen",
    "SketchMode",
    "SubmissionRefused",
    "accept_all",
    "contract_screen",
    "hold",
    "refusal",
    "screening_inputs",
]

SketchMode = Literal["plaintext", "shared"]
#: The holder organisations of ``sketch_mode="shared"`` rounds: K = 2 additive shares per update.
HOLDER_ORGS = ("Org1MSP", "Org2MSP")

#: ``screen(round, rules, screened features, previous direction) -> verdicts``, one per update, in order.
Screen = Callable[[int, Rules, Sequence[Mapping[str, Any]], Sequence[float]], list[Verdict]]


def contract_screen(
    number: int, rules: Rules, updates: Sequence[Mapping[str, Any]], direction: Sequence[float]
) -> list[Verdict]:
    """What FinalizeRound decides."""
    return detect(number, rules, updates, direction)


def accept_all(
    number: int, rules: Rules, updates: Sequence[Mapping[str, Any]], direction: Sequence[float]
) -> list[Verdict]:
    """No defence: every update is accepted (the undefended baseline)."""
    return [Verdict(True, None, None, "accepted: no screening") for _ in updates]


@dataclass
class HeldUpdate:
    """One submitted update as the contract would hold it: its commitment, features and (later) verdict."""

    participant: str
    hash: str
    samples: int
    epsilon: float
    delta: NDState = field(repr=False)
    features: dict[str, Any] = field(repr=False)
    verdict: Verdict | None = None
    #: shared mode: the update's shares (one per holder organisation) and its plaintext features, kept apart
    share_parts: list[shares.Share] = field(default_factory=list, repr=False)
    plain_features: dict[str, Any] = field(default_factory=dict, repr=False)

    def describe(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "participant": self.participant,
            "hash": self.hash,
            "samples": self.samples,
            "epsilon": self.epsilon,
            "score": verdict.score if verdict else None,
            "reason": verdict.reason if verdict else None,
            "tx_id": None,
            "block": None,
        }


def hold(
    participant: str, payload: bytes, *, samples: int, epsilon: float, expected: Manifest, sketch_dim: int
) -> HeldUpdate:
    """What SubmitUpdate keeps of ``payload``: decoded and checked against ``expected``, its hash and the
    features computed from the bytes (the declared ``samples`` and ``epsilon`` as given)."""
    delta = decode(payload, expected=expected, what="update")
    features = update_features(delta, sketch_dim=sketch_dim)
    return HeldUpdate(participant, sha256_hex(payload), samples, epsilon, delta, features)


class SubmissionRefused(ValueError):
    """SubmitUpdate would refuse this update (see :func:`refusal`)."""


def refusal(held: HeldUpdate, rules: Rules, round_hashes: Iterable[str]) -> str | None:
    """Why SubmitUpdate refuses ``held`` after decoding it, or None: its exact bytes are already in the round
    (``round_hashes``: the hashes submitted before it), or its L2 norm exceeds ``rules.max_update_norm``."""
    if held.hash in set(round_hashes):
        return f"the round already holds an update with these exact bytes (sha256 {held.hash})"
    if held.features["l2_norm"] > rules.max_update_norm:
        return f"update L2 norm {held.features['l2_norm']:.4g} exceeds the bound {rules.max_update_norm}"
    return None


def screening_inputs(held: Iterable[HeldUpdate]) -> tuple[list[HeldUpdate], list[dict[str, Any]]]:
    """A round's submissions in the order FinalizeRound screens them (by participant id) and what the detector
    sees of each (:func:`~fedledger.chaincode.verdicts.screened`)."""
    ordered = sorted(held, key=lambda s: s.participant)
    return ordered, [
        screened(s.features, samples=s.samples, epsilon=s.epsilon, participant=s.participant) for s in ordered
    ]


@dataclass
class _Round:
    number: int
    base: str
    status: str = "open"  # open -> finalized -> aggregated | abandoned
    submissions: dict[str, HeldUpdate] = field(default_factory=dict)
    #: shared mode: the sketch seed fixed when the round was screened, and the plaintext mode's verdicts on the
    #: same submissions (participant -> accepted), for comparison
    sketch_seed: str = ""
    plaintext_verdicts: dict[str, Verdict] = field(default_factory=dict)

    def accepted(self) -> list[HeldUpdate]:
        return sorted((s for s in self.submissions.values() if s.verdict and s.verdict.accepted), key=lambda s: s.hash)


class InMemoryRounds:
    """Rounds over ``genesis`` under ``rules`` (a Rules record or the rule patch a consortium would init with).

    ``refuse``: also refuse what SubmitUpdate refuses once it has decoded the bytes (:func:`refusal`: an exact
    copy of an update already in the round, a norm over ``max_update_norm``) with :class:`SubmissionRefused`.
    ``sketch_mode``: ``"shared"`` screens each round as a secret-shared round (module docstring); ``close_seed``
    seeds the stand-in for the closing transaction's id (None: fresh randomness each run).
    """

    def __init__(
        self,
        genesis: Mapping[str, Any],
        *,
        rules: Rules | Mapping[str, Any] | None = None,
        screen: Screen | None = None,
        refuse: bool = False,
        sketch_mode: SketchMode = "plaintext",
        close_seed: int | None = None,
    ) -> None:
        if sketch_mode not in ("plaintext", "shared"):
            raise ValueError(f"sketch_mode must be 'plaintext' or 'shared'; got {sketch_mode!r}")
        self.sketch_mode: SketchMode = sketch_mode
        self._close_ids = random.Random(close_seed) if close_seed is not None else random.SystemRandom()
        self.rules = rules if isinstance(rules, Rules) else apply_patch(Rules(), dict(rules or {}))
        self.refuse = refuse
        self.screen_updates = screen or contract_screen
        self.manifest = manifest(genesis)
        genesis_state = decode(encode(genesis, like=self.manifest), expected=self.manifest)
        self.models: dict[str, NDState] = {self.digest(genesis_state): genesis_state}
        self._head = next(iter(self.models))
        self.rounds: dict[int, _Round] = {}

    # -- what members do -----------------------------------------------------------------------
    def submit(self, number: int, participant: str, payload: bytes, *, samples: int, epsilon: float = 0.0) -> str:
        """Records ``participant``'s update for the open round ``number``; returns its hash.

        Raises :class:`fedledger.tensors.TensorFormatError` (names, shapes, dtype or values) or ValueError
        (round not open, second update; with ``refuse``, :class:`SubmissionRefused`) as the contract would
        refuse it.
        """
        record = self.rounds.get(number)
        if record is None or record.status != "open":
            raise ValueError(f"round {number} is not open")
        if participant in record.submissions:
            raise ValueError(f"{participant} already submitted an update for round {number}")
        held = hold(
            participant,
            payload,
            samples=samples,
            epsilon=epsilon,
            expected=self.manifest,
            sketch_dim=self.rules.sketch_dim,
        )
        if self.refuse:
            reason = refusal(held, self.rules, (s.hash for s in record.submissions.values()))
            if reason is not None:
                raise SubmissionRefused(f"{participant}: {reason}")
        if self.sketch_mode == "shared":
            held.share_parts = shares.make_shares(
                held.delta, HOLDER_ORGS, manifest=self.manifest, scale=shares.DEFAULT_SCALE, total_weight=WEIGHT_UNITS
            )
        record.submissions[participant] = held
        return held.hash

    # -- the RoundLedger protocol --------------------------------------------------------------
    def head(self) -> str:
        return self._head

    def digest(self, state: NDState) -> str:
        return sha256_hex(encode(state, like=self.manifest))

    def next_step(self) -> tuple[Step, int]:
        if not self.rounds:
            return "open", 1
        last = self.rounds[max(self.rounds)]
        if last.status in ("aggregated", "abandoned"):
            return "open", last.number + 1
        return ("collect" if last.status == "open" else "aggregate"), last.number

    def open(self, number: int) -> None:
        self.rounds[number] = _Round(number, self._head)

    def screen(self, number: int) -> None:
        record = self.rounds[number]
        if self.sketch_mode == "shared":
            self._sketch_shares(record)
        submissions, updates = screening_inputs(record.submissions.values())
        for submission, verdict in zip(
            submissions, self.screen_updates(number, self.rules, updates, self.previous_direction(number)), strict=True
        ):
            submission.verdict = verdict
        record.status = "finalized"

    # -- shared mode ---------------------------------------------------------------------------------------------
    def _sketch_shares(self, record: _Round) -> None:
        """CloseRound and SubmitShareSketches in one: fix the round's seed, sketch every share under it, and give
        the detector the summed features (the plaintext mode's verdicts on the same round are kept beside)."""
        plain_direction = self._plain_direction(record.number)
        submissions, plain = screening_inputs(record.submissions.values())
        verdicts = self.screen_updates(record.number, self.rules, plain, plain_direction)
        record.plaintext_verdicts = {s.participant: v for s, v in zip(submissions, verdicts, strict=True)}
        digests = [
            share_protocol.commitments_digest([shares.share_commitment(p.to_bytes()) for p in s.share_parts])
            for s in submissions
        ]
        close_tx = f"{self._close_ids.getrandbits(256):064x}"
        record.sketch_seed = share_protocol.sketch_seed(record.number, digests, close_tx)
        for s in submissions:
            s.plain_features = s.features
            parts = [share_protocol.ring_sketch_of(p, self.rules.sketch_dim, record.sketch_seed) for p in s.share_parts]
            s.features = share_protocol.summed_features(parts, scale=shares.DEFAULT_SCALE, manifest=self.manifest)

    def plaintext_weights(self, number: int) -> dict[str, int]:
        """Shared mode: the FedAvg weights plaintext mode would give round ``number``'s accepted updates (the same
        set), from their fixed-seed features; compare with :meth:`contributions`' weights."""
        accepted = self.rounds[number].accepted()
        plain = [(s.participant, s.samples, s.plain_features or s.features) for s in accepted]
        return accepted_weights(self.rules, plain)

    def _plain_direction(self, number: int) -> list[float]:
        """The previous direction plaintext mode would see: the fixed-seed sketches of the previous round's
        accepted updates under the weights their plaintext features give."""
        previous = self.rounds.get(number - 1)
        if previous is None or previous.status not in ("finalized", "aggregated"):
            return []
        accepted = previous.accepted()
        plain = [s.plain_features or s.features for s in accepted]
        weights = accepted_weights(
            self.rules, [(s.participant, s.samples, f) for s, f in zip(accepted, plain, strict=True)]
        )
        return direction_of(plain, [weights[s.participant] for s in accepted])

    def _shared_direction(self, number: int) -> list[float]:
        """What ``_shared_direction`` reads: each organisation's weighted sum of its shares of the previous round's
        accepted updates (hash order, the contract's weights), sketched under round ``number``'s seed, added and
        divided by the total weight. ``[]`` before round ``number``'s seed is fixed (an attacker cannot know it)."""
        seed = self.rounds[number].sketch_seed if number in self.rounds else ""
        previous = self.rounds.get(number - 1)
        if not seed or previous is None or previous.status != "aggregated":
            return []
        accepted, weights = previous.accepted(), self._weights(number - 1)
        if not accepted:
            return []
        units = [weights[s.participant] for s in accepted]
        total = sum(units)
        if total <= 0:
            return []
        sums = [shares.sum_shares((s.share_parts[i] for s in accepted), units) for i in range(len(HOLDER_ORGS))]
        ring = [share_protocol.ring_sketch_of(part, self.rules.sketch_dim, seed) for part in sums]
        sketch = share_protocol.summed_sketch(ring, scale=shares.DEFAULT_SCALE, divisor=total)
        return [float(v) for v in sketch]

    def _weights(self, number: int) -> dict[str, int]:
        """The accepted updates' FedAvg weights as FinalizeRound writes them (``weights.accepted_weights``)."""
        return accepted_weights(
            self.rules, [(s.participant, s.samples, s.features) for s in self.rounds[number].accepted()]
        )

    def previous_direction(self, number: int) -> list[float]:
        """As the contract derives it: the previous round's accepted sketches, weighted as in FedAvg (shared mode:
        :meth:`_shared_direction`)."""
        if self.sketch_mode == "shared":
            return self._shared_direction(number)
        previous = self.rounds.get(number - 1)
        if previous is None or previous.status not in ("finalized", "aggregated"):
            return []
        accepted, weights = previous.accepted(), self._weights(number - 1)
        return direction_of([s.features for s in accepted], [weights[s.participant] for s in accepted])

    def base_state(self, number: int) -> NDState:
        return self.models[self.rounds[number].base]

    def contributions(self, number: int) -> list[Contribution]:
        weights = self._weights(number)
        return [
            Contribution(s.hash, s.participant, weights[s.participant], s.delta) for s in self.rounds[number].accepted()
        ]

    def commit(
        self,
        number: int,
        state: NDState,
        used: Sequence[Contribution],
        metrics: Mapping[str, float],
        *,
        strategy: Strategy | None = None,
    ) -> RoundOutcome:
        """Keeps ``state`` as the new head; in memory nothing recomputes it, so any ``strategy`` will do."""
        record = self.rounds[number]
        if used:
            if sorted(c.hash for c in used) != [s.hash for s in record.accepted()]:
                raise ValueError(f"the aggregate of round {number} must use exactly its accepted updates")
            self._head = self.digest(state)
            self.models[self._head] = decode(encode(state, like=self.manifest), expected=self.manifest)
            record.status = "aggregated"
        else:
            record.status = "abandoned"
        judged = sorted(record.submissions.values(), key=lambda s: s.participant)
        return RoundOutcome(
            number=number,
            base_model=record.base,
            model=None,
            accepted=[s.describe() for s in judged if s.verdict and s.verdict.accepted],
            rejected=[s.describe() for s in judged if s.verdict and not s.verdict.accepted],
            metrics=dict(metrics),
        )
