"""CommitAggregate recomputes the aggregate (issue 10, "Trust that holds"): the endorsing peers rebuild the new model
from the base model and exactly the accepted updates, whose bytes arrive as transient data checked chunk by chunk
against their on-chain hashes, and refuse any other model. On both ledgers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from fedledger.chaincode.aggregation import (
    BASE_FIELD,
    M_FIELD,
    MODEL_FIELD,
    OPTIMIZER_FIELD,
    Layout,
    decode_moments,
    encode_moments,
    update_field,
)
from fedledger.chaincode.errors import (
    ContractError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    RuleViolation,
)
from fedledger.sdk.aggregate import AggregateInputs
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.errors import EndorseError
from fedledger.tensors import decode, encode
from fedledger.trainer.aggregate import FedAdamState
from fedledger.trainer.strategy import FedAdam, FedAvg

from ..aggregates import commit_round, honest_aggregate, optimizer_bytes, payload, round_inputs
from ..support import (
    Consortium,
    UpdateFactory,
    change_rules,
    dp,
    enrol,
    grant,
    only_on,
    ready_round,
    tensors_bytes,
    world,
)
from .test_disputes import ATTACKER, judge

#: No detection below 10 updates: every update is accepted, the weights still differ (samples, per-org caps).
RULES = {"detector_min_updates": 10}
FEDADAM = {**RULES, "server_optimizer": "fedadam", "fedadam_eta": 0.05}


def play_round(
    consortium: Consortium,
    updates: UpdateFactory,
    *,
    rules: dict[str, Any] | None = None,
    trainers: int = 4,
) -> tuple[FedLedgerClient, list[FedLedgerClient]]:
    """Round 1 finalized: ``trainers`` honest updates with different sample counts, all accepted."""
    aggregator, members, _genesis = ready_round(consortium, trainers=trainers, rules={**RULES, **(rules or {})})
    submit_all(aggregator, members, updates, 1)
    return aggregator, members


def submit_all(
    aggregator: FedLedgerClient, members: list[FedLedgerClient], updates: UpdateFactory, number: int
) -> None:
    for i, member in enumerate(members):
        member.submit_update(number, updates.bytes(), samples=100 + 37 * i, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(number)
    assert len(aggregator.finalize_round(number).accepted) == len(members)


def next_round(
    aggregator: FedLedgerClient, members: list[FedLedgerClient], updates: UpdateFactory, consortium: Consortium
) -> int:
    number = aggregator.rounds()[-1].number + 1
    aggregator.open_round(number, base_model=aggregator.latest_model().hash, deadline=consortium.now() + 3600)
    submit_all(aggregator, members, updates, number)
    return number


@contextmanager
def refused(consortium: Consortium, error: type[ContractError], match: str) -> Iterator[None]:
    """The transaction must raise the contract's ``error`` and leave the world state, the balances and the ledger
    (height and raw state embedded; the namespace's transactions on Fabric) as they were."""
    observer = consortium.admin()
    before = (world(observer), consortium.ledger_state())
    with pytest.raises(error, match=match) as caught:
        yield
    assert isinstance(caught.value, EndorseError)
    assert (world(observer), consortium.ledger_state()) == before


def one_value_off(model: bytes, name: str, index: int) -> bytes:
    """``model`` with one value moved to the next representable number (1 ulp)."""
    tensors = {k: v.copy() for k, v in decode(model).items()}
    flat = tensors[name].reshape(-1)
    flat[index] = np.nextafter(flat[index], flat.dtype.type(np.inf))
    return tensors_bytes(tensors)


def raw_commit(aggregator: FedLedgerClient, number: int, transient: dict[str, bytes], hashes: list[str]) -> Any:
    """CommitAggregate with every chunk inline and exactly this transient data (no SDK help)."""
    return aggregator.contract.submit(
        "CommitAggregate", arguments=[number, json.dumps(sorted(hashes)), "{}", "0"], transient=transient
    )


def honest_transient(aggregator: FedLedgerClient, number: int) -> tuple[dict[str, bytes], list[str]]:
    """The transient data of a one-transaction honest commit of round ``number``, and the accepted hashes."""
    inputs = round_inputs(aggregator, number)
    cut = AggregateInputs.for_round(
        aggregator,
        number,
        base=inputs.base_bytes,
        updates=inputs.updates,
        base_moments=inputs.base_optimizer_state,
    )
    model, state = honest_aggregate(aggregator, number)
    transient = {MODEL_FIELD: model, **cut.transient(0, cut.chunks)}
    if state is not None:
        transient[OPTIMIZER_FIELD] = state
    return transient, [u.hash for u in inputs.accepted]


# -- FedAvg -------------------------------------------------------------------------------------------


def test_honest_fedavg_is_committed_and_is_the_trainers_fedavg_bit_for_bit(consortium, updates):
    aggregator, _ = play_round(consortium, updates)
    inputs = round_inputs(aggregator, 1)
    assert len({u.weight for u in inputs.accepted}) > 1  # the weights differ: the FedAvg factors matter
    base = decode(inputs.base_bytes, expected=inputs.base.manifest)
    deltas = [(decode(payload(u.hash)), u.weight) for u in inputs.accepted]  # in hash order, as the driver sends them
    model = encode(FedAvg().aggregate_fit(1, base, deltas), like=inputs.base.manifest)

    committed = commit_round(aggregator, 1, model=model, metrics={"accuracy": 0.9})

    assert committed.hash == hashlib.sha256(model).hexdigest()
    assert model == honest_aggregate(aggregator, 1)[0]  # the contract's arithmetic, bit for bit
    assert committed.chunk_hashes == Layout(inputs.base.manifest).chunk_hashes(decode(model), committed.chunk_elements)
    assert committed.server_optimizer == {"name": "fedavg", "server_lr": 1.0}
    assert committed.optimizer_state is None and committed.metrics == {"accuracy": 0.9}
    assert aggregator.round(1).status == "aggregated" and aggregator.latest_model() == committed


def test_a_model_one_value_away_from_fedavg_is_refused(consortium, updates):
    aggregator, _ = play_round(consortium, updates)
    honest, _ = honest_aggregate(aggregator, 1)
    forged = one_value_off(honest, "layer.1.lora_A", 17)
    with refused(consortium, RuleViolation, r"not the aggregate of round 1's accepted updates .*chunk 0 .*differs"):
        commit_round(aggregator, 1, model=forged)
    assert commit_round(aggregator, 1).hash == hashlib.sha256(honest).hexdigest()


def test_forged_update_or_base_bytes_are_refused(consortium, updates):
    aggregator, _ = play_round(consortium, updates)
    transient, hashes = honest_transient(aggregator, 1)
    victim = update_field(sorted(hashes)[1])
    other = update_field(sorted(hashes)[2])
    flipped = bytearray(transient[victim])
    flipped[5] ^= 0x01
    forgeries = {
        "a flipped bit": ({**transient, victim: bytes(flipped)}, rf"bytes sent for update {sorted(hashes)[1]}"),
        "another update's bytes": (
            {**transient, victim: transient[other]},
            "not its chunk 0 committed at SubmitUpdate",
        ),
        "another base": (
            {**transient, BASE_FIELD: bytes(len(transient[BASE_FIELD]) - 4) + b"\x00\x00\x80\x3f"},
            "not chunk 0 of base model",
        ),
        "a truncated update": ({**transient, victim: transient[victim][:-4]}, "must hold chunks 0..0"),
    }
    for forged, match in forgeries.values():
        with refused(consortium, InvalidArgument, match):
            raw_commit(aggregator, 1, forged, hashes)
    raw_commit(aggregator, 1, transient, hashes)
    assert aggregator.round(1).status == "aggregated"


def test_a_missing_accepted_update_is_refused(consortium, updates):
    aggregator, _ = play_round(consortium, updates)
    transient, hashes = honest_transient(aggregator, 1)
    left_out = sorted(hashes)[0]
    with refused(consortium, InvalidArgument, "exactly the 4 accepted updates"):
        commit_round(aggregator, 1, update_hashes=[h for h in hashes if h != left_out])
    without_bytes = {k: v for k, v in transient.items() if k != update_field(left_out)}
    with refused(consortium, InvalidArgument, rf"no 'update/{left_out}' in the transient data"):
        raw_commit(aggregator, 1, without_bytes, hashes)
    # the aggregate of the other three, claimed as the round's: the peers compute it with all four
    inputs = round_inputs(aggregator, 1)
    three = [(decode(payload(u.hash)), u.weight) for u in inputs.accepted if u.hash != left_out]
    partial = encode(FedAvg().aggregate_fit(1, decode(inputs.base_bytes), three), like=inputs.base.manifest)
    with refused(consortium, RuleViolation, "chunk 0 .*differs"):
        commit_round(aggregator, 1, model=partial)


# -- FedAdam: the optimiser state is committed with the model -----------------------------------------


def test_fedadam_commits_its_moments_and_refuses_a_tampered_optimizer_state(consortium, updates):
    aggregator, members = play_round(consortium, updates, rules=FEDADAM)
    strategy = FedAdam(eta=0.05)
    inputs = round_inputs(aggregator, 1)
    base = decode(inputs.base_bytes)
    model1 = encode(
        strategy.aggregate_fit(1, base, [(decode(payload(u.hash)), u.weight) for u in inputs.accepted]),
        like=inputs.base.manifest,
    )
    state1 = optimizer_bytes(strategy.moments.m, strategy.moments.v)
    assert (model1, state1) == honest_aggregate(aggregator, 1)  # the trainer's FedAdam is the contract's

    first = commit_round(aggregator, 1, model=model1, optimizer_state=state1)
    assert first.optimizer_state == hashlib.sha256(state1).hexdigest()
    assert sorted(first.optimizer_chunk_hashes) == ["m", "v"]
    assert first.server_optimizer == {"name": "fedadam", "eta": 0.05, "beta_1": 0.9, "beta_2": 0.99, "tau": 0.001}

    number = next_round(aggregator, members, updates, consortium)
    model2, state2 = honest_aggregate(aggregator, number)
    assert state2 is not None
    m, v = decode_moments(state2, first.manifest)
    name = sorted(m)[2]
    tampered_m = {**m, name: m[name] + np.float32(1e-3)}
    with refused(consortium, RuleViolation, r"optimizer state 'm' is not the aggregate .*chunk 0 .*differs"):
        commit_round(aggregator, number, model=model2, optimizer_state=encode_moments(tampered_m, v))
    # the base model's moments, forged: checked against model v1's optimiser-state chunks
    transient, hashes = honest_transient(aggregator, number)
    forged_m = bytearray(transient[M_FIELD])
    forged_m[0] ^= 0x01
    with refused(consortium, InvalidArgument, f"not chunk 0 of the optimiser state 'm' of model {first.hash}"):
        raw_commit(aggregator, number, {**transient, M_FIELD: bytes(forged_m)}, hashes)
    # an aggregator that lost its moments (restarted without its checkpoint) steps from zero: refused
    fresh = FedAdam(eta=0.05)
    inputs2 = round_inputs(aggregator, number)
    restarted = fresh.aggregate_fit(
        number, decode(inputs2.base_bytes), [(decode(payload(u.hash)), u.weight) for u in inputs2.accepted]
    )
    with refused(consortium, RuleViolation, "differs"):
        commit_round(
            aggregator,
            number,
            model=encode(restarted, like=first.manifest),
            optimizer_state=optimizer_bytes(fresh.moments.m, fresh.moments.v),
        )

    # the driver's strategy carries on from round 1's moments: its round 2 is the contract's
    strategy.aggregate_fit(number, decode(model1), [(decode(payload(u.hash)), u.weight) for u in inputs2.accepted])
    assert optimizer_bytes(strategy.moments.m, strategy.moments.v) == state2
    second = commit_round(aggregator, number)
    assert second.hash == hashlib.sha256(model2).hexdigest() and second.parent == first.hash
    assert second.optimizer_state == hashlib.sha256(state2).hexdigest()
    assert isinstance(strategy.moments, FedAdamState) and strategy.moments.step == 2


# -- chunks: several transactions, the same model -------------------------------------------------------


@pytest.mark.parametrize("budget", [pytest.param(None, id="one-shot"), pytest.param(9000, id="chunked")])
def test_chunked_commit_gives_the_one_shot_model(consortium, updates, budget):
    """1024 values in chunks of 100: 11 chunks. With a 9000-byte budget, AggregateChunks batches come first."""
    aggregator, _ = play_round(consortium, updates, rules={"aggregate_chunk_elements": 100})
    honest, _ = honest_aggregate(aggregator, 1)
    options = {} if budget is None else {"max_proposal_bytes": budget}
    if budget is not None:
        # a chunk whose input is missing, and a model off in a chunk AggregateChunks computed, are refused
        with refused(consortium, FailedPrecondition, r"chunk 0 of round 1's aggregate is not aggregated yet"):
            aggregator.contract.submit(
                "CommitAggregate",
                arguments=[1, json.dumps(sorted(round_inputs(aggregator, 1).updates)), "{}", "11"],
                transient={MODEL_FIELD: honest},
            )
        forged = one_value_off(honest, "layer.0.lora_B", 3)  # element 256 + 3: chunk 2
        with pytest.raises(RuleViolation, match=r"chunk 2 \(elements 200..299\) differs"):
            commit_round(aggregator, 1, model=forged, **options)
        assert len(aggregator.last_chunk_results) > 1
        assert aggregator.round(1).status == "finalized"

    committed = commit_round(aggregator, 1, **options)

    assert committed.hash == hashlib.sha256(honest).hexdigest()
    assert len(committed.chunk_hashes) == 11 and committed.chunk_elements == 100
    assert (len(aggregator.last_chunk_results) > 1) == (budget is not None)


def test_aggregate_chunks_refusals(consortium, updates):
    aggregator, members = play_round(consortium, updates, rules={"aggregate_chunk_elements": 100})
    inputs = round_inputs(aggregator, 1)
    cut = AggregateInputs.for_round(aggregator, 1, base=inputs.base_bytes, updates=inputs.updates)
    with refused(consortium, PermissionDenied, "needs role aggregator"):
        members[0].contract.submit("AggregateChunks", arguments=[1, 0, 1], transient=cut.transient(0, 1))
    with refused(consortium, InvalidArgument, r"has 11 chunk\(s\) \(0..10\); chunks 10..11 do not all exist"):
        aggregator.contract.submit("AggregateChunks", arguments=[1, 10, 2], transient=cut.transient(10, 1))
    with refused(consortium, InvalidArgument, "count must be >= 1"):
        aggregator.contract.submit("AggregateChunks", arguments=[1, 0, 0], transient=cut.transient(0, 1))
    chunks = json.loads(
        aggregator.contract.submit("AggregateChunks", arguments=[1, 3, 2], transient=cut.transient(3, 2)).result
    )
    honest, _ = honest_aggregate(aggregator, 1)
    expected = Layout(inputs.base.manifest).chunk_hashes(decode(honest), 100)
    assert [(c["chunk"], c["model"]) for c in chunks] == [(3, expected[3]), (4, expected[4])]


# -- the rules decide ------------------------------------------------------------------------------------


@only_on("embedded")
def test_a_new_chunk_size_applies_from_the_next_round(consortium, updates):
    """The base model keeps the chunk commitments of its own round: the peers check it in its chunks."""
    aggregator, members = play_round(consortium, updates, rules={"aggregate_chunk_elements": 100})
    first = commit_round(aggregator, 1)
    change_rules(consortium, {"aggregate_chunk_elements": 64})
    number = next_round(aggregator, members, updates, consortium)
    second = commit_round(aggregator, number, max_proposal_bytes=6000)
    assert (first.chunk_elements, second.chunk_elements) == (100, 64)
    assert len(second.chunk_hashes) == 16 and len(aggregator.last_chunk_results) > 1
    assert second.hash == hashlib.sha256(honest_aggregate(aggregator, number)[0]).hexdigest()


@only_on("embedded")
def test_a_mixed_precision_model_is_recomputed_in_each_tensors_dtype(consortium):
    """float16 and float32 tensors in one manifest: chunks straddle both; the result keeps each tensor's dtype."""
    rng = np.random.default_rng(3)
    shapes = {"a.f16": ((40, 10), np.float16), "b.f32": ((10, 30), np.float32)}
    genesis = tensors_bytes({k: rng.normal(size=s).astype(t) for k, (s, t) in shapes.items()})
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"], **RULES, "aggregate_chunk_elements": 128})
    aggregator = grant(consortium, "Org1MSP", "aggregator", "aggregator")
    base = aggregator.register_genesis_model(genesis, name="mixed")
    members = [enrol(consortium, org, f"mixed{i}") for i, org in enumerate(["Org1MSP", "Org2MSP", "Org1MSP"])]
    aggregator.open_round(1, base_model=base.hash, deadline=consortium.now() + 3600)
    for i, member in enumerate(members):
        delta = {k: (0.01 * rng.normal(size=s)).astype(t) for k, (s, t) in shapes.items()}
        member.submit_update(1, tensors_bytes(delta), samples=50 + i, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(1)
    aggregator.finalize_round(1)
    honest, _ = honest_aggregate(aggregator, 1)
    assert {k: v.dtype for k, v in decode(honest).items()} == {"a.f16": np.float16, "b.f32": np.float32}
    with refused(consortium, RuleViolation, "chunk 3 .*differs"):  # element 400 + 5 of 700
        commit_round(aggregator, 1, model=one_value_off(honest, "b.f32", 5))
    assert commit_round(aggregator, 1, max_proposal_bytes=3000).hash == hashlib.sha256(honest).hexdigest()


def test_chunks_aggregated_before_a_dispute_changed_the_accepted_set_do_not_count(consortium, updates):
    """Each chunk record carries the hash of its inputs: after an overturned rejection (five accepted updates, new
    weights) the chunks AggregateChunks computed from the four are refused, and the round is aggregated anew."""
    judged = judge(consortium, updates, {"aggregate_chunk_elements": 100})
    aggregator = judged.aggregator
    inputs = round_inputs(aggregator, 1)
    cut = AggregateInputs.for_round(aggregator, 1, base=inputs.base_bytes, updates=inputs.updates)
    aggregator.contract.submit("AggregateChunks", arguments=[1, 0, cut.chunks], transient=cut.transient(0, cut.chunks))
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn")
    judged.auditors["Org2MSP"].resolve_dispute(1, ATTACKER)
    five = round_inputs(aggregator, 1)
    assert len(five.accepted) == 5
    model, _ = honest_aggregate(aggregator, 1)
    stale = "chunk 0 of round 1's aggregate was aggregated from other inputs"
    with refused(consortium, FailedPrecondition, stale):
        aggregator.contract.submit(
            "CommitAggregate",
            arguments=[1, json.dumps(sorted(five.updates)), "{}", cut.chunks],
            transient={MODEL_FIELD: model},
        )
    committed = commit_round(aggregator, 1, max_proposal_bytes=9000)
    assert committed.hash == hashlib.sha256(model).hexdigest() and len(committed.updates) == 5
