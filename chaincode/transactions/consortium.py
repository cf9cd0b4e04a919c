"""InitConsortium and GetRules: versioned participation rules (changes are proposals: governance.py)."""

from __future__ import annotations

import dataclasses

from fedledger.chaincode import keys, state
from fedledger.chaincode.caller import caller_of
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_int, parse_json
from fedledger.chaincode.errors import AlreadyExists, PermissionDenied
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules
from fedledger.chaincode.records import Rules
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.rules import apply_patch
from fedledger.chaincode.transactions.governance import store_rules


@transaction("InitConsortium")
def init_consortium(ctx: LedgerContext, rules_json: str = "{}") -> Rules:
    """Creates rules version 1. The caller's organisation becomes an admin organisation."""
    if state.read(ctx, Rules, keys.RULES, ["current"]) is not None:
        raise AlreadyExists("the consortium is already initialised; use UpdateRules to change its rules")
    caller = caller_of(ctx.get_creator())
    if not caller.is_admin:
        raise PermissionDenied(f"{caller.id} is not an admin identity (needs OU=admin) and cannot initialise")
    patch = parse_json("rules", rules_json, dict)
    rules = apply_patch(Rules(), patch)
    rules = dataclasses.replace(
        rules,
        version=1,
        admin_msps=sorted({*rules.admin_msps, caller.mspid}),
        member_msps=sorted({*rules.member_msps, caller.mspid}),
        created_at=ctx.get_tx_timestamp(),
        created_by=caller.id,
    )
    store_rules(ctx, rules)
    emit(ctx, "ConsortiumInitialised", {"version": 1, "by": caller.id})
    return rules


@transaction("GetRules", submit=False)
def get_rules(ctx: LedgerContext, version: str = "") -> Rules:
    if not version:
        return current_rules(ctx)
    number = parse_int("version", version, minimum=1)
    return state.require(ctx, Rules, keys.RULES, [keys.version_attr(number)], f"rules version {number}")
