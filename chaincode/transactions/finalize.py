"""FinalizeRound runs the detector over the round (CommitAggregate, the new global model: aggregate.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fedledger.anomaly.detector import round_seed
from fedledger.anomaly.features import direction_of
from fedledger.anomaly.screening import Verdict
from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.errors import FailedPrecondition
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.records import Anomaly, Round, Rules, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.rounds import parse_round, require_closable, require_round
from fedledger.chaincode.transactions.settlement import apply_verdict_to_participant, settle_round
from fedledger.chaincode.transactions.shares import shared_evidence
from fedledger.chaincode.transactions.updates import round_updates, rules_of
from fedledger.chaincode.verdicts import detect, screened

RULE_SHARE_REFUSED = "share-refused"  # a holder organisation could not open or check the member's share
RULE_NORM_BOUND = "update-norm-bound"  # the summed sketch's norm is over the rules' max_update_norm


def _screened(update: Update) -> dict[str, Any]:
    return screened(
        update.features, samples=update.samples, epsilon=update.epsilon or 0.0, participant=update.participant
    )


def previous_direction(ctx: LedgerContext, number: int) -> list[float]:
    """Sketch of the previous round's global update: its accepted updates weighted as in FedAvg.

    Derived from the sketches already on the ledger (count sketches are linear), so nothing extra is
    stored and no aggregator can bias it. ``[]`` when there is no judged previous round.
    """
    if number <= 1:
        return []
    previous = state.read(ctx, Round, keys.ROUND, [keys.round_attr(number - 1)])
    if previous is None or previous.status not in ("finalized", "aggregated") or previous.shared:
        return []  # a shared round's sketches used its own seed: no common projection
    accepted = [u for u in round_updates(ctx, previous.number) if u.status == "accepted"]
    return direction_of([u.features for u in accepted], [u.weight for u in accepted])


def _refused(rules: Rules, updates: list[Update], unopened: dict[str, str]) -> dict[str, Verdict]:
    """Shared rounds: the updates rejected before the detector runs, with the rule that rejects each: a share
    a holder could not open or check, or a summed sketch over the rules' norm bound (plaintext mode refuses
    that at SubmitUpdate, from the update itself)."""
    refused = {
        p: Verdict(False, None, None, f"rejected by rule {RULE_SHARE_REFUSED}: {why}", RULE_SHARE_REFUSED)
        for p, why in unopened.items()
    }
    for update in updates:
        norm = update.features.get("l2_norm")
        if update.participant not in refused and isinstance(norm, float) and norm > rules.max_update_norm:
            refused[update.participant] = Verdict(
                False,
                None,
                None,
                f"rejected by rule {RULE_NORM_BOUND}: L2 norm {norm:.4g} (estimated from the summed share sketches) "
                f"exceeds the bound {rules.max_update_norm}",
                RULE_NORM_BOUND,
            )
    return refused


@transaction("FinalizeRound")
def finalize_round(ctx: LedgerContext, round_number: str) -> Round:
    require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    now = ctx.get_tx_timestamp()
    if record.status == "open":
        require_closable(ctx, record)
    if record.status not in ("open", "closed"):
        raise FailedPrecondition(f"round {record.number} is already {record.status}")
    rules = rules_of(ctx, record)
    updates = round_updates(ctx, record.number)
    if len(updates) < rules.min_participants_per_round:
        raise FailedPrecondition(
            f"round {record.number} has {len(updates)} update(s); the rules require "
            f"{rules.min_participants_per_round}. Abandon it with AbandonRound"
        )
    judged = []
    refused: dict[str, Verdict] = {}
    if record.shared:
        if record.status == "open":
            raise FailedPrecondition(
                f"round {record.number} is secret-shared: close it with CloseRound first (that fixes the sketch "
                "seed), then each holder organisation submits its share sketches"
            )
        evidence = shared_evidence(ctx, record, rules, updates)
        updates = [dataclasses.replace(u, features=evidence.features.get(u.participant, {})) for u in updates]
        direction = evidence.direction
        refused = _refused(rules, updates, evidence.refused)
    else:
        direction = previous_direction(ctx, record.number)
    screened_updates = [u for u in updates if u.participant not in refused]
    detected = detect(record.number, rules, [_screened(u) for u in screened_updates], direction)
    by_participant = {u.participant: v for u, v in zip(screened_updates, detected, strict=True)}
    verdicts = [refused.get(u.participant) or by_participant[u.participant] for u in updates]
    for update, verdict in zip(updates, verdicts, strict=True):
        status = "accepted" if verdict.accepted else "rejected"
        update = dataclasses.replace(
            update,
            status=status,
            score=verdict.score,
            reason=verdict.reason,
            rule=verdict.rule,
            threshold=verdict.threshold,
            deviation=verdict.deviation,
            similarity=verdict.similarity,
        )
        apply_verdict_to_participant(ctx, rules, update.participant, int(verdict.accepted), int(not verdict.accepted))
        if not verdict.accepted:
            anomaly = Anomaly(
                round=record.number,
                participant=update.participant,
                update_hash=update.hash,
                score=verdict.score if verdict.score is not None else 0.0,
                threshold=verdict.threshold if verdict.threshold is not None else 0.0,
                reason=verdict.reason,
                features={k: v for k, v in _screened(update).items() if k not in ("sketch", "participant")},
                detected_at=now,
                tx_id=ctx.get_tx_id(),
                rule=verdict.rule,
                deviation=verdict.deviation,
                similarity=verdict.similarity,
            )
            state.write(ctx, keys.ANOMALY, [keys.round_attr(record.number), update.participant], anomaly)
        judged.append(update)
    judged = settle_round(ctx, rules, record, judged)
    finalized = dataclasses.replace(
        record,
        status="finalized",
        closed_at=record.closed_at or now,
        finalized_at=now,
        accepted=[u.participant for u in judged if u.status == "accepted"],
        rejected=[u.participant for u in judged if u.status == "rejected"],
        detector_seed=round_seed(record.number),
        direction_round=record.number - 1 if direction else None,
    )
    state.write(ctx, keys.ROUND, [keys.round_attr(record.number)], finalized)
    emit(
        ctx,
        "RoundFinalized",
        {"round": record.number, "accepted": finalized.accepted, "rejected": finalized.rejected},
    )
    return finalized
