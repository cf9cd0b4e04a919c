"""SubmitUpdate: the update bytes arrive as transient data; only their commitment is written."""

from __future__ import annotations

from fedledger.anomaly.features import update_features
from fedledger.chaincode import keys, share_protocol, state
from fedledger.chaincode.aggregation import Layout
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads, parse_float, parse_hash, parse_int, parse_json
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, RuleViolation
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.payloads import decode_payload, transient_bytes
from fedledger.chaincode.privacy_budget import DPParams, epsilon_of
from fedledger.chaincode.records import Participant, Round, Rules, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.lineage import require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.tensors import sha256_hex

UPDATE_FIELD = "update"
COMMITMENTS_FIELD = "commitments"  # shared rounds: JSON list of the SHA-256 of each organisation's share


def privacy_history(ctx: LedgerContext, participant_id: str) -> list[DPParams]:
    """The DP-SGD parameters of every update the participant ever submitted (accepted or not: it trained)."""
    entries = ctx.get_state_by_partial_composite_key(keys.PARTICIPANT_UPDATE, [participant_id])
    return [DPParams.parse(p) for _key, value in entries if (p := loads(value).get("privacy"))]


def epsilon_spent(ctx: LedgerContext, participant_id: str, rules: Rules) -> float:
    """ε of all the participant's DP updates composed with RDP at the rules' δ (derived, never a counter)."""
    return epsilon_of(privacy_history(ctx, participant_id), rules.dp_delta)


def rules_of(ctx: LedgerContext, record: Round) -> Rules:
    return state.require(
        ctx, Rules, keys.RULES, [keys.version_attr(record.rules_version)], f"rules version {record.rules_version}"
    )


def parse_privacy(text: str) -> DPParams | None:
    """The declared DP-SGD parameters (a JSON object), or None for "" / "{}" (no DP)."""
    data = parse_json("privacy", text or "{}", dict)
    return DPParams.parse(data) if data else None


def _check_budget(
    ctx: LedgerContext, trainer: Participant, rules: Rules, samples: int, privacy: DPParams | None
) -> tuple[float, float] | None:
    """Checks samples against the attestation and the composed ε against both budgets; returns this round's ε
    and the participant's composed ε with it (None without DP)."""
    if samples < rules.min_samples_per_update:
        raise RuleViolation(f"an update must use at least {rules.min_samples_per_update} samples, got {samples}")
    if samples > trainer.dataset_size:
        raise RuleViolation(
            f"samples ({samples}) exceed the dataset size its organisation's admin attested ({trainer.dataset_size})"
        )
    if privacy is None:
        if rules.require_dp:
            raise RuleViolation(
                "the rules require DP-SGD: declare noise_multiplier, sample_rate, steps, delta (accountant rdp)"
            )
        return None
    if privacy.delta > rules.dp_delta:
        raise RuleViolation(f"delta {privacy.delta} is larger than the rules allow ({rules.dp_delta})")
    epsilon = epsilon_of([privacy], privacy.delta)
    if epsilon > rules.epsilon_per_round:
        raise RuleViolation(
            f"these DP-SGD parameters spend epsilon {epsilon:.4g} in one round (RDP accountant); the per-round "
            f"budget is {rules.epsilon_per_round}"
        )
    total = epsilon_of([*privacy_history(ctx, trainer.id), privacy], rules.dp_delta)
    if total > rules.epsilon_total:
        raise RuleViolation(
            f"this update would bring {trainer.id}'s composed epsilon to {total:.4g} at delta {rules.dp_delta}, over "
            f"the budget {rules.epsilon_total}"
        )
    return epsilon, total


@transaction("SubmitUpdate")
def submit_update(ctx: LedgerContext, round_number: str, samples: str, privacy: str, train_loss: str) -> Update:
    """``privacy``: the DP-SGD parameters of this round's training as JSON ({noise_multiplier, sample_rate,
    steps, delta, accountant}), or "" without DP; the contract computes ε from them, never takes it as given."""
    trainer = require_participant(ctx, "trainer")
    number = parse_round(round_number)
    n_samples = parse_int("samples", samples, minimum=1)
    dp = parse_privacy(privacy)
    loss = parse_float("train_loss", train_loss)
    record = require_round(ctx, number)
    now = ctx.get_tx_timestamp()
    if record.status != "open":
        raise FailedPrecondition(f"round {number} is {record.status}; updates are accepted only while it is open")
    if now >= record.deadline:
        raise FailedPrecondition(f"round {number} passed its deadline ({record.deadline}); the update is too late")
    if state.read(ctx, Update, keys.UPDATE, [keys.round_attr(number), trainer.id]) is not None:
        raise AlreadyExists(f"{trainer.id} already submitted an update for round {number}")
    rules = rules_of(ctx, record)
    spent = _check_budget(ctx, trainer, rules, n_samples, dp)
    if record.shared:
        commitments = _share_commitments(ctx, record)
        digest = share_protocol.commitments_digest(commitments)
        _refuse_copy(ctx, number, digest)
        update = Update(
            round=number,
            participant=trainer.id,
            hash=digest,
            size=0,
            samples=n_samples,
            epsilon=spent[0] if spent else None,
            epsilon_spent=spent[1] if spent else None,
            privacy=dp.to_dict() if dp else {},
            train_loss=loss,
            features={},  # the holders' share sketches, added up at FinalizeRound
            submitted_at=now,
            tx_id=ctx.get_tx_id(),
            trust_at_submit=trainer.trust,
            share_commitments=commitments,
        )
        return _record(ctx, update, dp)

    data = transient_bytes(ctx, UPDATE_FIELD, max_bytes=rules.max_update_bytes)
    base_manifest = require_model(ctx, record.base_model).manifest
    parsed = decode_payload(data, "update", expected=base_manifest)
    digest = sha256_hex(data)
    _refuse_copy(ctx, number, digest)
    features = update_features(parsed, sketch_dim=rules.sketch_dim)
    if features["l2_norm"] > rules.max_update_norm:
        raise RuleViolation(f"update L2 norm {features['l2_norm']:.4g} exceeds the bound {rules.max_update_norm}")

    update = Update(
        round=number,
        participant=trainer.id,
        hash=digest,
        size=len(data),
        samples=n_samples,
        epsilon=spent[0] if spent else None,
        epsilon_spent=spent[1] if spent else None,
        privacy=dp.to_dict() if dp else {},
        train_loss=loss,
        features=features,
        submitted_at=now,
        tx_id=ctx.get_tx_id(),
        trust_at_submit=trainer.trust,
        # what CommitAggregate checks each chunk of these bytes against (chaincode.aggregation)
        chunk_hashes=Layout(base_manifest).chunk_hashes(parsed, rules.aggregate_chunk_elements),
    )
    return _record(ctx, update, dp)


def _refuse_copy(ctx: LedgerContext, number: int, digest: str) -> None:
    # A point read of one key per (round, bytes): two members with different updates never touch the same key,
    # so concurrent submissions in a block do not conflict; a copy of another member's update is refused.
    copied = ctx.get_state(keys.composite_key(keys.UPDATE_BYTES, [keys.round_attr(number), digest]))
    if copied is not None:
        raise AlreadyExists(
            f"round {number} already holds an update with these exact bytes (sha256 {digest}); "
            "submit the update you trained yourself"
        )


def _share_commitments(ctx: LedgerContext, record: Round) -> list[str]:
    """The member's share commitments (transient ``commitments``), one per holder; a shared round refuses the
    update itself, which no endorser may see."""
    if ctx.get_transient().get(UPDATE_FIELD):
        raise InvalidArgument(
            f"round {record.number} is secret-shared: send the commitments of your shares (transient "
            f"{COMMITMENTS_FIELD!r}), never the update; fedledger.trainer.Member does this"
        )
    text = transient_bytes(ctx, COMMITMENTS_FIELD, max_bytes=100 * (len(record.share_holders) + 1))
    try:
        commitments = parse_json(COMMITMENTS_FIELD, text.decode("utf-8"), list)
    except UnicodeDecodeError:
        raise InvalidArgument(f"{COMMITMENTS_FIELD!r} must be a JSON list of SHA-256 hex digests") from None
    if len(commitments) != len(record.share_holders):
        raise InvalidArgument(
            f"round {record.number} has {len(record.share_holders)} share holders "
            f"({', '.join(h['org'] for h in record.share_holders)}); got {len(commitments)} commitment(s)"
        )
    return [parse_hash(f"commitment {i}", str(c)) for i, c in enumerate(commitments)]


def _record(ctx: LedgerContext, update: Update, dp: DPParams | None) -> Update:
    number, participant = update.round, update.participant
    state.write(ctx, keys.UPDATE, [keys.round_attr(number), participant], update)
    state.write(
        ctx,
        keys.PARTICIPANT_UPDATE,
        [participant, keys.round_attr(number)],
        {"privacy": dp.to_dict() if dp else {}, "hash": update.hash},
    )
    state.write(ctx, keys.UPDATE_BYTES, [keys.round_attr(number), update.hash], {"participant": participant})
    emit(ctx, "UpdateSubmitted", {"round": number, "participant": participant, "hash": update.hash})
    return update


def require_update(ctx: LedgerContext, number: int, participant_id: str) -> Update:
    return state.require(
        ctx,
        Update,
        keys.UPDATE,
        [keys.round_attr(number), participant_id],
        f"update of {participant_id} in round {number}",
    )


def round_updates(ctx: LedgerContext, number: int) -> list[Update]:
    return list(state.scan(ctx, Update, keys.UPDATE, [keys.round_attr(number)]))


@transaction("GetUpdate", submit=False)
def get_update(ctx: LedgerContext, round_number: str, participant_id: str) -> Update:
    return require_update(ctx, parse_round(round_number), participant_id)


@transaction("ListUpdates", submit=False)
def list_updates(ctx: LedgerContext, round_number: str) -> list[Update]:
    return round_updates(ctx, parse_round(round_number))
