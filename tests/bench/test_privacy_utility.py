"""The privacy-utility study's pure parts: the job list, the medians, the target's verdict and the tables."""

from __future__ import annotations

import math

from fedledger.bench.privacy_utility.measure import epsilon_label, jobs, summarise
from fedledger.bench.privacy_utility.render import diagnosis, summary_table, verdict


def _run(recipe: str, epsilon: float, seed: int, accuracy: float, recall: float = 0.5, spent: float | None = 7.9):
    final = {"round": 3, "accuracy": accuracy, "precision": 0.5, "recall": recall, "f1": 0.5}
    return {
        "recipe": recipe,
        "epsilon": epsilon,
        "seed": seed,
        "final": final,
        "rounds": [{"round": 0, "accuracy": 0.628}, final],
        "epsilon_spent_max": None if math.isinf(epsilon) else spent,
        "noise_multiplier": [1.2, 1.5] if not math.isinf(epsilon) else [None, None],
        "samples": [90, 120],
        "privacy": None if math.isinf(epsilon) else {"max_grad_norm": 1.0},
        "seconds": 10.0 + seed,
    }


def _runs() -> list[dict]:
    return [
        _run("demo", 8.0, 0, 0.885),
        _run("demo", 8.0, 1, 0.628, spent=7.95),
        _run("demo", 8.0, 2, 0.903),
        _run("demo", math.inf, 0, 0.628),
        _run("demo", math.inf, 1, 0.65),
        _run("demo", math.inf, 2, 0.64),
        _run("previous", 8.0, 0, 0.628, recall=0.0),
        _run("previous", math.inf, 0, 0.903),
    ]


def test_jobs_cover_every_epsilon_and_seed_and_the_previous_recipes_on_the_first_seed():
    todo = jobs([8.0, math.inf], [0, 1], members=4, rounds=3, previous=True, threads=1)
    assert [(j["recipe"], epsilon_label(j["epsilon"]), j["seed"]) for j in todo] == [
        ("demo", "8", 0),
        ("demo", "∞", 0),
        ("demo", "8", 1),
        ("demo", "∞", 1),
        ("previous", "8", 0),
        ("previous", "∞", 0),
    ]
    assert all(j["members"] == 4 and j["rounds"] == 3 and j["threads"] == 1 for j in todo)
    assert len(jobs([8.0], [0], members=4, rounds=3, previous=False, threads=2)) == 1


def test_summary_takes_medians_and_ranges_over_seeds_demo_first_largest_epsilon_first():
    summary = summarise(_runs())
    assert [(s["recipe"], s["epsilon"]) for s in summary] == [
        ("demo", "∞"),
        ("demo", "8"),
        ("previous", "∞"),
        ("previous", "8"),
    ]
    eight = summary[1]
    assert eight["seeds"] == 3 and eight["accuracy"] == 0.885
    assert (eight["accuracy_min"], eight["accuracy_max"]) == (0.628, 0.903)
    assert eight["epsilon_spent_max"] == 7.95 and eight["seconds_median"] == 11.0
    assert summary[0]["epsilon_spent_max"] is None


def test_verdict_compares_epsilon_8_with_the_better_non_private_reference():
    met, text = verdict(summarise(_runs()))
    assert met is True
    assert text.startswith("**met**: median accuracy at ε = 8 is 0.885")
    assert "0.640 for the same recipe without DP (gap -24.5 points)" in text
    assert "0.903 for the demo's non-private recipe (Adam on all layers) (gap 1.8 points)" in text
    assert "Seeds at ε = 8 range 0.628-0.903" in text and "reached 0.628 at ε = 8 in the same run" in text


def test_verdict_misses_beyond_the_target_and_without_the_runs_it_needs():
    runs = [_run("demo", 8.0, 0, 0.80), _run("demo", math.inf, 0, 0.90)]
    met, text = verdict(summarise(runs))
    assert met is False and text.startswith("**missed**") and "(gap 10.0 points)" in text
    assert verdict(summarise([_run("demo", 8.0, 0, 0.80)])) == (None, "not measured (needs ε = 8 and ε = ∞)")
    met, text = verdict(summarise([_run("demo", 8.0, 0, 0.90, recall=0.0), _run("demo", math.inf, 0, 0.90)]))
    assert met is False and "predicts one class only" in text


def test_tables_and_diagnosis_show_the_numbers():
    table = summary_table(summarise(_runs()))
    assert "| demo | 8 | 3 | 0.885 | 0.5 | 0.5 | 0.5 | 7.95 |" in table
    anatomy = {
        "samples": 29,
        "trainable_parameters": 74498,
        "head_grad_norm_median": 0.5,
        "lora_grad_norm_median": 0.01,
        "pooled_norm_mean": 1.25,
        "pooled_spread_mean": 0.16,
    }
    text = diagnosis({"anatomy": anatomy, "runs": _runs()})
    assert "74,498 trainable parameters" in text and "noise multiplier is 1.20-1.50 for 90-120 rows" in text
