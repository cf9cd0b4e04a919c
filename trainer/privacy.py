"""DP-SGD through Opacus: one configuration object and one helper around ``PrivacyEngine``.

Privacy accounting across rounds: a client that trains in several rounds on the same data composes the
privacy loss of all its steps. :func:`make_private` therefore takes the accountant ``history`` of earlier
rounds; :meth:`PrivateSession.epsilon` is the cumulative ε after this round, which is what a ledger budget
check must see. With ``target_epsilon`` the noise multiplier is calibrated so that ``rounds`` rounds of
``epochs`` local epochs together spend ``target_epsilon``.

Known hazard (opacus issue 820): wrapping a peft model before moving it to its device can leave the LoRA
weights untouched without any error. :func:`make_private` moves the model to ``device`` first and hooks it
without wrapping (``wrap_model=False``); :class:`~fedledger.trainer.local_trainer.LocalTrainer` additionally checks
after every round that the adapter weights changed.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "ACCOUNTANTS",
    "PrivacyConfig",
    "PrivacyConfigError",
    "PrivateSession",
    "compute_epsilon",
    "make_private",
    "noise_multiplier_for",
]

logger = logging.getLogger(__name__)

#: Accountants accepted by :class:`PrivacyConfig` (Opacus names).
ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")

#: Noise multipliers above this are refused: nothing useful is learned under that much noise.
MAX_NOISE_MULTIPLIER = 100.0

#: One accountant history entry, as Opacus stores it: (noise_multiplier, sample_rate, steps).
HistoryEntry = tuple[float, float, int]


class PrivacyConfigError(ValueError):
    """All problems of a privacy configuration, collected and raised once."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("Invalid privacy configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """DP-SGD settings for a client. Give exactly one of ``target_epsilon`` or ``noise_multiplier``.

    Attributes
    ----------
    target_epsilon:
        ε the client may spend over ``rounds`` rounds; the noise multiplier is derived from it.
    target_delta:
        δ of the (ε, δ) guarantee; should be well below 1 / (number of local samples).
    noise_multiplier:
        Noise standard deviation relative to ``max_grad_norm`` (instead of ``target_epsilon``).
    max_grad_norm:
        Per-sample gradient clipping norm.
    accountant:
        ``"rdp"`` (Rényi DP) or ``"prv"`` (privacy random variables, tighter).
    poisson_sampling:
        Sample each batch by Poisson sampling (required for the accountant's guarantee).
    ghost_clipping:
        Use Opacus' ghost clipping (``grad_sample_mode="ghost"``): no per-sample gradients are stored.
    rounds:
        Number of federated rounds the ``target_epsilon`` budget must cover.
    secure_mode:
        Cryptographically secure noise (needs the ``torchcsprng`` package).
    """

    target_epsilon: float | None = None
    target_delta: float = 1e-5
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    poisson_sampling: bool = True
    ghost_clipping: bool = False
    rounds: int = 1
    secure_mode: bool = False

    def problems(self) -> list[str]:
        """Every configuration problem, as sentences that say what to change (empty if valid)."""
        out: list[str] = []
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            out.append(
                "Give exactly one of target_epsilon (derive the noise) or noise_multiplier (fixed noise); got "
                f"target_epsilon={self.target_epsilon!r}, noise_multiplier={self.noise_multiplier!r}."
            )
        if self.target_epsilon is not None and not (math.isfinite(self.target_epsilon) and self.target_epsilon > 0):
            out.append(f"target_epsilon must be a finite number > 0. Got {self.target_epsilon!r} instead.")
        if self.noise_multiplier is not None and not (
            math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0
        ):
            out.append(f"noise_multiplier must be a finite number >= 0. Got {self.noise_multiplier!r} instead.")
        if not 0.0 < self.target_delta < 1.0:
            out.append(f"target_delta must be in (0, 1), e.g. 1e-5. Got {self.target_delta!r} instead.")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            out.append(f"max_grad_norm must be a finite number > 0. Got {self.max_grad_norm!r} instead.")
        if self.accountant not in ACCOUNTANTS:
            out.append(f"accountant must be one of {ACCOUNTANTS}. Got {self.accountant!r} instead.")
        if not (isinstance(self.rounds, int) and self.rounds >= 1):
            out.append(f"rounds must be an integer >= 1. Got {self.rounds!r} instead.")
        if self.secure_mode and importlib.util.find_spec("torchcsprng") is None:
            out.append("secure_mode=True needs the torchcsprng package; install it or set secure_mode=False.")
        return out

    def validate(self) -> PrivacyConfig:
        """Raise :class:`PrivacyConfigError` listing every problem at once; return ``self`` if valid."""
        problems = self.problems()
        if problems:
            raise PrivacyConfigError(problems)
        return self


def compute_epsilon(history: Sequence[HistoryEntry], *, delta: float, accountant: str = "rdp") -> float:
    """ε after the steps in ``history`` [(noise_multiplier, sample_rate, steps), ...] with Opacus' accountant.

    Pure accounting: this is what a verifier recomputes from the reported noise, sample rate and steps.
    """
    from opacus.accountants import create_accountant

    if not history:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(acc.get_epsilon(delta=delta))


def noise_multiplier_for(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp"
) -> float:
    """Smallest noise multiplier (to Opacus' tolerance) that keeps ``steps`` steps within ``target_epsilon``."""
    try:
        return _noise_multiplier(float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant)
    except PrivacyConfigError:
        raise
    except ValueError as exc:
        raise PrivacyConfigError(
            [
                f"target_epsilon={target_epsilon} is too small for {steps} steps at sample rate "
                f"{sample_rate:.4f} ({exc}). Raise target_epsilon, train fewer epochs/rounds, or use larger "
                "batches."
            ]
        ) from exc


@functools.lru_cache(maxsize=256)
def _noise_multiplier(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    # A binary search over the accountant (~2 s for RDP); every client of a round asks the same question.
    from opacus.accountants.utils import get_noise_multiplier

    floor = compute_epsilon([(MAX_NOISE_MULTIPLIER, sample_rate, steps)], delta=delta, accountant=accountant)
    if floor > target_epsilon:
        raise PrivacyConfigError(
            [
                f"target_epsilon={target_epsilon} is too small for {steps} steps at sample rate {sample_rate:.4f}: "
                f"even noise multiplier {MAX_NOISE_MULTIPLIER:g} spends ε={floor:.3g}. Raise target_epsilon, "
                "train fewer epochs/rounds, or use larger batches."
            ]
        )

    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
        )
    )


class _PerSampleLoss(nn.Module):
    """Cross-entropy with one loss per sample, as Opacus' ghost clipping expects.

    For classification ``logits`` is [B, C] and ``target`` [B]. For causal LMs ``logits`` is [B, T, V] and
    ``target`` [B, T] (the input ids, padding = -100); the loss of a sample is its mean next-token loss.
    ``reduction`` ("mean", "sum" or "none") is an attribute because Opacus switches it.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 3:
            shifted = logits[:, :-1, :].float()
            labels = target[:, 1:]
            token_loss = nn.functional.cross_entropy(
                shifted.reshape(-1, shifted.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="none"
            ).view(labels.shape)
            valid = (labels != -100).sum(dim=1).clamp(min=1)
            per_sample = token_loss.sum(dim=1) / valid
        else:
            per_sample = nn.functional.cross_entropy(logits.float(), target, reduction="none")
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample.mean()


def per_sample_loss(reduction: str = "mean") -> nn.Module:
    """The loss :class:`~fedledger.trainer.local_trainer.LocalTrainer` uses, with or without DP."""
    return _PerSampleLoss(reduction)


@dataclass
class PrivateSession:
    """What :func:`make_private` returns: the DP optimizer, loader and loss, and the accountant.

    Use ``module`` (the original model: it is hooked, not wrapped), ``optimizer``, ``data_loader`` and
    ``criterion`` for training; call :meth:`close` afterwards to remove the hooks.
    """

    module: nn.Module
    optimizer: Any
    data_loader: Any
    criterion: Callable[..., Any]
    engine: Any
    hooks: Any
    noise_multiplier: float
    sample_rate: float
    delta: float
    accountant: str
    previous_history: list[HistoryEntry] = field(default_factory=list)

    @property
    def history(self) -> list[HistoryEntry]:
        """Accountant history including earlier rounds: [(noise_multiplier, sample_rate, steps), ...]."""
        return [(float(s), float(q), int(n)) for s, q, n in self.engine.accountant.history]

    @property
    def steps(self) -> int:
        """Optimizer steps taken in this session."""
        before = sum(n for _, _, n in self.previous_history)
        return sum(n for _, _, n in self.history) - before

    def epsilon(self) -> float:
        """Cumulative ε (earlier rounds included) at ``delta``."""
        if not self.engine.accountant.history:
            return 0.0
        return float(self.engine.accountant.get_epsilon(delta=self.delta))

    def round_epsilon(self) -> float:
        """ε of this session's steps alone."""
        steps = self.steps
        if steps == 0:
            return 0.0
        entry = (self.noise_multiplier, self.sample_rate, steps)
        return compute_epsilon([entry], delta=self.delta, accountant=self.accountant)

    def close(self) -> None:
        """Remove Opacus' hooks and per-sample attributes from the model."""
        if self.hooks is not None:
            self.hooks.cleanup()
            self.hooks = None


def make_private(
    *,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: torch.utils.data.DataLoader,
    config: PrivacyConfig,
    epochs: int = 1,
    device: torch.device | str | None = None,
    history: Sequence[HistoryEntry] = (),
    noise_generator: torch.Generator | None = None,
) -> PrivateSession:
    """Make a training setup differentially private with Opacus.

    ``module`` is moved to ``device`` *before* Opacus attaches its hooks (opacus issue 820). ``optimizer``
    must have been built over ``module``'s trainable parameters. ``history`` holds the accountant entries of
    the client's earlier rounds so that ε composes across rounds.
    """
    from opacus import PrivacyEngine

    config.validate()
    if epochs < 1:
        raise PrivacyConfigError([f"epochs must be >= 1. Got {epochs!r} instead."])
    if device is not None:
        module.to(device)
    model_params = {id(p) for p in module.parameters()}
    opt_params = [p for group in optimizer.param_groups for p in group["params"]]
    problems = []
    if any(id(p) not in model_params for p in opt_params):
        problems.append(
            "The optimizer holds parameters that are not the module's (was the model moved or re-wrapped "
            "after the optimizer was built?). Move the model to its device first, then build the optimizer."
        )
    devices = {p.device for p in opt_params}
    if len(devices) > 1:
        problems.append(f"Trainable parameters are on several devices {devices}; move the model to one first.")
    n = len(data_loader.dataset)  # type: ignore[arg-type]
    if n == 0:
        problems.append("The training data is empty.")
    elif config.target_delta >= 1.0 / n:
        logger.warning(
            "target_delta=%g is not below 1/n = %g for %d samples; the (ε, δ) guarantee is weak.",
            config.target_delta,
            1.0 / n,
            n,
        )
    if problems:
        raise PrivacyConfigError(problems)

    sample_rate = 1.0 / len(data_loader)
    steps_per_epoch = len(data_loader)
    if config.noise_multiplier is not None:
        sigma = float(config.noise_multiplier)
    else:
        assert config.target_epsilon is not None
        sigma = noise_multiplier_for(
            target_epsilon=config.target_epsilon,
            delta=config.target_delta,
            sample_rate=sample_rate,
            steps=steps_per_epoch * epochs * config.rounds,
            accountant=config.accountant,
        )
    with warnings.catch_warnings():
        # Opacus warns on every engine without secure_mode; PrivacyConfig.secure_mode documents the choice.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=config.accountant, secure_mode=config.secure_mode)
    previous = [(float(s), float(q), int(k)) for s, q, k in history]
    engine.accountant.history = list(previous)
    mode = "ghost" if config.ghost_clipping else "hooks"
    criterion = per_sample_loss("mean")
    from opacus.validators.errors import UnsupportedModuleError

    module.train()
    try:
        result: Any = engine.make_private(  # a 3- or 4-tuple: with ghost clipping it adds the DP loss
            module=module,
            optimizer=optimizer,
            criterion=criterion,  # pyright: ignore[reportArgumentType]  # opacus takes any loss module
            data_loader=data_loader,
            noise_multiplier=sigma,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=config.poisson_sampling,
            grad_sample_mode=mode,
            wrap_model=False,
            noise_generator=None if config.secure_mode else noise_generator,
        )
    except UnsupportedModuleError as exc:
        raise PrivacyConfigError(
            [
                f"Opacus cannot compute per-sample gradients for this model: {exc}. Freeze the offending layers "
                "or replace them (opacus.validators.ModuleValidator.fix)."
            ]
        ) from exc
    if config.ghost_clipping:
        hooks, dp_optimizer, dp_criterion, dp_loader = result
    else:
        hooks, dp_optimizer, dp_loader = result
        dp_criterion = criterion
    logger.info(
        "DP-SGD: noise multiplier %.4f, clip %.3g, sample rate %.4f, %s accountant, %s clipping",
        sigma,
        config.max_grad_norm,
        sample_rate,
        config.accountant,
        "ghost" if config.ghost_clipping else "per-sample",
    )
    return PrivateSession(
        module=module,
        optimizer=dp_optimizer,
        data_loader=dp_loader,
        criterion=dp_criterion,
        engine=engine,
        hooks=hooks,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        delta=config.target_delta,
        accountant=config.accountant,
        previous_history=previous,
    )
