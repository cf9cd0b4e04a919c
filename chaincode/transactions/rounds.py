"""OpenRound, CloseRound, AbandonRound and round queries. Rounds are opened by an aggregator."""

from __future__ import annotations

import dataclasses

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads, parse_float, parse_hash, parse_int, parse_text
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules, require_participant
from fedledger.chaincode.records import Dispute, Participant, Round, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.share_state import close_shared, share_holders

DONE = ("aggregated", "abandoned")


def require_round(ctx: LedgerContext, number: int) -> Round:
    return state.require(ctx, Round, keys.ROUND, [keys.round_attr(number)], f"round {number}")


def parse_round(text: str) -> int:
    return parse_int("round", text, minimum=1)


@transaction("OpenRound")
def open_round(ctx: LedgerContext, round_number: str, base_model_hash: str, deadline: str, rules_version: str) -> Round:
    aggregator = require_participant(ctx, "aggregator")
    number = parse_round(round_number)
    base = parse_hash("base_model_hash", base_model_hash)
    due = parse_float("deadline", deadline)
    version = parse_int("rules_version", rules_version, minimum=1)
    rules = current_rules(ctx)
    now = ctx.get_tx_timestamp()
    if version != rules.version:
        raise FailedPrecondition(f"rules version {version} is not current; the current version is {rules.version}")
    if due <= now:
        raise InvalidArgument(f"deadline {due} is not in the future (transaction time {now})")
    if state.read(ctx, Round, keys.ROUND, [keys.round_attr(number)]) is not None:
        raise AlreadyExists(f"round {number} already exists")
    if number > 1:
        previous = state.read(ctx, Round, keys.ROUND, [keys.round_attr(number - 1)])
        if previous is None or previous.status not in DONE:
            raise FailedPrecondition(f"round {number - 1} must be aggregated or abandoned before round {number} opens")
    head = ctx.get_state(keys.composite_key(keys.MODEL_HEAD, []))
    if head is None:
        raise FailedPrecondition("no model is registered; call RegisterGenesisModel first")
    latest = loads(head)["hash"]
    if base != latest:
        raise FailedPrecondition(f"base model {base} is not the latest global model {latest}")
    record = Round(
        number=number,
        base_model=base,
        deadline=due,
        rules_version=version,
        status="open",
        opened_by=aggregator.id,
        opened_at=now,
        reward_pool=rules.reward_per_round,
        expected=[
            p.id
            for p in state.scan(ctx, Participant, keys.PARTICIPANT, [])
            if p.role == "trainer" and p.status == "active" and p.mspid in rules.member_msps
        ],
    )
    holders = share_holders(ctx, rules)
    if holders:
        record = dataclasses.replace(record, share_holders=holders, share_scale=rules.share_scale)
    state.write(ctx, keys.ROUND, [keys.round_attr(number)], record)
    emit(
        ctx,
        "RoundOpened",
        {"round": number, "base_model": base, "deadline": due, "share_holders": [h["org"] for h in holders]},
    )
    return record


def missing_submissions(ctx: LedgerContext, record: Round) -> list[str]:
    """Expected trainers of an open round that have not submitted yet."""
    submitted = {
        loads(v)["participant"]
        for _k, v in ctx.get_state_by_partial_composite_key(keys.UPDATE, [keys.round_attr(record.number)])
    }
    return [p for p in record.expected if p not in submitted]


def close_round_now(ctx: LedgerContext, number: int, by: str) -> Round:
    record = require_round(ctx, number)
    if record.status != "open":
        raise FailedPrecondition(f"round {record.number} is {record.status}, not open")
    closed = dataclasses.replace(record, status="closed", closed_at=ctx.get_tx_timestamp(), closed_by=by)
    if record.shared:
        closed = close_shared(ctx, closed, list(state.scan(ctx, Update, keys.UPDATE, [keys.round_attr(number)])))
    state.write(ctx, keys.ROUND, [keys.round_attr(record.number)], closed)
    emit(ctx, "RoundClosed", {"round": record.number, "by": by})
    return closed


def require_closable(ctx: LedgerContext, record: Round) -> None:
    """An open round closes at its deadline, or earlier once every expected trainer submitted; otherwise only
    a quorum of organisations may close it early (ProposeEarlyClose), so no aggregator can shut out late members."""
    if ctx.get_tx_timestamp() >= record.deadline:
        return
    missing = missing_submissions(ctx, record)
    if missing:
        raise FailedPrecondition(
            f"round {record.number} is open until {record.deadline} and {len(missing)} expected trainer(s) have not "
            f"submitted ({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); wait for the deadline, or "
            "have a quorum of organisations approve ProposeEarlyClose"
        )


@transaction("CloseRound")
def close_round(ctx: LedgerContext, round_number: str) -> Round:
    aggregator = require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    if record.status != "open":
        raise FailedPrecondition(f"round {record.number} is {record.status}, not open")
    require_closable(ctx, record)
    return close_round_now(ctx, record.number, aggregator.id)


@transaction("AbandonRound")
def abandon_round(ctx: LedgerContext, round_number: str, reason: str) -> Round:
    """Ends a round that cannot produce a model: too few submissions, or nothing accepted."""
    require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    nothing_accepted = record.status == "finalized" and not record.accepted
    if record.status not in ("open", "closed") and not nothing_accepted:
        raise FailedPrecondition(
            f"round {record.number} is {record.status}; only open, closed, or finalized rounds with no "
            "accepted update can be abandoned"
        )
    text = parse_text("a reason", reason, max_bytes=current_rules(ctx).max_text_bytes)
    if any(d.status == "open" for d in state.scan(ctx, Dispute, keys.DISPUTE, [keys.round_attr(record.number)])):
        raise FailedPrecondition(f"round {record.number} has open disputes; resolve them before abandoning it")
    ended = dataclasses.replace(record, status="abandoned", closed_at=record.closed_at or ctx.get_tx_timestamp())
    state.write(ctx, keys.ROUND, [keys.round_attr(record.number)], ended)
    emit(ctx, "RoundAbandoned", {"round": record.number, "reason": text})
    return ended


@transaction("GetRound", submit=False)
def get_round(ctx: LedgerContext, round_number: str) -> Round:
    return require_round(ctx, parse_round(round_number))


@transaction("ListRounds", submit=False)
def list_rounds(ctx: LedgerContext) -> list[Round]:
    return list(state.scan(ctx, Round, keys.ROUND, []))
