"""The ledger's DP accountant (chaincode/privacy_budget.py, no torch) gives the very ε Opacus 1.6.0's
RDPAccountant gives: bit-identical over a grid of DP-SGD settings, per RDP order, and across composed rounds.
Also: determinism, and the refusals of malformed DP parameters."""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fedledger.chaincode import privacy_budget as pb
from fedledger.chaincode.errors import InvalidArgument
from fedledger.chaincode.privacy_budget import (
    DEFAULT_ORDERS,
    DPParams,
    compose,
    epsilon_from_rdp,
    epsilon_of,
    rdp_of,
)

# Opacus warns when the best order is at an end of the order range; that is expected for some grid points.
pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the:UserWarning")

NOISE_MULTIPLIERS = (0.5, 0.8, 1.1, 2.0, 5.0)
SAMPLE_RATES = (0.001, 0.01, 0.1, 0.5, 1.0)
STEPS = (1, 10, 1000)
DELTAS = (1e-5, 1e-3)
GRID = list(itertools.product(NOISE_MULTIPLIERS, SAMPLE_RATES, STEPS, DELTAS))


@pytest.fixture(scope="module")
def opacus_rdp() -> Iterator[Any]:
    """Opacus' RDP analysis module, with its per-order one-step RDP memoised for the duration of this module.

    The memo is a pure cache of Opacus' own function (same arguments, same result); it only stops the grid from
    recomputing the same (q, sigma) curve for every steps/delta combination."""
    module = pytest.importorskip("opacus.accountants.analysis.rdp", reason="cross-checks need the 'train' extra")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_compute_rdp", functools.cache(module._compute_rdp))
        yield module


@pytest.fixture(scope="module")
def accountant_class(opacus_rdp: Any) -> type[Any]:
    return pytest.importorskip("opacus.accountants").RDPAccountant


def opacus_epsilon(accountant_class: type[Any], history: list[tuple[float, float, int]], delta: float) -> float:
    accountant = accountant_class()
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta))


# ---------------------------------------------------------------------------------------------------------------
# Agreement with Opacus
# ---------------------------------------------------------------------------------------------------------------


def test_default_orders_are_opacus_defaults_with_fractional_and_integer_orders(accountant_class: type[Any]) -> None:
    assert tuple(float(order) for order in accountant_class.DEFAULT_ALPHAS) == DEFAULT_ORDERS
    assert all(isinstance(order, float) for order in DEFAULT_ORDERS)
    fractional = [order for order in DEFAULT_ORDERS if not order.is_integer()]
    integer = [order for order in DEFAULT_ORDERS if order.is_integer()]
    assert len(fractional) == 90
    assert len(integer) == 61  # 2.0 .. 10.0 and 12 .. 63


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), GRID)
def test_epsilon_is_bit_identical_to_opacus(
    accountant_class: type[Any], sigma: float, q: float, steps: int, delta: float
) -> None:
    ours = epsilon_of([DPParams(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)], delta)
    theirs = opacus_epsilon(accountant_class, [(sigma, q, steps)], delta)
    assert math.isfinite(ours)
    assert ours == theirs, f"relative difference {abs(ours - theirs) / abs(theirs):.3e}"


@pytest.mark.parametrize(("sigma", "q"), list(itertools.product(NOISE_MULTIPLIERS, SAMPLE_RATES)))
def test_rdp_matches_opacus_at_every_default_order(opacus_rdp: Any, sigma: float, q: float) -> None:
    params = DPParams(noise_multiplier=sigma, sample_rate=q, steps=10, delta=1e-5)
    theirs = opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=10, orders=list(DEFAULT_ORDERS))
    ours = rdp_of(params)
    assert len(ours) == len(DEFAULT_ORDERS)
    mismatched = [
        (order, a, float(b)) for order, a, b in zip(DEFAULT_ORDERS, ours, theirs, strict=True) if a != float(b)
    ]
    assert not mismatched


def test_rdp_matches_opacus_at_orders_outside_the_defaults(opacus_rdp: Any) -> None:
    orders = [1.01, 1.5, 2.0, 2.75, 3.0, 7.25, 11.0, 64.0, 100.0, 256.0]  # fractional and integer
    for sigma, q in [(0.7, 0.02), (1.3, 0.25), (4.0, 0.5), (2.0, 1.0)]:
        params = DPParams(noise_multiplier=sigma, sample_rate=q, steps=7, delta=1e-5)
        theirs = [float(v) for v in opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=7, orders=orders)]
        ours = rdp_of(params, orders)
        assert ours == theirs
        eps_theirs, _order = opacus_rdp.get_privacy_spent(orders=orders, rdp=theirs, delta=1e-5)
        assert epsilon_from_rdp(ours, 1e-5, orders) == float(eps_theirs)


def test_rounds_with_different_parameters_compose_like_opacus(accountant_class: type[Any], opacus_rdp: Any) -> None:
    rounds = [
        DPParams(noise_multiplier=1.1, sample_rate=0.01, steps=300, delta=1e-5),
        DPParams(noise_multiplier=2.0, sample_rate=0.1, steps=40, delta=1e-5),
        DPParams(noise_multiplier=0.8, sample_rate=0.5, steps=3, delta=1e-5),
        DPParams(noise_multiplier=5.0, sample_rate=1.0, steps=10, delta=1e-5),
        DPParams(noise_multiplier=1.1, sample_rate=0.01, steps=300, delta=1e-5),
    ]
    history = [(r.noise_multiplier, r.sample_rate, r.steps) for r in rounds]
    for delta in DELTAS:
        combined = epsilon_of(rounds, delta)
        assert combined == opacus_epsilon(accountant_class, history, delta)
        # ...and the same through the pieces: per-round RDP, composed, converted.
        assert epsilon_from_rdp(compose(rdp_of(r) for r in rounds), delta) == combined
        # Composition costs privacy: more than any single round.
        assert combined > max(epsilon_of([r], delta) for r in rounds)

    # RDPAccountant.get_privacy_spent composes the same way: sum() of the per-entry arrays.
    theirs: Any = sum(
        opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(DEFAULT_ORDERS))
        for sigma, q, steps in history
    )
    assert compose(rdp_of(r) for r in rounds) == [float(v) for v in theirs]


def test_an_accountant_fed_step_by_step_agrees(accountant_class: type[Any]) -> None:
    """The history a trainer's Opacus accountant accumulates through ``step()`` is what the ledger composes."""
    accountant = accountant_class()
    for sigma, q, steps in [(1.1, 0.05, 25), (0.9, 0.05, 10), (1.1, 0.05, 5)]:
        for _ in range(steps):
            accountant.step(noise_multiplier=sigma, sample_rate=q)
    rounds = [DPParams(noise_multiplier=s, sample_rate=q, steps=n, delta=1e-5) for s, q, n in accountant.history]
    assert [r.steps for r in rounds] == [25, 10, 5]
    assert epsilon_of(rounds, 1e-5) == accountant.get_epsilon(1e-5)


def test_the_conversion_gives_infinity_where_opacus_does(opacus_rdp: Any) -> None:
    orders = [1.5, 2.0, 8.0]
    for rdp in ([math.nan] * 3, [math.inf] * 3, [math.inf, math.nan, math.inf]):
        eps_theirs, _order = opacus_rdp.get_privacy_spent(orders=orders, rdp=rdp, delta=1e-5)
        assert float(eps_theirs) == math.inf
        assert epsilon_from_rdp(rdp, 1e-5, orders) == math.inf
    # A NaN at some orders is skipped, as Opacus skips it.
    rdp = [math.nan, 0.5, 1.0]
    eps_theirs, _order = opacus_rdp.get_privacy_spent(orders=orders, rdp=rdp, delta=1e-5)
    assert epsilon_from_rdp(rdp, 1e-5, orders) == float(eps_theirs)


def test_no_rounds_spend_nothing(accountant_class: type[Any]) -> None:
    assert epsilon_of([], 1e-5) == 0.0 == accountant_class().get_epsilon(1e-5)
    assert compose([]) == []


# ---------------------------------------------------------------------------------------------------------------
# Determinism and robustness
# ---------------------------------------------------------------------------------------------------------------


def test_two_calls_are_bit_identical() -> None:
    rounds = [
        DPParams(noise_multiplier=0.8, sample_rate=0.1, steps=1000, delta=1e-5),
        DPParams(noise_multiplier=2.0, sample_rate=0.5, steps=10, delta=1e-5),
    ]
    first_rdp = [rdp_of(r) for r in rounds]
    first = epsilon_of(rounds, 1e-5)
    pb._one_step_curve.cache_clear()  # recompute from scratch, not from the memo
    second_rdp = [rdp_of(r) for r in rounds]
    second = epsilon_of(rounds, 1e-5)
    assert first.hex() == second.hex()
    assert [[v.hex() for v in curve] for curve in first_rdp] == [[v.hex() for v in curve] for curve in second_rdp]


def test_a_vanishing_noise_multiplier_gives_infinite_epsilon_quickly() -> None:
    """sigma² subnormal or zero: Opacus divides by zero or (for fractional orders) never leaves its series loop.
    The ledger must neither crash nor hang on an endorsing peer: every order is +inf or NaN, so ε is +inf."""
    started = time.perf_counter()
    for sigma in (1e-300, 1e-160):
        for q in (1e-9, 0.5, 1.0):
            assert epsilon_of([DPParams(noise_multiplier=sigma, sample_rate=q, steps=1, delta=1e-5)], 1e-5) == math.inf
    assert time.perf_counter() - started < 5


def test_compose_refuses_curves_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="3 and 2 orders"):
        compose([[0.1, 0.2, 0.3], [0.1, 0.2]])
    with pytest.raises(ValueError, match="2 RDP values for 3 orders"):
        epsilon_from_rdp([0.1, 0.2], 1e-5, [2.0, 3.0, 4.0])


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------

VALID: dict[str, Any] = {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 100, "delta": 1e-5}


def test_parse_accepts_and_normalises_valid_parameters() -> None:
    params = DPParams.parse(VALID)
    assert params == DPParams(noise_multiplier=1.1, sample_rate=0.01, steps=100, delta=1e-5, accountant="rdp")
    assert params.to_dict() == {**VALID, "accountant": "rdp"}
    assert DPParams.parse(params.to_dict()) == params
    edge = DPParams.parse({"noise_multiplier": 100, "sample_rate": 1, "steps": 10_000_000.0, "delta": 0.5})
    assert edge.to_dict() == {
        "noise_multiplier": 100.0,
        "sample_rate": 1.0,
        "steps": 10_000_000,
        "delta": 0.5,
        "accountant": "rdp",
    }
    assert type(edge.noise_multiplier) is float and type(edge.steps) is int


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != key}


BAD_INPUTS: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, data, field named in the message, allowed range / hint in the message)
    ("unknown-key", {**VALID, "max_grad_norm": 1.0}, "max_grad_norm", "allowed: noise_multiplier"),
    ("missing-noise_multiplier", _without("noise_multiplier"), "noise_multiplier", "missing"),
    ("missing-sample_rate", _without("sample_rate"), "sample_rate", "missing"),
    ("missing-steps", _without("steps"), "steps", "missing"),
    ("missing-delta", _without("delta"), "delta", "missing"),
    ("bool-noise_multiplier", {**VALID, "noise_multiplier": True}, "noise_multiplier", "(0, 100]"),
    ("bool-sample_rate", {**VALID, "sample_rate": True}, "sample_rate", "(0, 1]"),
    ("bool-steps", {**VALID, "steps": True}, "steps", "[1, 10_000_000]"),
    ("bool-delta", {**VALID, "delta": False}, "delta", "(0, 1)"),
    ("string-noise_multiplier", {**VALID, "noise_multiplier": "1.1"}, "noise_multiplier", "(0, 100]"),
    ("null-delta", {**VALID, "delta": None}, "delta", "(0, 1)"),
    ("nan-noise_multiplier", {**VALID, "noise_multiplier": math.nan}, "noise_multiplier", "(0, 100]"),
    ("inf-noise_multiplier", {**VALID, "noise_multiplier": math.inf}, "noise_multiplier", "(0, 100]"),
    ("nan-sample_rate", {**VALID, "sample_rate": math.nan}, "sample_rate", "(0, 1]"),
    ("inf-steps", {**VALID, "steps": math.inf}, "steps", "[1, 10_000_000]"),
    ("nan-delta", {**VALID, "delta": math.nan}, "delta", "(0, 1)"),
    ("zero-noise_multiplier", {**VALID, "noise_multiplier": 0}, "noise_multiplier", "(0, 100]"),
    ("negative-noise_multiplier", {**VALID, "noise_multiplier": -1.0}, "noise_multiplier", "(0, 100]"),
    ("huge-noise_multiplier", {**VALID, "noise_multiplier": 100.5}, "noise_multiplier", "(0, 100]"),
    ("zero-sample_rate", {**VALID, "sample_rate": 0.0}, "sample_rate", "(0, 1]"),
    ("negative-sample_rate", {**VALID, "sample_rate": -0.1}, "sample_rate", "(0, 1]"),
    ("over-one-sample_rate", {**VALID, "sample_rate": 1.5}, "sample_rate", "(0, 1]"),
    ("huge-int-noise_multiplier", {**VALID, "noise_multiplier": 10**400}, "noise_multiplier", "(0, 100]"),
    ("huge-int-steps", {**VALID, "steps": 10**400}, "steps", "[1, 10_000_000]"),
    ("zero-steps", {**VALID, "steps": 0}, "steps", "[1, 10_000_000]"),
    ("too-many-steps", {**VALID, "steps": 10_000_001}, "steps", "[1, 10_000_000]"),
    ("fractional-steps", {**VALID, "steps": 2.5}, "steps", "[1, 10_000_000]"),
    ("string-steps", {**VALID, "steps": "100"}, "steps", "[1, 10_000_000]"),
    ("zero-delta", {**VALID, "delta": 0.0}, "delta", "(0, 1)"),
    ("one-delta", {**VALID, "delta": 1.0}, "delta", "(0, 1)"),
    ("negative-delta", {**VALID, "delta": -1e-5}, "delta", "(0, 1)"),
    ("prv-accountant", {**VALID, "accountant": "prv"}, "accountant", 'train with accountant="rdp"'),
    ("gdp-accountant", {**VALID, "accountant": "gdp"}, "accountant", "composes ε with the RDP accountant"),
    ("non-string-accountant", {**VALID, "accountant": 1}, "accountant", 'train with accountant="rdp"'),
]


@pytest.mark.parametrize(("data", "field", "hint"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_parse_refuses_bad_input(data: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        DPParams.parse(data)
    message = caught.value.message
    assert field in message
    assert hint in message
    assert "\n" not in message


def test_parse_refuses_a_non_object() -> None:
    bad: Any = [1.1, 0.01, 100, 1e-5]
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        DPParams.parse(bad)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(InvalidArgument, match=r"sample_rate must be a number in \(0, 1\]"):
        DPParams(noise_multiplier=1.0, sample_rate=2.0, steps=1, delta=1e-5)
    with pytest.raises(InvalidArgument, match=r"delta must be a number in \(0, 1\)"):
        epsilon_of([DPParams(noise_multiplier=1.0, sample_rate=0.5, steps=1, delta=1e-5)], 0.0)
