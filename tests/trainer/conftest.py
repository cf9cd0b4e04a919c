"""Trainer tests: tiny models only, no hub access, two CPU threads.

Without the training extra (torch, peft, opacus) these tests are not collected, with a warning.
"""

from __future__ import annotations

import os
import warnings

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

try:
    import opacus  # noqa: F401
    import peft  # noqa: F401
    import torch
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    collect_ignore_glob = ["test_*.py"]
    warnings.warn(
        f"tests/trainer not collected: {exc.name} is missing; install the training extra: pip install -e '.[train]'",
        stacklevel=1,
    )
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def tiny_llama():
    """A tiny classification Llama with LoRA applied, and its tokenizer."""
    from fedledger.trainer.models import apply_lora, tiny_model

    model, tokenizer = tiny_model("llama", seed=0)
    return apply_lora(model, seed=0), tokenizer


@pytest.fixture
def keyword_data():
    from fedledger.trainer.data import synthetic_keyword_dataset

    return synthetic_keyword_dataset(96, seed=1)
