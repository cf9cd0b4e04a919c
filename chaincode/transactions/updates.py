"""SubmitUpdate: the update bytes arrive as transient data; only their commitment is written."""

from __future__ import annotations

from fedledger.anomaly.features import update_features
from fedledger.chaincode import keys, state
from fedledger.chaincode.aggregation import Layout
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads, parse_float, parse_int
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, RuleViolation
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.payloads import decode_payload, transient_bytes
from fedledger.chaincode.records import Participant, Round, Rules, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.lineage import require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.tensors import sha256_hex

UPDATE_FIELD = "update"


def epsilon_spent(ctx: LedgerContext, participant_id: str) -> float:
    """Total ε of every update the participant ever submitted (derived, never a counter)."""
    entries = ctx.get_state_by_partial_composite_key(keys.PARTICIPANT_UPDATE, [participant_id])
    return sum(loads(value)["epsilon"] for _key, value in entries)


def rules_of(ctx: LedgerContext, record: Round) -> Rules:
    return state.require(
        ctx, Rules, keys.RULES, [keys.version_attr(record.rules_version)], f"rules version {record.rules_version}"
    )


def _check_budget(ctx: LedgerContext, trainer: Participant, rules: Rules, samples: int, epsilon: float) -> None:
    if samples < rules.min_samples_per_update:
        raise RuleViolation(f"an update must use at least {rules.min_samples_per_update} samples, got {samples}")
    if samples > trainer.dataset_size:
        raise RuleViolation(f"samples ({samples}) exceed the attested dataset size ({trainer.dataset_size})")
    if epsilon > rules.epsilon_per_round:
        raise RuleViolation(f"epsilon {epsilon} exceeds the per-round budget {rules.epsilon_per_round}")
    spent = epsilon_spent(ctx, trainer.id)
    if spent + epsilon > rules.epsilon_total + 1e-12:
        raise RuleViolation(
            f"epsilon {epsilon} would bring the total to {spent + epsilon:.4g}, over the budget {rules.epsilon_total}"
        )


@transaction("SubmitUpdate")
def submit_update(ctx: LedgerContext, round_number: str, samples: str, epsilon: str, train_loss: str) -> Update:
    trainer = require_participant(ctx, "trainer")
    number = parse_round(round_number)
    n_samples = parse_int("samples", samples, minimum=1)
    eps = parse_float("epsilon", epsilon, minimum=0.0)
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
    _check_budget(ctx, trainer, rules, n_samples, eps)

    data = transient_bytes(ctx, UPDATE_FIELD, max_bytes=rules.max_update_bytes)
    base_manifest = require_model(ctx, record.base_model).manifest
    parsed = decode_payload(data, "update", expected=base_manifest)
    digest = sha256_hex(data)
    # A point read of one key per (round, bytes): two members with different updates never touch the same key,
    # so concurrent submissions in a block do not conflict; a copy of another member's update is refused.
    copied = ctx.get_state(keys.composite_key(keys.UPDATE_BYTES, [keys.round_attr(number), digest]))
    if copied is not None:
        raise AlreadyExists(
            f"round {number} already holds an update with these exact bytes (sha256 {digest}); "
            "submit the update you trained yourself"
        )
    features = update_features(parsed, sketch_dim=rules.sketch_dim)
    if features["l2_norm"] > rules.max_update_norm:
        raise RuleViolation(f"update L2 norm {features['l2_norm']:.4g} exceeds the bound {rules.max_update_norm}")

    update = Update(
        round=number,
        participant=trainer.id,
        hash=digest,
        size=len(data),
        samples=n_samples,
        epsilon=eps,
        train_loss=loss,
        features=features,
        submitted_at=now,
        tx_id=ctx.get_tx_id(),
        trust_at_submit=trainer.trust,
        # what CommitAggregate checks each chunk of these bytes against (chaincode.aggregation)
        chunk_hashes=Layout(base_manifest).chunk_hashes(parsed, rules.aggregate_chunk_elements),
    )
    state.write(ctx, keys.UPDATE, [keys.round_attr(number), trainer.id], update)
    state.write(
        ctx, keys.PARTICIPANT_UPDATE, [trainer.id, keys.round_attr(number)], {"epsilon": eps, "hash": update.hash}
    )
    state.write(ctx, keys.UPDATE_BYTES, [keys.round_attr(number), digest], {"participant": trainer.id})
    emit(ctx, "UpdateSubmitted", {"round": number, "participant": trainer.id, "hash": update.hash})
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
