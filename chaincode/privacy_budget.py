"""Differential-privacy budget of DP-SGD, computed on the ledger with the RDP analysis of the sampled Gaussian
mechanism.

A trainer that fine-tunes with DP-SGD reports, per round, the noise multiplier sigma, the sampling rate q, the number
of optimizer steps and δ. The ledger turns those into an ε itself rather than trusting the trainer's figure, and
it composes rounds the way Opacus' ``RDPAccountant`` does:

* one step of the sampled Gaussian mechanism has Rényi DP ``log(A_a) / (a - 1)`` at order a, where ``A_a`` is
  the moment given by Mironov, Talwar and Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"
  (2019, arXiv:1908.10530), section 3.3;
* RDP at a fixed order adds up over steps and over rounds;
* the RDP curve becomes an (ε, δ) guarantee with the conversion of Balle et al., "Hypothesis testing
  interpretations and Rényi differential privacy" (AISTATS 2020, arXiv:1905.09982, Theorem 21), minimised over
  the orders.

This module re-implements that published analysis because the chaincode runs on every endorsing peer and may not
import torch or opacus (the contract layer is limited to stdlib, numpy, scipy and cryptography). It evaluates
the same floating-point expressions in the same order as Opacus 1.6.0 (``opacus/accountants/analysis/rdp.py``),
so the ledger's ε is the trainer's ε; ``tests/contract/test_privacy_budget.py`` cross-checks it against Opacus.
Everything here is deterministic: no randomness, no clocks, no state between calls.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from fedledger.chaincode.errors import InvalidArgument

__all__ = ["DEFAULT_ORDERS", "DPParams", "compose", "epsilon_from_rdp", "epsilon_of", "rdp_of", "spent_of_budget"]

# The orders Opacus' RDPAccountant searches by default: 1.1, 1.2, ..., 10.9, then the integers 12..63.
# (1 + x / 10.0 is written exactly as there so that every order is the same double.)
DEFAULT_ORDERS: tuple[float, ...] = tuple(1 + x / 10.0 for x in range(1, 100)) + tuple(
    float(order) for order in range(12, 64)
)

MAX_NOISE_MULTIPLIER = 100.0
MAX_STEPS = 10_000_000

# The fractional-order series needs about 20,000 terms in the worst case the parameter bounds allow
# (sigma = 100, q = 0.5). This cap only guards the peer against a series that never converges; an order whose
# series hits it (or breaks down into NaN) gets RDP = +inf, which is always a valid (if useless) bound and so
# never wins the minimum over orders.
_MAX_SERIES_TERMS = 100_000
# A term of the fractional-order series below e^-30 ends the summation (the same cut-off as Opacus).
_SERIES_CUTOFF = -30

_FIELDS = ("noise_multiplier", "sample_rate", "steps", "delta", "accountant")
_REQUIRED = _FIELDS[:4]


# --------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A short one-line rendering of a refused value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _real(name: str, value: Any, allowed: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float if it is a finite non-bool number for which ``ok`` holds; refused otherwise."""
    # (ints are compared as ints: float() of a 400-digit JSON integer would overflow)
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, bool) or not finite or not ok(value):
        raise InvalidArgument(f"{name} must be a number in {allowed}, got {_show(value)}")
    return float(value)


@dataclass(frozen=True)
class DPParams:
    """What one round of DP-SGD spent: ``steps`` noisy steps at noise multiplier sigma and Poisson sampling rate q,
    reported at target ``delta``. Construction checks every field (see :meth:`parse` for the JSON form)."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        sigma = _real(
            "noise_multiplier",
            self.noise_multiplier,
            f"(0, {MAX_NOISE_MULTIPLIER:g}]",
            lambda v: 0 < v <= MAX_NOISE_MULTIPLIER,
        )
        rate = _real("sample_rate", self.sample_rate, "(0, 1]", lambda v: 0 < v <= 1)
        delta = _real("delta", self.delta, "(0, 1)", lambda v: 0 < v < 1)
        steps = self.steps
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int | float)
            or not 1 <= steps <= MAX_STEPS  # also refuses NaN, before is_integer() could see it
            or not float(steps).is_integer()
        ):
            raise InvalidArgument(f"steps must be an integer in [1, {MAX_STEPS:_}], got {_show(steps)}")
        if self.accountant != "rdp":
            raise InvalidArgument(
                f'accountant must be "rdp", got {_show(self.accountant)}: the ledger composes ε with the RDP '
                'accountant, so train with accountant="rdp"'
            )
        # Store the declared types whatever JSON produced: "noise_multiplier": 1 -> 1.0, "steps": 100.0 -> 100.
        object.__setattr__(self, "noise_multiplier", sigma)
        object.__setattr__(self, "sample_rate", rate)
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "steps", int(steps))

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DPParams:
        """Checks a JSON object ``{"noise_multiplier", "sample_rate", "steps", "delta"[, "accountant"]}``;
        raises :class:`InvalidArgument` naming the first offending field."""
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"DP parameters must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in _FIELDS)
        if unknown:
            raise InvalidArgument(
                f"unknown DP parameter(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)} (accountant optional)"
            )
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise InvalidArgument(f"missing DP parameter(s): {', '.join(missing)}")
        return cls(**{key: data[key] for key in _FIELDS if key in data})

    def to_dict(self) -> dict[str, Any]:
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "delta": self.delta,
            "accountant": self.accountant,
        }


# --------------------------------------------------------------------------------------------------------------
# Log-space helpers: every A_a term is carried as its logarithm, -inf standing for zero.
# --------------------------------------------------------------------------------------------------------------


def _log_plus(log_u: float, log_v: float) -> float:
    """log(u + v) from log u and log v."""
    small, large = min(log_u, log_v), max(log_u, log_v)
    if small == -math.inf:
        return large
    # u + v = v (1 + u/v) with v the larger one, so exp() never overflows.
    return math.log1p(math.exp(small - large)) + large


def _log_minus(log_u: float, log_v: float) -> float:
    """log(u - v) from log u and log v, for u >= v."""
    if log_u < log_v:
        raise ArithmeticError("log-space subtraction would go negative")
    if log_v == -math.inf:
        return log_u
    if log_u == log_v:
        return -math.inf
    try:
        # u - v = v (u/v - 1).
        return math.log(math.expm1(log_u - log_v)) + log_v
    except OverflowError:
        # u/v beyond e^709: v is negligible next to u.
        return log_u


_LOG_HALF = math.log(0.5)
_LOG_TWO = math.log(2)
_SQRT_TWO = math.sqrt(2)


def _log_half_erfc(x: float) -> float:
    """log(erfc(x) / 2), accurate far into the tail: erfc(x) = 2 Φ(-√2 x) with Φ the standard normal CDF."""
    return _LOG_HALF + (_LOG_TWO + float(special.log_ndtr(-x * 2**0.5)))


# --------------------------------------------------------------------------------------------------------------
# RDP of one step of the sampled Gaussian mechanism (Mironov et al. 2019, section 3.3)
# --------------------------------------------------------------------------------------------------------------


def _log_moment_integer(q: float, sigma: float, alpha: int) -> float:
    """log A_a for an integer order a: the finite binomial expansion (s = sigma, all terms positive)
    A_a = Σ_{k=0..a} C(a, k) q^k (1-q)^(a-k) exp((k² - k) / (2s²))."""
    log_q, log_1mq = math.log(q), math.log(1 - q)
    two_var = 2 * (sigma**2)
    total = -math.inf
    for k in range(alpha + 1):
        log_weight = math.log(special.binom(alpha, k)) + k * log_q + (alpha - k) * log_1mq
        total = _log_plus(total, log_weight + (k * k - k) / two_var)
    return float(total)


def _log_moment_fractional(q: float, sigma: float, alpha: float) -> float:
    """log A_a for a fractional order a (s = sigma).

    A_a splits at z0 = s² log(1/q - 1) + 1/2, where the two Gaussians' likelihood ratio crosses, into an
    integral below z0 and one above. Each is an infinite series over k = 0, 1, 2, ...; with m = a - k their
    k-th terms are
        C(a, k) q^k (1-q)^m exp((k² - k) / (2s²)) erfc((k - z0) / (√2 s)) / 2    (below z0)
        C(a, k) q^m (1-q)^k exp((m² - m) / (2s²)) erfc((z0 - m) / (√2 s)) / 2    (above z0)
    C(a, k) changes sign once k exceeds a, so terms are added or subtracted in log space by its sign. The sum
    stops at the first k whose two terms are both below e^-30.
    """
    log_q, log_1mq = math.log(q), math.log(1 - q)
    two_var = 2 * (sigma**2)
    erfc_scale = _SQRT_TWO * sigma
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    below, above = -math.inf, -math.inf
    for k in range(_MAX_SERIES_TERMS):
        binom = special.binom(alpha, k)
        log_abs_binom = math.log(abs(binom))
        m = alpha - k
        log_below = (
            log_abs_binom + k * log_q + m * log_1mq + (k * k - k) / two_var + _log_half_erfc((k - z0) / erfc_scale)
        )
        log_above = (
            log_abs_binom + m * log_q + k * log_1mq + (m * m - m) / two_var + _log_half_erfc((z0 - m) / erfc_scale)
        )
        if binom > 0:
            below, above = _log_plus(below, log_below), _log_plus(above, log_above)
        else:
            below, above = _log_minus(below, log_below), _log_minus(above, log_above)
        largest = max(log_below, log_above)
        if largest < _SERIES_CUTOFF:
            return _log_plus(below, above)
        if math.isnan(largest):
            # inf - inf inside a term (sigma² so small that it is subnormal): the terms stay NaN for every
            # later k and the cut-off can never be met. Opacus loops forever here; the peer gives up.
            raise ArithmeticError("the fractional-order series broke down")
    return math.inf


def _rdp_one_step(q: float, sigma: float, alpha: float) -> float:
    """RDP at order ``alpha`` of one step that samples at rate ``q`` and adds N(0, sigma²) noise to a sum of
    sensitivity 1. Any numerical breakdown yields +inf (a vacuous but sound bound for that order)."""
    if 2 * sigma**2 == 0 or math.isinf(alpha):
        # sigma² underflows (or the order is infinite): no privacy to speak of.
        return math.inf
    try:
        if q == 1.0:
            # No subsampling: the plain Gaussian mechanism, RDP alpha / (2 sigma²).
            return alpha / (2 * sigma**2)
        if float(alpha).is_integer():
            log_moment = _log_moment_integer(q, sigma, int(alpha))
        else:
            log_moment = _log_moment_fractional(q, sigma, alpha)
        return log_moment / (alpha - 1)
    except (ArithmeticError, ValueError):
        return math.inf


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _one_step_curve(q: float, sigma: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    """One-step RDP at every order. Memoised (a pure function of its arguments) because the fractional orders
    cost up to tens of milliseconds each and a participant's rounds usually repeat the same (q, sigma)."""
    return tuple(float(_rdp_one_step(q, sigma, order)) for order in orders)


def rdp_of(params: DPParams, orders: Sequence[float] = DEFAULT_ORDERS) -> list[float]:
    """RDP of ``params.steps`` steps at each of ``orders``: ``steps`` times the one-step RDP."""
    curve = _one_step_curve(params.sample_rate, params.noise_multiplier, tuple(float(order) for order in orders))
    return [value * params.steps for value in curve]


def compose(rdps: Iterable[Sequence[float]]) -> list[float]:
    """Element-wise sum of RDP curves computed at the same orders (RDP composes additively). An empty
    iterable composes to ``[]``."""
    total: list[float] | None = None
    for rdp in rdps:
        if total is None:
            total = [float(value) for value in rdp]
            continue
        if len(rdp) != len(total):
            raise ValueError(f"cannot compose RDP curves of {len(total)} and {len(rdp)} orders")
        total = [acc + float(value) for acc, value in zip(total, rdp, strict=True)]
    return [] if total is None else total


def epsilon_from_rdp(rdp: Sequence[float], delta: float, orders: Sequence[float] = DEFAULT_ORDERS) -> float:
    """The ε of an RDP curve at ``delta`` (Balle et al. 2020, Theorem 21), minimised over ``orders``:
        ε(a) = RDP(a) - (log δ + log a) / (a - 1) + log((a - 1) / a).
    Orders where ε is NaN are skipped; ``math.inf`` if every order is NaN or the minimum is infinite."""
    if len(rdp) != len(orders):
        raise ValueError(f"{len(rdp)} RDP values for {len(orders)} orders")
    if len(orders) == 0:
        raise ValueError("at least one RDP order is needed")
    alpha = np.asarray(orders, dtype=np.float64)
    curve = np.asarray(rdp, dtype=np.float64)
    # Vectorised like Opacus so numpy's log gives the very same doubles.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eps = curve - (np.log(delta) + np.log(alpha)) / (alpha - 1) + np.log((alpha - 1) / alpha)
    finite = ~np.isnan(eps)
    if not finite.any():
        return math.inf
    return float(eps[int(np.nanargmin(eps))])


def epsilon_of(history: Iterable[DPParams], delta: float) -> float:
    """ε at ``delta`` of every round in ``history`` composed, over :data:`DEFAULT_ORDERS` (0.0 for no rounds,
    as Opacus reports for an empty accountant)."""
    delta = _real("delta", delta, "(0, 1)", lambda v: 0 < v < 1)
    total = compose(rdp_of(params) for params in history)
    if not total:
        return 0.0
    return epsilon_from_rdp(total, delta)


def steps_within(
    epsilon: float, *, noise_multiplier: float, sample_rate: float, delta: float, max_steps: int = 10_000_000
) -> DPParams:
    """The most DP-SGD steps at (``noise_multiplier``, ``sample_rate``) whose ε at ``delta`` stays within
    ``epsilon``: how long a member may train under a budget. ValueError if even one step exceeds it."""

    def spends(steps: int) -> float:
        return epsilon_of([DPParams(noise_multiplier, sample_rate, steps, delta)], delta)

    if spends(1) > epsilon:
        raise ValueError(f"one step at noise {noise_multiplier}, rate {sample_rate} already spends more than {epsilon}")
    low, high = 1, 2
    while high <= max_steps and spends(high) <= epsilon:  # ε grows with the steps: double, then bisect
        low, high = high, high * 2
    high = min(high, max_steps + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if spends(middle) <= epsilon else (low, middle)
    return DPParams(noise_multiplier, sample_rate, low, delta)


#: The heading every report of a participant's privacy spend uses (demo tables, the HTML report).
SPENT_HEADING = "ε spent / budget"


def spent_of_budget(spent: float | None, budget: float) -> str:
    """How every fedledger output shows a participant's privacy spend: its composed ε (the ledger's figure) over
    the rules' ``epsilon_total``, e.g. "7.99 / 8"; "no DP" for a participant that declared no DP-SGD."""
    return "no DP" if spent is None else f"{spent:.2f} / {budget:g}"
