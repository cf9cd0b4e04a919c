"""Time the submitter cannot move.

The contract judges deadlines, dispute windows and certificate validity by ``get_tx_timestamp``. On Fabric that
is the client's proposal timestamp, which peers do not check; so every endorsing peer refuses a submission
whose timestamp is further than ``max_clock_skew_seconds`` from its own clock (``clock_skew``). On the
embedded ledger the ledger stamps the transaction with its own clock, and refuses a skewed proposal too.

Why this keeps endorsement deterministic: the check writes nothing and adds to the read set only the rules
key, which the transaction reads anyway. Two peers whose clocks differ either endorse with the very same
read/write set (the one the proposal's timestamp determines) or one of them refuses to endorse at all; a
refusal is a missing endorsement, never a different result. The endorsement policy then decides: a proposal
only some peers find plausible cannot collect a majority of organisations' endorsements.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.errors import ClockSkew, PermissionDenied
from fedledger.chaincode.records import Rules


def check_clock(ctx: LedgerContext) -> None:
    rules = state.read(ctx, Rules, keys.RULES, ["current"]) or Rules()
    skew = ctx.clock_skew()
    if abs(skew) > rules.max_clock_skew_seconds:
        direction = "ahead of" if skew > 0 else "behind"
        raise ClockSkew(
            f"the proposal is stamped {abs(skew):.0f} s {direction} this endorser's clock (at most "
            f"{rules.max_clock_skew_seconds:.0f} s allowed); synchronise the client's clock (NTP) and resubmit"
        )


def check_certificate_time(ctx: LedgerContext) -> None:
    """The creator's certificate must be valid at the transaction's time (the bounded one, see above)."""
    try:
        cert = x509.load_pem_x509_certificate(ctx.get_creator().cert_pem)
    except ValueError:
        return  # an unparsable certificate is refused by caller_of with its own message
    at = dt.datetime.fromtimestamp(ctx.get_tx_timestamp(), dt.UTC)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise PermissionDenied(
            f"the creator's certificate is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not at {at:%Y-%m-%d %H:%M} UTC; renew it with the "
            "organisation's CA"
        )
