"""RegisterGenesisModel and model lineage queries."""

from __future__ import annotations

from fedledger.chaincode import keys, state
from fedledger.chaincode.aggregation import Layout
from fedledger.chaincode.caller import caller_of
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads, parse_hash, parse_text
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, NotFound
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules, require_participant
from fedledger.chaincode.payloads import decode_payload, transient_bytes
from fedledger.chaincode.records import ModelVersion
from fedledger.chaincode.registry import transaction
from fedledger.tensors import manifest, sha256_hex

MODEL_FIELD = "model"


@transaction("RegisterGenesisModel")
def register_genesis_model(ctx: LedgerContext, name: str) -> ModelVersion:
    """Records the starting adapter (transient ``model``): its hash, chunk hashes and tensor manifest, version 0;
    its optimiser state is zero (no ``optimizer_state``)."""
    rules = current_rules(ctx)
    name = parse_text("the model name", name, max_bytes=rules.max_text_bytes)
    caller = caller_of(ctx.get_creator())
    if not (caller.is_admin and caller.mspid in rules.admin_msps):
        require_participant(ctx, "aggregator")
    if ctx.get_state(keys.composite_key(keys.MODEL_HEAD, [])) is not None:
        raise AlreadyExists("a genesis model is already registered; new versions come from CommitAggregate")
    data = transient_bytes(ctx, MODEL_FIELD, max_bytes=rules.max_update_bytes)
    parsed = decode_payload(data, "model")
    shape = manifest(parsed)
    model = ModelVersion(
        hash=sha256_hex(data),
        version=0,
        parent=None,
        round=None,
        updates=[],
        manifest=shape,
        size=len(data),
        committed_by=caller.id,
        tx_id=ctx.get_tx_id(),
        timestamp=ctx.get_tx_timestamp(),
        name=name,
        chunk_elements=rules.aggregate_chunk_elements,
        chunk_hashes=Layout(shape).chunk_hashes(parsed, rules.aggregate_chunk_elements),
    )
    state.write(ctx, keys.MODEL, [model.hash], model)
    state.write(ctx, keys.MODEL_HEAD, [], {"hash": model.hash, "version": 0})
    emit(ctx, "GenesisModelRegistered", {"model": model.hash, "name": name})
    return model


def require_model(ctx: LedgerContext, model_hash: str) -> ModelVersion:
    return state.require(ctx, ModelVersion, keys.MODEL, [model_hash], f"model {model_hash}")


@transaction("GetModel", submit=False)
def get_model(ctx: LedgerContext, model_hash: str) -> ModelVersion:
    return require_model(ctx, parse_hash("model_hash", model_hash))


@transaction("GetLatestModel", submit=False)
def get_latest_model(ctx: LedgerContext) -> ModelVersion:
    head = ctx.get_state(keys.composite_key(keys.MODEL_HEAD, []))
    if head is None:
        raise NotFound("no model is registered yet; call RegisterGenesisModel first")
    return require_model(ctx, loads(head)["hash"])


@transaction("GetLineage", submit=False)
def get_lineage(ctx: LedgerContext, model_hash: str) -> list[ModelVersion]:
    """The model and its ancestors back to the genesis model, newest first."""
    chain = [require_model(ctx, parse_hash("model_hash", model_hash))]
    while chain[-1].parent is not None:
        if len(chain) > 100_000:
            raise FailedPrecondition("lineage is cyclic")
        chain.append(require_model(ctx, chain[-1].parent))
    return chain
