"""The per-organisation state of a secret-shared round, shared by the round and share transactions."""

from __future__ import annotations

import dataclasses

from fedledger import shares
from fedledger.chaincode import keys, share_protocol, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.records import OrgShares, Round, Rules, ShareKey, Update


def share_holders(ctx: LedgerContext, rules: Rules) -> list[dict[str, str]]:
    """The organisations a round opened now splits updates across: the member organisations with a share key,
    by name (the share index), or ``[]`` (plaintext mode) when the rules turn sharing off or fewer than two
    organisations hold a key."""
    if not rules.secure_aggregation:
        return []
    registered = {k.org: k for k in state.scan(ctx, ShareKey, keys.SHARE_KEY, [])}
    holders = [{"org": org, "key_id": registered[org].key_id} for org in sorted(rules.member_msps) if org in registered]
    return holders if len(holders) >= shares.MIN_SHARES else []


# -- the round's per-organisation records -------------------------------------------------------------------------


def org_key(number: int, org: str) -> str:
    return keys.composite_key(keys.ORG_SHARES, [keys.round_attr(number), org])


def start_org_records(ctx: LedgerContext, record: Round) -> None:
    """At CloseRound: one ``OrgShares`` per holder, writable from now on by that organisation's peers only."""
    for index, holder in enumerate(record.share_holders):
        key = org_key(record.number, holder["org"])
        part = OrgShares(round=record.number, org=holder["org"], index=index, key_id=holder["key_id"])
        state.write(ctx, keys.ORG_SHARES, [keys.round_attr(record.number), holder["org"]], part)
        ctx.set_key_endorsers(key, [holder["org"]])


def org_records(ctx: LedgerContext, number: int) -> list[OrgShares]:
    """The round's organisation records, in share-index order."""
    return sorted(state.scan(ctx, OrgShares, keys.ORG_SHARES, [keys.round_attr(number)]), key=lambda p: p.index)


def close_shared(ctx: LedgerContext, record: Round, updates: list[Update]) -> Round:
    """CloseRound of a shared round: fixes the sketch seed now that every share is committed, and opens one
    ``OrgShares`` per holder for its sketches and sum."""
    seed = share_protocol.sketch_seed(record.number, [u.hash for u in updates], ctx.get_tx_id())
    start_org_records(ctx, record)
    return dataclasses.replace(record, sketch_seed=seed)
