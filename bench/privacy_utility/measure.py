"""Measures privacy against utility: one federated run per (recipe, ε, seed) in its own process, then medians."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.bench.ml import breast_cancer, offline

logger = logging.getLogger("bench.privacy_utility")

STUDY = "privacy_utility"
METRICS = ("accuracy", "precision", "recall", "f1")
#: The all-layer adapter (LoRA r=8 on every layer's query/value + head), measured side by side: the demo's DP
#: recipe before the "pooler" adapter, and the demo's non-private recipe (its best model, the reference).
OLD_RECIPE = {"optimizer": "sgd", "learning_rate": 0.15, "batch_size": 64, "epochs": 2, "lora": "all"}
OLD_RECIPE_NO_DP = {"optimizer": "adamw", "learning_rate": 3e-3, "batch_size": 16, "epochs": 2, "lora": "all"}


def epsilon_label(epsilon: float) -> str:
    """ε as the tables show it (``∞`` for the non-private runs)."""
    return "∞" if math.isinf(epsilon) else f"{epsilon:g}"


def jobs(
    epsilons: Sequence[float], seeds: Sequence[int], *, members: int, rounds: int, previous: bool, threads: int
) -> list[dict[str, Any]]:
    """The runs of a study: the demo recipe at every ε and seed, and (``previous``) the all-layer adapter's
    recipes at ε = 8 and ∞ on the first seed (the "before": at ε = 8 it stayed at the majority class)."""
    out = [
        {"recipe": "demo", "epsilon": e, "seed": s, "members": members, "rounds": rounds}
        for s in seeds
        for e in epsilons
    ]
    if previous:
        out += [
            {"recipe": "previous", "epsilon": e, "seed": s, "members": members, "rounds": rounds}
            for s in seeds[:1]
            for e in (8.0, math.inf)
        ]
    return [{**j, "threads": threads} for j in out]


def run_one(job: Mapping[str, Any]) -> dict[str, Any]:
    """One federated run (one recipe, one ε, one seed), in its own process."""
    offline()
    import torch

    torch.set_num_threads(int(job["threads"]))
    logging.basicConfig(level=logging.WARNING)
    from dataclasses import replace

    from fedledger.experiments.demo_setup import (
        demo_adapter,
        demo_privacy_config,
        demo_train_config,
        load_demo_model,
    )
    from fedledger.experiments.simulation import SimulationConfig, run_simulation

    epsilon, seed, recipe = float(job["epsilon"]), int(job["seed"]), job["recipe"]
    dp = not math.isinf(epsilon)
    # ε = ∞ runs the DP recipe's adapter and hyperparameters without DP: the gap is what DP costs.
    train = demo_train_config(epsilon=epsilon if dp else 8.0, seed=seed)
    lora = demo_adapter(8.0)
    if recipe == "previous":
        old = OLD_RECIPE if dp else OLD_RECIPE_NO_DP
        train = replace(
            train,
            optimizer=old["optimizer"],
            learning_rate=old["learning_rate"],
            batch_size=old["batch_size"],
            epochs=old["epochs"],
        )
        lora = "all"
    model, tokenizer, label = load_demo_model("minilm", seed, lora=lora)
    privacy = demo_privacy_config(epsilon, rounds=int(job["rounds"])) if dp else None
    started = time.perf_counter()
    result = run_simulation(
        model,
        tokenizer,
        breast_cancer(),
        config=SimulationConfig(
            num_clients=int(job["members"]), rounds=int(job["rounds"]), partition="dirichlet", alpha=1.0, seed=seed
        ),
        train=train,
        privacy=privacy,
    )
    seconds = time.perf_counter() - started
    per_round = [{"round": 0, **{m: float(result.initial_metrics[m]) for m in METRICS}}]
    per_round += [{"round": r.round, **{m: float(r.metrics[m]) for m in METRICS}} for r in result.rounds]
    spent = [c.metadata.get("epsilon") for c in result.rounds[-1].clients]
    sigmas = [c.metadata.get("noise_multiplier") for c in result.rounds[-1].clients]
    return {
        "recipe": recipe,
        "epsilon": epsilon,
        "seed": seed,
        "model": label,
        "final": per_round[-1],
        "rounds": per_round,
        "epsilon_spent_max": max((e for e in spent if e is not None), default=None),
        "noise_multiplier": sigmas,
        "steps": [c.metadata.get("steps") for c in result.rounds[-1].clients],
        "samples": [c.metadata.get("num_samples") for c in result.rounds[-1].clients],
        "train": {k: v for k, v in vars(train).items() if k != "progress"},
        "privacy": None if privacy is None else {k: v for k, v in vars(privacy).items()},
        "seconds": round(seconds, 1),
    }


def gradient_anatomy(samples: int = 29) -> dict[str, float]:
    """Where the per-sample gradient of the demo model lies at round 0, and how much DP noise each coordinate gets.

    DP-SGD clips each sample's whole gradient to ``max_grad_norm`` and adds noise of the same size to every
    trainable coordinate; if almost all of the gradient sits in a few coordinates, or in a direction common
    to all inputs, the rest is learned from noise alone.
    """
    import torch

    from fedledger.experiments.demo_setup import load_demo_model
    from fedledger.trainer.data import to_tensor_dataset

    model, tokenizer, _ = load_demo_model("minilm", 0)
    data = breast_cancer()
    rows = data.subset(list(range(0, len(data), max(1, len(data) // samples))))
    tensors = to_tensor_dataset(rows, tokenizer, task="classification", max_length=64)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head, lora = [], []
    model.train()
    for i in range(len(tensors)):
        ids, mask, label = (t.unsqueeze(0) for t in tensors[i])
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, label)
        loss.backward()
        head.append(sum(float(p.grad.norm() ** 2) for n, p in params if "lora_" not in n) ** 0.5)
        lora.append(sum(float(p.grad.norm() ** 2) for n, p in params if "lora_" in n) ** 0.5)
    model.eval()
    with torch.no_grad():
        ids = torch.stack([tensors[i][0] for i in range(len(tensors))])
        mask = torch.stack([tensors[i][1] for i in range(len(tensors))])
        pooled = model.base_model.model.bert(input_ids=ids, attention_mask=mask).pooler_output
    return {
        "samples": len(tensors),
        "trainable_parameters": sum(p.numel() for _, p in params),
        "head_grad_norm_median": statistics.median(head),
        "lora_grad_norm_median": statistics.median(lora),
        "pooled_norm_mean": float(pooled.norm(dim=1).mean()),
        "pooled_spread_mean": float((pooled - pooled.mean(0)).norm(dim=1).mean()),
    }


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over seeds per (recipe, ε)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["recipe"], run["epsilon"]), []).append(run)
    rows = []
    for (recipe, epsilon), group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "demo", -kv[0][1])):
        row: dict[str, Any] = {"recipe": recipe, "epsilon": epsilon_label(epsilon), "seeds": len(group)}
        for m in METRICS:
            values = [g["final"][m] for g in group]
            row[m] = round(statistics.median(values), 4)
            row[f"{m}_min"] = round(min(values), 4)
            row[f"{m}_max"] = round(max(values), 4)
        spent = [g["epsilon_spent_max"] for g in group if g["epsilon_spent_max"] is not None]
        row["epsilon_spent_max"] = round(max(spent), 3) if spent else None
        row["seconds_median"] = round(statistics.median(g["seconds"] for g in group), 1)
        rows.append(row)
    return rows


def run_all(jobs: Sequence[Mapping[str, Any]], *, workers: int) -> list[dict[str, Any]]:
    """Every job through :func:`run_one`, ``workers`` processes at a time, in job order."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for run in tqdm(pool.map(run_one, jobs), total=len(jobs), desc="runs", unit="run"):
            logger.info(
                "%s ε=%s seed %d: %s (%.0fs)",
                run["recipe"],
                epsilon_label(run["epsilon"]),
                run["seed"],
                {m: round(v, 3) for m, v in run["final"].items()},
                run["seconds"],
            )
            runs.append(run)
    return runs


def demo_recipe(rounds: int) -> dict[str, Any]:
    """The demo's DP recipe as the page describes it: training settings, adapter, and DP settings at ε = 8."""
    from fedledger.experiments.demo_setup import demo_privacy_config, demo_train_config

    return {
        "demo_train": {k: v for k, v in vars(demo_train_config(epsilon=8.0)).items() if k != "progress"},
        "demo_lora": "r=1, alpha=1 on the pooler's dense layer, plus the head (experiments.demo_setup.DEMO_LORA_DP)",
        "demo_privacy": {
            k: v for k, v in vars(demo_privacy_config(8.0, rounds=rounds)).items() if k != "target_epsilon"
        },
    }
