"""The tensor codec (fedledger.tensors): safetensors wire format, manifests and their checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load

from fedledger.tensors import (
    TensorFormatError,
    check_manifest,
    decode,
    encode,
    manifest,
    num_parameters,
    sha256_hex,
)


def _state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "base_model.model.layer.0.q.lora_B.weight": rng.normal(size=(8, 2)).astype(np.float32),
        "base_model.model.layer.0.q.lora_A.weight": rng.normal(size=(2, 8)).astype(np.float32),
        "base_model.model.score.weight": rng.normal(size=(2, 8)).astype(np.float32),
    }


def test_round_trip_preserves_names_values_and_order():
    state = _state()
    parsed = decode(encode(state), expected=manifest(state))
    assert list(parsed) == sorted(state)
    for name, array in state.items():
        assert parsed[name].dtype == np.float32
        np.testing.assert_array_equal(parsed[name], array)


def test_bytes_are_deterministic_across_input_order_and_tensor_library():
    state = _state()
    reversed_state = dict(reversed(list(state.items())))
    as_torch = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    blobs = {encode(state), encode(reversed_state), encode(as_torch)}
    assert len(blobs) == 1
    assert sha256_hex(blobs.pop()) == sha256_hex(encode(_state()))


def test_float64_and_float16_inputs_are_written_as_f32():
    state = {"a": np.ones((2, 2), dtype=np.float64), "b": torch.ones(3, dtype=torch.float16)}
    data = encode(state)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert {header["a"]["dtype"], header["b"]["dtype"]} == {"F32"}


def test_plain_safetensors_numpy_load_reads_the_bytes():
    # This is what the contract does with the transient bytes.
    state = _state()
    loaded = load(encode(state))
    assert manifest(loaded) == manifest(state)


def test_manifest_format():
    assert manifest(_state()) == {
        "base_model.model.layer.0.q.lora_A.weight": [[2, 8], "F32"],
        "base_model.model.layer.0.q.lora_B.weight": [[8, 2], "F32"],
        "base_model.model.score.weight": [[2, 8], "F32"],
    }
    assert manifest({"t": torch.zeros(4, 3)}) == {"t": [[4, 3], "F32"]}
    assert json.loads(json.dumps(manifest(_state()))) == manifest(_state())
    assert num_parameters(manifest(_state())) == 48 == num_parameters(_state())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s.pop("base_model.model.score.weight"), "missing 1"),
        (lambda s: s.update(extra=np.zeros(1, np.float32)), "unexpected 1"),
        (lambda s: s.update({"base_model.model.score.weight": np.zeros((3, 8), np.float32)}), "shape [3, 8]"),
        (lambda s: s["base_model.model.score.weight"].__setitem__((0, 0), np.nan), "NaN or Inf"),
        (lambda s: s["base_model.model.score.weight"].__setitem__((0, 0), np.inf), "NaN or Inf"),
    ],
)
def test_invalid_updates_are_rejected(mutate, fragment):
    expected = manifest(_state())
    state = _state()
    mutate(state)
    with pytest.raises(TensorFormatError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        decode(encode(state), expected=expected)


def test_a_dtype_other_than_the_manifests_is_rejected():
    from safetensors.numpy import save

    expected = {"a": [[2], "F32"]}
    for dtype, name in ((np.float16, "F16"), (np.float64, "F64")):
        with pytest.raises(TensorFormatError, match=f"dtype {name}; the base model has F32"):
            decode(save({"a": np.ones(2, dtype=dtype)}), expected=expected)
    assert decode(save({"a": np.ones(2, dtype=np.float64)}))["a"].dtype == np.float64  # no manifest: any float


def test_integer_tensors_are_rejected_even_without_a_manifest():
    from safetensors.numpy import save

    with pytest.raises(TensorFormatError, match="dtype int32"):
        decode(save({"a": np.ones(2, dtype=np.int32)}))


def test_encode_like_a_manifest_writes_its_dtype():
    data = encode(_state(), like={k: [v[0], "F64"] for k, v in manifest(_state()).items()})
    assert {spec[1] for spec in manifest(decode(data)).values()} == {"F64"}


@pytest.mark.parametrize("data", [b"", b"garbage", b"\xff" * 16])
def test_garbage_is_rejected(data):
    with pytest.raises(TensorFormatError, match="not a valid safetensors file"):
        decode(data)


def test_check_manifest_reports_nothing_for_a_match():
    assert check_manifest(_state(), manifest(_state())) == []


def test_an_empty_state_cannot_be_encoded():
    with pytest.raises(TensorFormatError):
        encode({})
