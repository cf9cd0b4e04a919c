"""Server strategies: how accepted client deltas become the next global adapter.

Like Flower's ``Strategy``, a strategy is a small object with an ``aggregate_fit`` hook; the arithmetic lives
in the pure functions of :mod:`fedledger.trainer.aggregate`, which are the contract's
(:mod:`fedledger.chaincode.aggregation`): the endorsing peers recompute every aggregate of FedAvg and FedAdam
from the round's rules, so a strategy on a ledger must be the one those rules name (:meth:`server_optimizer`,
:func:`strategy_from_rules`). A strategy with server state (FedAdam's moments)
exposes it through :meth:`Strategy.state_dict` / :meth:`Strategy.load_state_dict`; :func:`save_strategy_state`
and :func:`load_strategy_state` keep it in a checkpoint file tied to the global model it belongs to, so that a
restarted aggregator continues with the same state (the round driver does this after every commit).
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.tensors import NDState
from fedledger.trainer.aggregate import FedAdamState, ServerOptimizer, aggregate

__all__ = [
    "FedAdam",
    "FedAvg",
    "Strategy",
    "StrategyMismatch",
    "StrategyStateError",
    "check_strategy",
    "load_strategy_state",
    "make_strategy",
    "save_strategy_state",
    "strategy_from_rules",
]

logger = logging.getLogger(__name__)


class Strategy(ABC):
    """Turns the global state and the round's accepted ``(delta, num_samples)`` pairs into a new global state."""

    name: str = "strategy"

    @abstractmethod
    def aggregate_fit(
        self,
        server_round: int,
        global_state: Mapping[str, Any],
        results: Sequence[tuple[Mapping[str, Any], int]],
    ) -> NDState:
        """Return the new global state. ``results`` are client deltas (new - global) with sample counts.

        Parameters
        ----------
        server_round:
            The round being finalised (1-based).
        global_state:
            The adapter state the clients started from.
        results:
            Accepted deltas and their sample counts, in a canonical order (e.g. sorted by update hash).
        """

    def state_dict(self) -> dict[str, Any]:
        """Server-side state to persist between rounds (empty for stateless strategies)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state_dict` returned."""

    def describe(self) -> dict[str, Any]:
        """Name and hyper-parameters, e.g. for a model card."""
        return {"name": self.name}

    def server_optimizer(self) -> ServerOptimizer | None:
        """The contract's name for this strategy's server step, or None if the contract cannot recompute it (a
        baseline of experiments/): only the contract's own strategies can commit to a ledger."""
        return None


class FedAvg(Strategy):
    """Sample-weighted FedAvg of deltas: ``global + server_lr * sum_i n_i/N * delta_i``."""

    name = "fedavg"

    def __init__(self, *, server_lr: float = 1.0):
        if not server_lr > 0:
            raise ValueError(f"The 'server_lr' parameter of FedAvg must be > 0. Got {server_lr!r} instead.")
        self.server_lr = server_lr

    def aggregate_fit(
        self,
        server_round: int,
        global_state: Mapping[str, Any],
        results: Sequence[tuple[Mapping[str, Any], int]],
    ) -> NDState:
        logger.debug("round %d: FedAvg of %d updates", server_round, len(results))
        return aggregate(global_state, results, self.server_optimizer())[0]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "server_lr": self.server_lr}

    def server_optimizer(self) -> ServerOptimizer:
        return ServerOptimizer("fedavg", server_lr=self.server_lr)


class FedAdam(Strategy):
    """FedAvg of deltas as pseudo-gradient, then an Adam step on the server (Reddi et al. 2021)."""

    name = "fedadam"

    def __init__(self, *, eta: float = 1e-2, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3):
        problems = []
        if not eta > 0:
            problems.append(f"eta must be > 0 (got {eta!r})")
        if not 0 <= beta_1 < 1 or not 0 <= beta_2 < 1:
            problems.append(f"beta_1 and beta_2 must be in [0, 1) (got {beta_1!r}, {beta_2!r})")
        if not tau > 0:
            problems.append(f"tau must be > 0 (got {tau!r})")
        if problems:
            raise ValueError("Invalid FedAdam parameters: " + "; ".join(problems) + ".")
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        self.moments = FedAdamState()

    def aggregate_fit(
        self,
        server_round: int,
        global_state: Mapping[str, Any],
        results: Sequence[tuple[Mapping[str, Any], int]],
    ) -> NDState:
        new_state, moments = aggregate(global_state, results, self.server_optimizer(), self.moments)
        assert moments is not None
        self.moments = moments
        return new_state

    def state_dict(self) -> dict[str, Any]:
        return {"m": dict(self.moments.m), "v": dict(self.moments.v), "step": self.moments.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.moments = FedAdamState(
            m=dict(state.get("m", {})), v=dict(state.get("v", {})), step=int(state.get("step", 0))
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "eta": self.eta, "beta_1": self.beta_1, "beta_2": self.beta_2, "tau": self.tau}

    def server_optimizer(self) -> ServerOptimizer:
        return ServerOptimizer("fedadam", eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau)


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """``"fedavg"`` or ``"fedadam"`` with keyword hyper-parameters."""
    strategies: dict[str, type[Strategy]] = {"fedavg": FedAvg, "fedadam": FedAdam}
    if name not in strategies:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {sorted(strategies)}.")
    return strategies[name](**kwargs)


def strategy_from_rules(rules: Any) -> Strategy:
    """The strategy a round's :class:`~fedledger.chaincode.records.Rules` name (``server_optimizer`` and its
    parameters): the one whose aggregates the endorsing peers accept."""
    optimizer = ServerOptimizer.from_rules(rules)
    params = {k: v for k, v in optimizer.describe().items() if k != "name"}
    return make_strategy(optimizer.name, **params)


class StrategyMismatch(ValueError):
    """A strategy other than the one the round's rules name: the endorsing peers would refuse its aggregate."""


def check_strategy(strategy: Strategy, rules: Any) -> None:
    """Raises :class:`StrategyMismatch` unless ``strategy`` computes the server step ``rules`` name."""
    wanted = ServerOptimizer.from_rules(rules)
    have = strategy.server_optimizer()
    if have is None or not have.same_as(wanted):
        raise StrategyMismatch(
            f"the rules (version {rules.version}) aggregate with {wanted.describe()}, but the round driver's strategy "
            f"is {strategy.describe()}: run it with the strategy the rules name (strategy_from_rules), or change the "
            "rules (server_optimizer and its parameters) by a rules proposal"
        )


class StrategyStateError(RuntimeError):
    """A strategy checkpoint that cannot be restored for this ledger."""


def _previous(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def save_strategy_state(strategy: Strategy, path: Path | str, *, model_hash: str) -> None:
    """Write ``strategy.state_dict()`` atomically: arrays as safetensors, the rest as JSON, with ``model_hash``.

    Written before the commit of ``model_hash``; the checkpoint it replaces is kept beside it (``.prev``) so
    that a commit that never happened leaves a checkpoint for the model the ledger does have. A state dict is a
    mapping whose values are numbers, strings, or mappings of names to arrays (FedAdam's ``m`` and ``v``).
    """
    from safetensors.numpy import save

    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in strategy.state_dict().items():
        if isinstance(value, Mapping):
            arrays.update({f"{key}/{name}": np.ascontiguousarray(a) for name, a in value.items()})
            scalars.setdefault("_groups", []).append(key)
        else:
            scalars[key] = value
    metadata = {"strategy": json.dumps(strategy.describe(), sort_keys=True), "model": model_hash}
    metadata["scalars"] = json.dumps(scalars, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(save(arrays, metadata=metadata) if arrays else save({"_": np.zeros(0, np.float32)}, metadata))
    if path.exists():
        os.replace(path, _previous(path))
    os.replace(tmp, path)


def load_strategy_state(strategy: Strategy, path: Path | str, *, model_hash: str) -> bool:
    """Restore the checkpoint written by :func:`save_strategy_state` for ``model_hash`` into ``strategy``.

    Returns True when restored, False when there is no checkpoint. Raises :class:`StrategyStateError` when the
    checkpoint belongs to another strategy configuration, or when neither it nor the one before it belongs to
    ``model_hash`` (the ledger's latest model): continuing then would build a model that no replay of the
    ledger reproduces.
    """
    path = Path(path)
    candidates = [p for p in (path, _previous(path)) if p.exists()]
    if not candidates:
        return False
    models = []
    for candidate in candidates:
        metadata, arrays = _read_checkpoint(candidate)
        if metadata.get("model") == model_hash:
            _restore(strategy, candidate, metadata, arrays)
            return True
        models.append(metadata.get("model"))
    raise StrategyStateError(
        f"{path} holds the strategy state after model(s) {models}, but the ledger's latest model is {model_hash}: "
        "restore the checkpoint of that run, or start a new run"
    )


def _read_checkpoint(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        arrays = {key: handle.get_tensor(key) for key in handle.keys() if key != "_"}  # noqa: SIM118
    return metadata, arrays


def _restore(strategy: Strategy, path: Path, metadata: Mapping[str, str], arrays: Mapping[str, np.ndarray]) -> None:
    if json.loads(metadata.get("strategy", "{}")) != strategy.describe():
        raise StrategyStateError(
            f"{path} holds the state of {metadata.get('strategy')}, not of {strategy.describe()}: "
            "run the aggregator with the strategy it started with"
        )
    scalars = json.loads(metadata.get("scalars", "{}"))
    state: dict[str, Any] = {k: v for k, v in scalars.items() if k != "_groups"}
    for group in scalars.get("_groups", []):
        prefix = f"{group}/"
        state[group] = {key[len(prefix) :]: a for key, a in arrays.items() if key.startswith(prefix)}
    strategy.load_state_dict(state)
    logger.info("restored %s state from %s (model %s)", strategy.name, path, metadata.get("model"))
