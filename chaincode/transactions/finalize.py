"""FinalizeRound runs the detector over the round; CommitAggregate records the new global model."""

from __future__ import annotations

import dataclasses
from typing import Any

from fedledger.anomaly.detector import round_seed
from fedledger.anomaly.features import direction_of
from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_json
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.payloads import decode_payload, transient_bytes
from fedledger.chaincode.records import Anomaly, ModelVersion, Round, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.lineage import MODEL_FIELD, require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.chaincode.transactions.settlement import apply_verdict_to_participant, settle_round
from fedledger.chaincode.transactions.updates import round_updates, rules_of
from fedledger.chaincode.verdicts import detect, screened
from fedledger.tensors import sha256_hex


def _screened(update: Update) -> dict[str, Any]:
    return screened(update.features, samples=update.samples, epsilon=update.epsilon)


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
    if record.status == "open" and now < record.deadline:
        raise FailedPrecondition(
            f"round {record.number} is open until {record.deadline}; close it (CloseRound) or wait for the deadline"
        )
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
        update = dataclasses.replace(update, status=status, score=verdict.score, reason=verdict.reason)
        apply_verdict_to_participant(ctx, rules, update.participant, int(verdict.accepted), int(not verdict.accepted))
        if not verdict.accepted:
            anomaly = Anomaly(
                round=record.number,
                participant=update.participant,
                update_hash=update.hash,
                score=verdict.score if verdict.score is not None else 0.0,
                threshold=verdict.threshold if verdict.threshold is not None else 0.0,
                reason=verdict.reason,
                features={k: v for k, v in _screened(update).items() if k != "sketch"},
                detected_at=now,
                tx_id=ctx.get_tx_id(),
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


@transaction("CommitAggregate")
def commit_aggregate(ctx: LedgerContext, round_number: str, update_hashes: str, metrics: str = "{}") -> ModelVersion:
    """Records the new global model (transient ``model``) built from exactly the accepted updates."""
    aggregator = require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    used = parse_json("update_hashes", update_hashes, list)
    scores = parse_json("metrics", metrics, dict)
    if record.status != "finalized":
        raise FailedPrecondition(f"round {record.number} is {record.status}; only a finalized round can be aggregated")
    accepted = {u.hash: u for u in round_updates(ctx, record.number) if u.status == "accepted"}
    if not accepted:
        raise FailedPrecondition(f"round {record.number} has no accepted update; abandon it with AbandonRound")
    if len(used) != len(set(used)) or set(used) != set(accepted):
        missing = sorted(set(accepted) - set(used))
        extra = sorted(set(used) - set(accepted))
        raise InvalidArgument(
            f"the aggregate must use exactly the {len(accepted)} accepted updates of round {record.number} "
            f"(missing: {missing}, not accepted: {extra}, duplicates: {len(used) != len(set(used))})"
        )
    base = require_model(ctx, record.base_model)
    rules = rules_of(ctx, record)
    data = transient_bytes(ctx, MODEL_FIELD, max_bytes=rules.max_update_bytes)
    decode_payload(data, "aggregate", expected=base.manifest)
    model_hash = sha256_hex(data)
    if ctx.get_state(keys.composite_key(keys.MODEL, [model_hash])) is not None:
        raise AlreadyExists(f"model {model_hash} is already on the ledger")
    model = ModelVersion(
        hash=model_hash,
        version=base.version + 1,
        parent=base.hash,
        round=record.number,
        updates=[
            {
                "participant": accepted[h].participant,
                "hash": h,
                "samples": accepted[h].samples,
                "weight": accepted[h].weight,
            }
            for h in sorted(accepted, key=lambda h: accepted[h].participant)
        ],
        manifest=base.manifest,
        size=len(data),
        committed_by=aggregator.id,
        tx_id=ctx.get_tx_id(),
        timestamp=ctx.get_tx_timestamp(),
        metrics=scores,
    )
    state.write(ctx, keys.MODEL, [model.hash], model)
    state.write(ctx, keys.MODEL_HEAD, [], {"hash": model.hash, "version": model.version})
    state.write(
        ctx,
        keys.ROUND,
        [keys.round_attr(record.number)],
        dataclasses.replace(record, status="aggregated", aggregate=model.hash),
    )
    emit(ctx, "AggregateCommitted", {"round": record.number, "model": model.hash, "version": model.version})
    return model
