"""chaincode/aggregation.py: the one aggregation arithmetic, whole or by chunk, and the SDK's plan of proposals."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fedledger.chaincode.aggregation import (
    Layout,
    ServerOptimizer,
    aggregate_state,
    aggregate_values,
    covering,
    decode_moments,
    encode_moments,
    moments_manifest,
)
from fedledger.chaincode.errors import InvalidArgument
from fedledger.chaincode.records import ModelVersion, Rules
from fedledger.chaincode.rules import apply_patch
from fedledger.sdk.aggregate import AggregateInputs
from fedledger.tensors import encode, manifest
from fedledger.trainer.aggregate import FedAdamState, apply_delta, fedadam_step, fedavg
from fedledger.trainer.strategy import FedAdam, FedAvg, StrategyMismatch, check_strategy, strategy_from_rules

FEDADAM = ServerOptimizer("fedadam", eta=0.05)
FEDAVG = ServerOptimizer("fedavg", server_lr=0.7)
MIXED = {"a": ((7, 9), np.float16), "b": ((33,), np.float32), "c": ((4, 5, 3), np.float64), "d": ((50,), np.float16)}


def states(shapes, n, seed=0):
    """A base state, ``n`` deltas with weights, and previous moments (float32) for ``shapes``."""
    rng = np.random.default_rng(seed)
    base = {k: rng.normal(size=s).astype(t) for k, (s, t) in shapes.items()}
    deltas = [
        ({k: (0.01 * rng.normal(size=s)).astype(t) for k, (s, t) in shapes.items()}, int(w))
        for w in rng.integers(1, 400_000, n)
    ]
    m = {k: (1e-3 * rng.normal(size=s)).astype(np.float32) for k, (s, _t) in shapes.items()}
    v = {k: (1e-6 * rng.random(size=s)).astype(np.float32) for k, (s, _t) in shapes.items()}
    return base, deltas, (m, v)


def chunked(base, deltas, optimizer, moments, chunk_elements):
    """The aggregate built chunk by chunk from chunk bytes, as the peers do; flat bytes of model, m, v."""
    layout, mlayout = Layout(manifest(base)), Layout.of_moments(manifest(base))
    flat_base = layout.flat_bytes(base)
    flat_deltas = [(layout.flat_bytes(d), w) for d, w in deltas]
    flat_m = mlayout.flat_bytes(moments[0]) if moments else None
    flat_v = mlayout.flat_bytes(moments[1]) if moments else None
    total = sum(w for _d, w in deltas)
    out, out_m, out_v = [], [], []
    for k in range(layout.chunk_count(chunk_elements)):
        a, b = layout.chunk_range(k, chunk_elements)
        x = layout.to_float64(layout.chunk_bytes(flat_base, k, chunk_elements), a, b)
        ds = ((layout.to_float64(layout.chunk_bytes(d, k, chunk_elements), a, b), w) for d, w in flat_deltas)
        m = mlayout.to_float64(mlayout.chunk_bytes(flat_m, k, chunk_elements), a, b) if flat_m else None
        v = mlayout.to_float64(mlayout.chunk_bytes(flat_v, k, chunk_elements), a, b) if flat_v else None
        new, m2, v2 = aggregate_values(x, ds, total, optimizer, m, v)
        out.append(layout.from_float64(new, a))
        if m2 is not None and v2 is not None:
            out_m.append(mlayout.from_float64(m2, a))
            out_v.append(mlayout.from_float64(v2, a))
    return b"".join(out), b"".join(out_m), b"".join(out_v)


@pytest.mark.parametrize("optimizer", [FEDAVG, FEDADAM], ids=["fedavg", "fedadam"])
@pytest.mark.parametrize("chunk_elements", [16, 100, 263, 4096])
def test_chunk_by_chunk_is_the_whole_state_bit_for_bit_in_a_mixed_manifest(optimizer, chunk_elements):
    # Prepare: float16, float32 and float64 tensors; chunks that straddle tensors of different dtypes
    base, deltas, moments = states(MIXED, 7)
    # Execute
    model, m, v = aggregate_state(base, deltas, optimizer, moments)
    flat, flat_m, flat_v = chunked(base, deltas, optimizer, moments, chunk_elements)
    # Assert
    layout = Layout(manifest(base))
    assert {k: a.dtype for k, a in model.items()} == {k: np.dtype(t) for k, (_s, t) in MIXED.items()}
    assert flat == layout.flat_bytes(model)
    if optimizer.stateful:
        assert m is not None and v is not None
        assert flat_m == Layout.of_moments(manifest(base)).flat_bytes(m)
        assert flat_v == Layout.of_moments(manifest(base)).flat_bytes(v)
    else:
        assert (m, v, flat_m) == (None, None, b"")


def test_the_arithmetic_is_the_stated_formula_in_ieee_doubles():
    """Python floats are IEEE doubles: the same operations in the same order give the same bits."""
    base, deltas, (m_prev, v_prev) = states({"w": ((50,), np.float32)}, 5, seed=4)
    total = sum(w for _d, w in deltas)
    model, m, v = aggregate_state(base, deltas, FEDADAM, (m_prev, v_prev))
    fedavg_model, _, _ = aggregate_state(base, deltas, FEDAVG)
    assert m is not None and v is not None
    for i in (0, 17, 49):
        avg = 0.0
        for delta, weight in deltas:
            avg += float(delta["w"][i]) * (weight / total)
        mi = 0.9 * float(m_prev["w"][i]) + (1.0 - 0.9) * avg
        vi = 0.99 * float(v_prev["w"][i]) + (1.0 - 0.99) * avg * avg
        assert model["w"][i] == np.float32(float(base["w"][i]) + 0.05 * mi / (vi**0.5 + 1e-3))
        assert (m["w"][i], v["w"][i]) == (np.float32(mi), np.float32(vi))
        assert fedavg_model["w"][i] == np.float32(float(base["w"][i]) + 0.7 * avg)


def test_same_inputs_same_bytes_and_the_order_is_part_of_the_inputs():
    base, deltas, moments = states(MIXED, 6, seed=9)
    first = aggregate_state(base, deltas, FEDADAM, moments)
    again = aggregate_state({k: a.copy() for k, a in base.items()}, list(deltas), FEDADAM, moments)
    assert all(
        np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(first[0].values(), again[0].values(), strict=True)
    )
    assert Layout(manifest(base)).chunk_hashes(first[0], 64) == Layout(manifest(base)).chunk_hashes(again[0], 64)


def test_trainer_functions_delegate_to_the_contracts_arithmetic():
    base, deltas, _ = states({"w": ((64,), np.float32), "z": ((3, 3), np.float32)}, 4, seed=2)
    strategy = FedAdam(eta=0.05)
    model = strategy.aggregate_fit(1, base, deltas)
    expected, m, v = aggregate_state(base, deltas, FEDADAM)
    assert m is not None and v is not None
    assert encode(model) == encode(expected)
    assert encode_moments(strategy.moments.m, strategy.moments.v) == encode_moments(m, v)
    assert encode(FedAvg(server_lr=0.7).aggregate_fit(1, base, deltas)) == encode(
        aggregate_state(base, deltas, FEDAVG)[0]
    )
    # the parts on their own: fedavg is the weighted mean, rounded to float32
    avg = fedavg(deltas)
    new, moments = fedadam_step(base, avg, FedAdamState(), eta=0.05)
    assert moments.step == 1 and new["w"].dtype == np.float32
    assert apply_delta(base, avg, server_lr=0.7)["w"].dtype == np.float32


def test_a_float16_base_keeps_float16():
    base, deltas, _ = states({"h": ((10,), np.float16)}, 3)
    assert FedAvg().aggregate_fit(1, base, deltas)["h"].dtype == np.float16


def test_layout_chunks_and_covering():
    base, _, _ = states(MIXED, 1)
    layout = Layout(manifest(base))
    assert layout.elements == 63 + 33 + 60 + 50
    assert layout.nbytes == 63 * 2 + 33 * 4 + 60 * 8 + 50 * 2
    assert layout.chunk_count(100) == 3 and layout.chunk_range(2, 100) == (200, 206)
    flat = layout.flat_bytes(base)
    hashes = layout.chunk_hashes(base, 100)
    assert hashes == [hashlib.sha256(layout.chunk_bytes(flat, k, 100)).hexdigest() for k in range(3)]
    assert b"".join(bytes(layout.chunk_bytes(flat, k, 100)) for k in range(3)) == flat
    assert list(covering(64, 129, 64)) == [1, 2] and list(covering(0, 206, 100)) == [0, 1, 2]
    with pytest.raises(ValueError, match="take"):
        layout.to_float64(bytes(10), 0, 10)
    with pytest.raises(ValueError, match="manifest says"):
        layout.flat_bytes({**base, "b": base["b"].astype(np.float64)})


def test_optimizer_state_file_round_trip():
    base, _, (m, v) = states(MIXED, 1)
    data = encode_moments(m, v)
    assert sorted(moments_manifest(manifest(base))) == sorted([f"m/{k}" for k in MIXED] + [f"v/{k}" for k in MIXED])
    m2, v2 = decode_moments(data, manifest(base))
    assert all(np.array_equal(m[k], m2[k]) and np.array_equal(v[k], v2[k]) for k in MIXED)


def test_server_optimizer_and_rules():
    rules = apply_patch(Rules(), FEDADAM.rules())
    assert ServerOptimizer.from_rules(rules).same_as(FEDADAM)
    assert ServerOptimizer.from_rules(Rules()).describe() == {"name": "fedavg", "server_lr": 1.0}
    assert strategy_from_rules(rules).describe() == FedAdam(eta=0.05).describe()
    check_strategy(FedAdam(eta=0.05), rules)
    with pytest.raises(StrategyMismatch, match="the rules .* aggregate with .*fedadam.* strategy is .*fedavg"):
        check_strategy(FedAvg(), rules)
    with pytest.raises(ValueError, match="unknown server optimiser"):
        ServerOptimizer("sgd")
    for patch, fragment in [
        ({"server_optimizer": "sgd"}, "server_optimizer must be one of fedavg, fedadam"),
        ({"fedadam_tau": 0}, "fedadam_tau must be >="),
        ({"fedadam_beta_2": 1.0}, "fedadam_beta_2 must be <="),
        ({"aggregate_chunk_elements": 8}, "aggregate_chunk_elements must be >= 16"),
        ({"server_lr": -1.0}, "server_lr must be >="),
    ]:
        with pytest.raises(InvalidArgument, match=fragment):
            apply_patch(Rules(), patch)


def model_record(shapes, chunk_elements):
    base, _, _ = states(shapes, 1)
    return ModelVersion(
        hash="0" * 64,
        version=0,
        parent=None,
        round=None,
        updates=[],
        manifest=manifest(base),
        size=0,
        committed_by="",
        tx_id="",
        timestamp=0.0,
        chunk_elements=chunk_elements,
    )


def test_the_sdk_plans_proposals_under_the_budget():
    shapes = {"w": ((1000,), np.float32)}
    base, deltas, _ = states(shapes, 10)
    rules = Rules(aggregate_chunk_elements=100)
    inputs = AggregateInputs(
        base_model=model_record(shapes, 100),
        rules=rules,
        base=encode(base),
        updates={f"{i:064x}": encode(d) for i, (d, _w) in enumerate(deltas)},
    )
    assert inputs.chunks == 10 and inputs.size(0, 1) == 11 * 400
    assert inputs.plan(10**6, fixed=4100).batches == []  # everything fits: one CommitAggregate
    plan = inputs.plan(10_000, fixed=4100)
    assert plan.batches == [(0, 2), (2, 2), (4, 2), (6, 2), (8, 1)] and plan.inline_from == 9
    sizes = [inputs.size(first, count) for first, count in plan.batches] + [4100 + inputs.size(9, 1)]
    assert max(sizes) <= 10_000
    transient = inputs.transient(2, 2)
    assert sum(len(v) for v in transient.values()) == inputs.size(2, 2) and len(transient) == 11
    with pytest.raises(ValueError, match="lower the rule aggregate_chunk_elements"):
        inputs.plan(4000)


def test_the_sdk_sends_the_base_in_its_own_chunks():
    """A base model committed under another chunk size is sent in the chunks that cover the ones aggregated."""
    shapes = {"w": ((1000,), np.float32)}
    base, deltas, _ = states(shapes, 2)
    inputs = AggregateInputs(
        base_model=model_record(shapes, 300),
        rules=Rules(aggregate_chunk_elements=100),
        base=encode(base),
        updates={"ab" * 32: encode(deltas[0][0])},
    )
    transient = inputs.transient(2, 2)  # elements 200..399: base chunks 0 and 1 (elements 0..599)
    assert len(transient["base"]) == 600 * 4 and len(transient["update/" + "ab" * 32]) == 200 * 4
