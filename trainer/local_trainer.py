"""One client's local training round: global adapter in, LoRA delta (new - global) out.

:class:`LocalTrainer` knows nothing about the ledger: the caller fetches and verifies the global adapter,
calls :meth:`LocalTrainer.train_round`, serialises ``result.delta`` with
:func:`fedledger.trainer.serialization.encode` and submits it with ``result.metadata()``.

Every round checks that the adapter weights changed (see :func:`check_adapter_updated`): a silent no-op round
(opacus issue 820, a zero learning rate, frozen parameters) raises :class:`AdapterNotUpdatedError` instead of
submitting a zero update.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedledger.trainer.data import TextDataset, to_tensor_dataset
from fedledger.trainer.models import Task, get_adapter_state, set_adapter_state
from fedledger.trainer.privacy import HistoryEntry, PrivacyConfig, make_private, per_sample_loss

__all__ = [
    "AdapterNotUpdatedError",
    "LocalTrainer",
    "RoundResult",
    "TrainConfig",
    "TrainingDivergedError",
    "check_adapter_updated",
]

logger = logging.getLogger(__name__)


class AdapterNotUpdatedError(RuntimeError):
    """Local training finished but the adapter weights did not change."""


class TrainingDivergedError(RuntimeError):
    """Local training produced NaN or infinite adapter weights."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Local optimisation settings of a client."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-3
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = 0.0
    max_length: int = 128
    device: str = "cpu"
    seed: int = 0
    progress: bool = False

    def validate(self) -> TrainConfig:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs!r})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size!r})")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            problems.append(f"learning_rate must be a finite number >= 0 (got {self.learning_rate!r})")
        if self.optimizer not in ("adamw", "sgd"):
            problems.append(f"optimizer must be 'adamw' or 'sgd' (got {self.optimizer!r})")
        if self.max_length < 2:
            problems.append(f"max_length must be >= 2 (got {self.max_length!r})")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems) + ".")
        return self


@dataclass
class RoundResult:
    """What a client produced in one round. ``delta`` is new - global, float32 CPU tensors sorted by name."""

    delta: dict[str, torch.Tensor]
    num_samples: int
    train_loss: float
    steps: int
    seconds: float
    epsilon: float | None = None
    round_epsilon: float | None = None
    dp_delta: float | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    max_grad_norm: float | None = None
    accountant: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable metadata to submit beside the update bytes."""
        return {
            "num_samples": self.num_samples,
            "train_loss": self.train_loss,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "dp": self.epsilon is not None,
            "epsilon": self.epsilon,
            "round_epsilon": self.round_epsilon,
            "delta": self.dp_delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "max_grad_norm": self.max_grad_norm,
            "accountant": self.accountant,
        }


def check_adapter_updated(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], *, steps: int) -> None:
    """Raise :class:`AdapterNotUpdatedError` unless training changed the adapter.

    Raises :class:`TrainingDivergedError` first if any weight is NaN or infinite.

    Every tensor must change, except ``lora_A`` tensors after a single step: ``lora_B`` starts at zero, so
    ``lora_A`` receives no gradient in the very first step.
    """
    broken = [name for name in after if not torch.isfinite(after[name]).all()]
    if broken:
        raise TrainingDivergedError(
            f"Local training produced NaN/inf in {len(broken)} adapter tensors (e.g. {broken[0]}); the update is "
            "not submitted. Lower the learning rate or the clipping norm, and check the data for empty rows."
        )
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    if steps <= 1:
        unchanged = [name for name in unchanged if "lora_A" not in name]
    if steps == 0 or unchanged:
        shown = ", ".join(unchanged[:4]) + (" ..." if len(unchanged) > 4 else "")
        raise AdapterNotUpdatedError(
            f"Local training ran {steps} optimizer steps but {len(unchanged)} of {len(before)} adapter tensors "
            f"did not change ({shown or 'all'}). Nothing would be learned from this update, so it is not "
            "submitted. Check the learning rate (> 0), that the model was moved to its device before Opacus "
            "hooked it (opacus issue 820), and that the LoRA parameters require grad."
        )


class LocalTrainer:
    """Trains a peft model for one round from a given global adapter state.

    Parameters
    ----------
    model:
        A peft model (see :func:`fedledger.trainer.models.apply_lora`); it is reused across rounds, only
        its adapter weights are overwritten with the global state at the start of each round.
    task:
        ``"classification"`` or ``"causal_lm"``.
    train:
        Local optimisation settings.
    privacy:
        DP-SGD settings, or ``None`` to train without differential privacy.
    tokenizer:
        Needed when :meth:`train_round` gets a :class:`~fedledger.trainer.data.TextDataset`.

    The accountant history of earlier rounds is kept in :attr:`history`, so ``epsilon`` in each result is
    the cumulative ε of this client; persist and restore :attr:`history` to resume after a crash.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        task: Task = "classification",
        train: TrainConfig | None = None,
        privacy: PrivacyConfig | None = None,
        tokenizer: Any = None,
    ):
        self.model = model
        self.task: Task = task
        self.train = (train or TrainConfig()).validate()
        self.privacy = privacy.validate() if privacy is not None else None
        self.tokenizer = tokenizer
        self.history: list[HistoryEntry] = []

    def _dataset(self, data: TextDataset | Dataset[Any]) -> Dataset[Any]:
        if isinstance(data, TextDataset):
            if self.tokenizer is None:
                raise ValueError("train_round got a TextDataset but LocalTrainer has no tokenizer; pass one.")
            return to_tensor_dataset(data, self.tokenizer, task=self.task, max_length=self.train.max_length)
        return data

    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        cfg = self.train
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.9, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def _run_epochs(
        self,
        model: nn.Module,
        loader: Any,
        optimizer: Any,
        criterion: Any,
        round_id: int,
        on_empty: Callable[[], None] | None = None,
    ) -> list[float]:
        """The local optimisation loop; returns the loss of every optimizer step."""
        from tqdm.auto import tqdm

        cfg = self.train
        losses: list[float] = []
        with (
            warnings.catch_warnings(),
            tqdm(
                total=cfg.epochs * len(loader), desc=f"round {round_id} local", disable=not cfg.progress, leave=False
            ) as bar,
        ):
            # Opacus' hooks on LoRA layers whose inputs need no grad: harmless, but printed every step.
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            for _ in range(cfg.epochs):
                for batch in loader:
                    bar.update(1)
                    input_ids, mask, labels = (t.to(cfg.device) for t in batch)
                    if input_ids.shape[0] == 0:
                        logger.warning("skipping an empty Poisson-sampled batch")
                        if on_empty is not None:
                            on_empty()
                        continue
                    optimizer.zero_grad(set_to_none=True)
                    logits = model(input_ids=input_ids, attention_mask=mask).logits
                    loss = criterion(logits, labels)
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.item()))
                    bar.set_postfix(loss=f"{losses[-1]:.4f}")
        return losses

    def train_round(
        self, global_state: Mapping[str, Any], data: TextDataset | Dataset[Any], *, round_id: int = 0
    ) -> RoundResult:
        """Load ``global_state``, train on ``data`` and return the delta and its metadata."""
        cfg = self.train
        start = time.perf_counter()
        dataset = self._dataset(data)
        num_samples = len(dataset)  # type: ignore[arg-type]
        if num_samples == 0:
            raise ValueError("The client has no training samples this round.")
        seed = cfg.seed * 1_000_003 + round_id
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)

        # Move first, then build the optimizer, then let Opacus hook the model (opacus issue 820).
        target = torch.device(cfg.device)
        if any(p.device.type != target.type for p in self.model.parameters()):
            logger.warning(
                "the model is not on %s; moving it now. With a GPU, build it with apply_lora(..., device=%r) so "
                "that it is moved before LoRA wraps it (opacus issue 820).",
                cfg.device,
                cfg.device,
            )
        model = self.model.to(cfg.device)
        set_adapter_state(model, global_state)
        before = get_adapter_state(model)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise AdapterNotUpdatedError("The model has no trainable parameters; apply LoRA with apply_lora().")
        optimizer = self._optimizer(params)
        loader: DataLoader[Any] = DataLoader(
            dataset, batch_size=min(cfg.batch_size, num_samples), shuffle=True, generator=generator
        )
        criterion: Any = per_sample_loss("mean")
        model.train()
        session = None
        if self.privacy is not None:
            session = make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                config=self.privacy,
                epochs=cfg.epochs,
                device=cfg.device,
                history=self.history,
                noise_generator=torch.Generator(device=cfg.device).manual_seed(seed + 7),
            )
            optimizer, loader, criterion = session.optimizer, session.data_loader, session.criterion

        try:
            on_empty: Callable[[], None] | None = None
            if session is not None:
                # Count a skipped empty batch as a step anyway: over-reports ε slightly, never under-reports.
                sigma, rate, acc = session.noise_multiplier, session.sample_rate, session.engine.accountant

                def count_empty_step() -> None:
                    acc.step(noise_multiplier=sigma, sample_rate=rate)

                on_empty = count_empty_step
            losses = self._run_epochs(model, loader, optimizer, criterion, round_id, on_empty)
        finally:
            if session is not None:
                session.close()
            model.eval()
            optimizer.zero_grad(set_to_none=True)
        steps = len(losses)

        after = get_adapter_state(model)
        check_adapter_updated(before, after, steps=steps)
        delta = {name: after[name] - before[name] for name in after}
        result = RoundResult(
            delta=delta,
            num_samples=num_samples,
            train_loss=float(sum(losses) / len(losses)) if losses else float("nan"),
            steps=steps,
            seconds=time.perf_counter() - start,
        )
        if session is not None and self.privacy is not None:
            self.history = session.history
            result.steps = session.steps  # accountant steps (includes skipped empty batches)
            result.epsilon = session.epsilon()
            result.round_epsilon = session.round_epsilon()
            result.dp_delta = self.privacy.target_delta
            result.noise_multiplier = session.noise_multiplier
            result.sample_rate = session.sample_rate
            result.max_grad_norm = self.privacy.max_grad_norm
            result.accountant = self.privacy.accountant
            result.history = list(self.history)
        logger.info(
            "round %d: %d samples, %d steps, loss %.4f, eps %s, %.1fs",
            round_id,
            num_samples,
            steps,
            result.train_loss,
            "off" if result.epsilon is None else f"{result.epsilon:.3f}",
            result.seconds,
        )
        return result
