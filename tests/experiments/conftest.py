"""Experiments tests use the trainer tests' tiny models and the same rule: not collected without the training
extra (torch, peft, opacus)."""

from tests.trainer.conftest import *  # noqa: F403
