from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the federation tests need the 'train' extra (torch, transformers, peft, opacus)")
