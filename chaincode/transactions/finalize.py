"""FinalizeRound runs the detector over the round (CommitAggregate, the new global model: aggregate.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fedledger.anomaly.detector import round_seed
from fedledger.anomaly.features import direction_of
from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.errors import FailedPrecondition
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.records import Anomaly, Round, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.rounds import parse_round, require_closable, require_round
from fedledger.chaincode.transactions.settlement import apply_verdict_to_participant, settle_round
from fedledger.chaincode.transactions.updates import round_updates, rules_of
from fedledger.chaincode.verdicts import detect, screened


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
    if previous is None or previous.status not in ("finalized", "aggregated"):
        return []
    accepted = [u for u in round_updates(ctx, previous.number) if u.status == "accepted"]
    return direction_of([u.features for u in accepted], [u.weight for u in accepted])


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
    direction = previous_direction(ctx, record.number)
    verdicts = detect(record.number, rules, [_screened(u) for u in updates], direction)
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
