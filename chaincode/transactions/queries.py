"""Read-only queries: participants, anomalies, disputes, balances and any record's history."""

from __future__ import annotations

from typing import Any

from fedledger.chaincode import keys, state
from fedledger.chaincode.caller import caller_of
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads, parse_hash
from fedledger.chaincode.errors import InvalidArgument
from fedledger.chaincode.guards import current_rules
from fedledger.chaincode.records import Anomaly, Dispute, Participant, Payout, Vote
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.disputes import require_dispute
from fedledger.chaincode.transactions.rounds import parse_round
from fedledger.chaincode.transactions.updates import epsilon_spent


@transaction("GetParticipant", submit=False)
def get_participant(ctx: LedgerContext, participant_id: str) -> Participant:
    return state.require(ctx, Participant, keys.PARTICIPANT, [participant_id], f"participant {participant_id}")


@transaction("ListParticipants", submit=False)
def list_participants(ctx: LedgerContext) -> list[Participant]:
    return list(state.scan(ctx, Participant, keys.PARTICIPANT, []))


@transaction("WhoAmI", submit=False)
def who_am_i(ctx: LedgerContext) -> dict[str, Any]:
    caller = caller_of(ctx.get_creator())
    participant = state.read(ctx, Participant, keys.PARTICIPANT, [caller.id])
    return {
        "id": caller.id,
        "mspid": caller.mspid,
        "admin": caller.is_admin,
        "participant": participant,
    }


@transaction("ListAnomalies", submit=False)
def list_anomalies(ctx: LedgerContext, round_number: str = "") -> list[Anomaly]:
    attrs = [keys.round_attr(parse_round(round_number))] if round_number else []
    return list(state.scan(ctx, Anomaly, keys.ANOMALY, attrs))


@transaction("GetDispute", submit=False)
def get_dispute(ctx: LedgerContext, round_number: str, participant_id: str) -> Dispute:
    return require_dispute(ctx, parse_round(round_number), participant_id)


@transaction("ListDisputes", submit=False)
def list_disputes(ctx: LedgerContext, round_number: str = "") -> list[Dispute]:
    attrs = [keys.round_attr(parse_round(round_number))] if round_number else []
    return list(state.scan(ctx, Dispute, keys.DISPUTE, attrs))


@transaction("ListVotes", submit=False)
def list_votes(ctx: LedgerContext, round_number: str, participant_id: str) -> list[Vote]:
    return list(state.scan(ctx, Vote, keys.VOTE, [keys.round_attr(parse_round(round_number)), participant_id]))


@transaction("GetBalance", submit=False)
def get_balance(ctx: LedgerContext, participant_id: str) -> dict[str, Any]:
    """Balance = sum of the participant's payouts (derived at read time, never a counter)."""
    payouts = list(state.scan(ctx, Payout, keys.PAYOUT, [participant_id]))
    return {
        "participant": participant_id,
        "balance": sum(p.amount for p in payouts),
        "payouts": payouts,
        "epsilon_spent": epsilon_spent(ctx, participant_id, current_rules(ctx)),
    }


@transaction("ListBalances", submit=False)
def list_balances(ctx: LedgerContext) -> dict[str, int]:
    balances: dict[str, int] = {}
    for payout in state.scan(ctx, Payout, keys.PAYOUT, []):
        balances[payout.participant] = balances.get(payout.participant, 0) + payout.amount
    return balances


_HISTORY_KEYS = {
    "rules": (keys.RULES, 0),
    "participant": (keys.PARTICIPANT, 1),
    "round": (keys.ROUND, 1),
    "update": (keys.UPDATE, 2),
    "anomaly": (keys.ANOMALY, 2),
    "payout": (keys.PAYOUT, 2),
    "dispute": (keys.DISPUTE, 2),
    "model": (keys.MODEL, 1),
}


def _history_attrs(kind: str, ids: list[str]) -> list[str]:
    _object_type, arity = _HISTORY_KEYS[kind]
    if len(ids) != arity:
        raise InvalidArgument(f"history of a {kind} takes {arity} id(s), got {len(ids)}")
    if kind == "rules":
        return ["current"]
    if kind in ("round", "update", "anomaly", "dispute"):
        return [keys.round_attr(parse_round(ids[0])), *ids[1:]]
    if kind == "payout":
        return [ids[0], keys.round_attr(parse_round(ids[1]))]
    if kind == "model":
        return [parse_hash("model_hash", ids[0])]
    return ids


@transaction("GetHistory", submit=False)
def get_history(ctx: LedgerContext, kind: str, first_id: str = "", second_id: str = "") -> list[dict[str, Any]]:
    """Every committed version of one record, oldest first, with its transaction id and time.

    kind: rules | participant <id> | round <n> | update <n> <participant> | anomaly <n> <participant>
    | payout <participant> <n> | dispute <n> <participant> | model <hash>
    """
    if kind not in _HISTORY_KEYS:
        raise InvalidArgument(f"kind must be one of {', '.join(sorted(_HISTORY_KEYS))}; got {kind!r}")
    ids = [i for i in (first_id, second_id) if i]
    key = keys.composite_key(_HISTORY_KEYS[kind][0], _history_attrs(kind, ids))
    return [
        {
            "tx_id": entry.tx_id,
            "timestamp": entry.timestamp,
            "is_delete": entry.is_delete,
            "value": None if entry.is_delete or not entry.value else loads(entry.value),
        }
        for entry in ctx.get_history_for_key(key)
    ]
