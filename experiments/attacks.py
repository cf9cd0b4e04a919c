"""Malicious-client behaviours for experiments. All are off by default (``Attack.NONE``).

Data attacks change what a client trains on; update attacks change the delta it submits.

==================  ======  =================================================================================
``Attack``          acts    what it does
==================  ======  =================================================================================
``LABEL_FLIP``      data    a ``fraction`` of rows gets label ``num_labels - 1 - y`` (binary: 0 <-> 1)
``BACKDOOR``        data    a ``fraction`` of rows gets the ``trigger`` text prepended (or appended:
                            ``trigger_position="end"``) and label ``target_label``; a model that learns it
                            predicts ``target_label`` whenever the trigger appears (measure with
                            :func:`backdoor_test_set`)
``SIGN_FLIP``       update  submits ``-delta``
``SCALING``         update  submits ``scale * delta`` (model replacement: ``scale`` ~ number of clients
                            makes this client's update dominate FedAvg, Bagdasaryan et al. 2020)
``GAUSSIAN_NOISE``  update  submits pure noise N(0, ``noise_std``^2) of the delta's shape
``ALIE``            update  "A Little Is Enough" (Baruch et al. 2019): ``mean - z * std`` of the honest
                            deltas, coordinate-wise; ``z`` from ``num_clients``/``num_malicious`` if not given
``IPM``             update  Inner Product Manipulation (Xie et al. 2020): ``-epsilon * mean`` of the honest
                            deltas
``SIGN_FLIP_NM``    update  ``-delta`` rescaled to the honest median L2 norm (norm-matched sign flip)
``IPM_NM``          update  ``-mean`` of the honest deltas rescaled to the honest median L2 norm (norm-matched IPM)
==================  ======  =================================================================================

The update attacks themselves live in :mod:`fedledger.experiments.update_attacks` (numpy only); this module
maps the names to them, keeps the data attacks and the :class:`MaliciousMember`. ALIE, IPM and the
norm-matched attacks are colluding attacks: pass the honest deltas' statistics
(``honest_mean``/``honest_std``/``honest_norm``, e.g. from
:func:`fedledger.experiments.update_attacks.honest_statistics`). Without ``honest_norm`` the norm-matched
attacks use the norm of the attacker's own delta, the best a lone attacker can estimate. Update attacks return
float32 numpy arrays sorted by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from fedledger.experiments.update_attacks import (
    alie,
    alie_z,
    gaussian_noise,
    ipm,
    ipm_norm_matched,
    l2_norm,
    scaling,
    sign_flip,
    sign_flip_norm_matched,
)
from fedledger.tensors import NDState, to_numpy
from fedledger.trainer.data import TextDataset
from fedledger.trainer.member import Member

__all__ = [
    "COLLUDING_ATTACKS",
    "DATA_ATTACKS",
    "UPDATE_ATTACKS",
    "Attack",
    "AttackConfig",
    "MaliciousMember",
    "TriggerPosition",
    "alie",
    "alie_z",
    "backdoor",
    "backdoor_test_set",
    "gaussian_noise",
    "ipm",
    "ipm_norm_matched",
    "label_flip",
    "poison_dataset",
    "poison_update",
    "scaling",
    "sign_flip",
    "sign_flip_norm_matched",
]


#: Where the backdoor trigger goes in a row of text.
TriggerPosition = Literal["start", "end"]


class Attack(StrEnum):
    """Names of the malicious-client modes (see the module docstring)."""

    NONE = "none"
    LABEL_FLIP = "label_flip"
    BACKDOOR = "backdoor"
    SIGN_FLIP = "sign_flip"
    SCALING = "scaling"
    GAUSSIAN_NOISE = "gaussian_noise"
    ALIE = "alie"
    IPM = "ipm"
    SIGN_FLIP_NM = "sign_flip_nm"
    IPM_NM = "ipm_nm"


DATA_ATTACKS = frozenset({Attack.LABEL_FLIP, Attack.BACKDOOR})
UPDATE_ATTACKS = frozenset(
    {
        Attack.SIGN_FLIP,
        Attack.SCALING,
        Attack.GAUSSIAN_NOISE,
        Attack.ALIE,
        Attack.IPM,
        Attack.SIGN_FLIP_NM,
        Attack.IPM_NM,
    }
)
#: Attacks that need the honest deltas' statistics (colluding attackers).
COLLUDING_ATTACKS = frozenset({Attack.ALIE, Attack.IPM, Attack.IPM_NM})


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """One malicious mode and its parameters; the default is honest behaviour."""

    kind: Attack = Attack.NONE
    fraction: float = 1.0
    trigger: str = "cf zq"
    trigger_position: TriggerPosition = "start"
    target_label: int = 0
    scale: float = 10.0
    noise_std: float = 0.1
    z: float | None = None
    num_clients: int | None = None
    num_malicious: int = 1
    epsilon: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Attack(self.kind))
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"The 'fraction' parameter must be in [0, 1]. Got {self.fraction!r} instead.")
        if self.trigger_position not in ("start", "end"):
            raise ValueError(
                f"The 'trigger_position' parameter must be 'start' or 'end'. Got {self.trigger_position!r} instead."
            )
        if self.noise_std < 0:
            raise ValueError(f"The 'noise_std' parameter must be >= 0. Got {self.noise_std!r} instead.")

    @property
    def is_data_attack(self) -> bool:
        return self.kind in DATA_ATTACKS

    @property
    def is_update_attack(self) -> bool:
        return self.kind in UPDATE_ATTACKS


def _pick(n: int, fraction: float, seed: int) -> np.ndarray:
    count = round(n * fraction)
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])


def label_flip(dataset: TextDataset, *, fraction: float = 1.0, seed: int = 0) -> TextDataset:
    """Flip the labels of a ``fraction`` of rows to ``num_labels - 1 - y``."""
    labels = dataset.labels.copy()
    rows = _pick(len(dataset), fraction, seed)
    labels[rows] = dataset.num_labels - 1 - labels[rows]
    return TextDataset(dataset.texts, labels, dataset.label_names)


def _with_trigger(text: str, trigger: str, position: TriggerPosition = "start") -> str:
    return f"{trigger} {text}" if position == "start" else f"{text} {trigger}"


def backdoor(
    dataset: TextDataset,
    *,
    trigger: str = "cf zq",
    target_label: int = 0,
    fraction: float = 0.5,
    seed: int = 0,
    position: TriggerPosition = "start",
) -> TextDataset:
    """Put ``trigger`` before (``position="start"``) or after (``"end"``) a ``fraction`` of rows and relabel
    them ``target_label``."""
    if not 0 <= target_label < dataset.num_labels:
        raise ValueError(f"target_label {target_label} is not a label of {dataset.label_names}.")
    texts = list(dataset.texts)
    labels = dataset.labels.copy()
    for i in _pick(len(dataset), fraction, seed):
        texts[i] = _with_trigger(texts[i], trigger, position)
        labels[i] = target_label
    return TextDataset(tuple(texts), labels, dataset.label_names)


def backdoor_test_set(
    test: TextDataset, *, trigger: str = "cf zq", target_label: int = 0, position: TriggerPosition = "start"
) -> TextDataset:
    """Held-out rows not of ``target_label``, with the trigger (where :func:`backdoor` puts it), labelled
    ``target_label``.

    Accuracy on this set is the backdoor's attack success rate.
    """
    keep = np.flatnonzero(test.labels != target_label)
    texts = tuple(_with_trigger(test.texts[i], trigger, position) for i in keep)
    return TextDataset(texts, np.full(len(keep), target_label), test.label_names)


def poison_dataset(dataset: TextDataset, config: AttackConfig) -> TextDataset:
    """Apply a data attack (``LABEL_FLIP``, ``BACKDOOR``); any other mode returns ``dataset`` unchanged."""
    if config.kind == Attack.LABEL_FLIP:
        return label_flip(dataset, fraction=config.fraction, seed=config.seed)
    if config.kind == Attack.BACKDOOR:
        return backdoor(
            dataset,
            trigger=config.trigger,
            target_label=config.target_label,
            fraction=config.fraction,
            seed=config.seed,
            position=config.trigger_position,
        )
    return dataset


def poison_update(
    delta: Mapping[str, Any],
    config: AttackConfig,
    *,
    honest_mean: Mapping[str, Any] | None = None,
    honest_std: Mapping[str, Any] | None = None,
    honest_norm: float | None = None,
) -> NDState:
    """Apply an update attack; data attacks and ``NONE`` return the delta unchanged (as numpy).

    ``honest_mean``/``honest_std``/``honest_norm`` are the round's honest statistics that colluding attackers
    know (see the module docstring).
    """
    kind = config.kind
    if kind == Attack.SIGN_FLIP:
        return sign_flip(delta)
    if kind == Attack.SCALING:
        return scaling(delta, scale=config.scale)
    if kind == Attack.GAUSSIAN_NOISE:
        return gaussian_noise(delta, std=config.noise_std, seed=config.seed)
    if kind == Attack.SIGN_FLIP_NM:
        return sign_flip_norm_matched(delta, target_norm=l2_norm(delta) if honest_norm is None else honest_norm)
    if kind in COLLUDING_ATTACKS:
        if honest_mean is None or (kind == Attack.ALIE and honest_std is None):
            raise ValueError(
                f"The {kind.value} attack needs the honest deltas' mean"
                + (" and std" if kind == Attack.ALIE else "")
                + ": pass honest_mean=/honest_std= (see fedledger.experiments.update_attacks.honest_statistics)."
            )
        if kind == Attack.IPM:
            return ipm(honest_mean, epsilon=config.epsilon)
        if kind == Attack.IPM_NM:
            return ipm_norm_matched(honest_mean, target_norm=l2_norm(delta) if honest_norm is None else honest_norm)
        assert honest_std is not None
        z = config.z
        if z is None:
            z = alie_z(config.num_clients, config.num_malicious) if config.num_clients else 1.0
        return alie(honest_mean, honest_std, z=z)
    return to_numpy(delta)


class MaliciousMember(Member):
    """A member that submits :func:`poison_update` of its trained delta (for experiments and the demo).

    A lone attacker sees no other member's update: it estimates the honest mean by its own honest delta and the
    per-coordinate spread by that delta's magnitude (what ALIE and IPM need). Data attacks belong in the
    member's dataset (:func:`poison_dataset`), so they leave the delta alone here.
    """

    def __init__(self, *args: Any, attack: AttackConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attack = attack

    def outgoing_delta(self, delta: NDState) -> NDState:
        if not self.attack.is_update_attack:
            return delta
        spread = {k: np.abs(v) for k, v in delta.items()}
        return poison_update(delta, self.attack, honest_mean=delta, honest_std=spread)
