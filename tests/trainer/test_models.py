"""Offline model loading, tiny models, LoRA defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import PreTrainedModel

from fedledger.trainer.models import (
    DEFAULT_TARGET_MODULES,
    LoraSettings,
    ModelLoadError,
    apply_lora,
    get_adapter_state,
    load_adapter_file,
    load_model,
    minilm_path,
    save_adapter,
    tiny_model,
)


def _pretrained(model: nn.Module) -> PreTrainedModel:
    """The loaders are typed as returning an nn.Module; what they return is a transformers model."""
    assert isinstance(model, PreTrainedModel), type(model)
    return model


def test_minilm_weights_ship_in_site_packages():
    path = minilm_path()
    assert "site-packages" in str(path)
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()


def test_minilm_loads_offline_with_bert_lora_defaults():
    model, tokenizer = load_model("all-MiniLM-L6-v2", num_labels=2, seed=0)
    config = _pretrained(model).config
    assert config.model_type == "bert" and config.hidden_size == 384
    peft_model = apply_lora(model)
    names = list(get_adapter_state(peft_model))
    assert any(".attention.self.query.lora_A.weight" in n for n in names)
    assert any(".attention.self.value.lora_B.weight" in n for n in names)
    assert "base_model.model.classifier.weight" in names
    assert not any(".key." in n for n in names)
    batch = tokenizer(["radius 17.99, texture 10.38"], return_tensors="pt")
    with torch.no_grad():
        assert peft_model(**batch).logits.shape == (1, 2)


def test_same_seed_gives_the_same_base_model_and_adapter():
    a, _ = load_model("all-MiniLM-L6-v2", seed=4)
    b, _ = load_model("all-MiniLM-L6-v2", seed=4)
    assert isinstance(a.classifier, nn.Linear) and isinstance(b.classifier, nn.Linear)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    sa, sb = get_adapter_state(apply_lora(a, seed=1)), get_adapter_state(apply_lora(b, seed=1))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_model_fails_offline_with_next_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="local Hugging Face cache.*Pass a directory"):
        load_model("some-org/not-a-cached-model")


@pytest.mark.parametrize(
    ("kind", "target"), [("gpt2", ".attn.c_attn."), ("llama", ".self_attn.q_proj."), ("bert", ".attention.self.query.")]
)
def test_tiny_models_get_architecture_defaults(kind, target):
    model, _ = tiny_model(kind, seed=0)
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    names = list(get_adapter_state(apply_lora(model)))
    assert any(target in n for n in names)
    assert _pretrained(model).config.model_type in DEFAULT_TARGET_MODULES


def test_target_modules_and_head_are_overridable():
    model, _ = tiny_model("llama", seed=0)
    peft_model = apply_lora(model, settings=LoraSettings(r=2, target_modules=["o_proj"], train_head=False))
    state = get_adapter_state(peft_model)
    assert all(".o_proj.lora_" in n for n in state)
    assert any(t.shape[0] == 2 for n, t in state.items() if "lora_A" in n)


def test_tiny_models_are_deterministic_and_causal_lm_works():
    a, _ = tiny_model("gpt2", task="causal_lm", seed=2)
    b, _ = tiny_model("gpt2", task="causal_lm", seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    names = list(get_adapter_state(apply_lora(a, task="causal_lm")))
    assert names and all("lora_" in n for n in names)


def test_bad_arguments_explain_themselves():
    with pytest.raises(ValueError, match="'kind' parameter"):
        tiny_model("t5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoder"):
        tiny_model("bert", task="causal_lm")
    with pytest.raises(ValueError, match="'task' parameter"):
        load_model("all-MiniLM-L6-v2", task="seq2seq")  # type: ignore[arg-type]
    model, _ = tiny_model("llama")
    # deliberately shadows transformers' class-level model_type on this instance: the unknown architecture under test
    _pretrained(model).config.model_type = "exotic"  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(ValueError, match="No default LoRA target modules"):
        apply_lora(model)


def test_saved_peft_adapter_has_the_wire_names(tmp_path):
    model, _ = tiny_model("gpt2", seed=0)
    peft_model = apply_lora(model, seed=0)
    state = {k: v + 0.25 for k, v in get_adapter_state(peft_model).items()}
    out = save_adapter(peft_model, tmp_path / "adapter", state)
    assert (out / "adapter_config.json").is_file()
    loaded = load_adapter_file(out)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_adapter_file(tmp_path / "nowhere")
