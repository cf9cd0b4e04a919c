"""Renders the robustness results: the plots, the sections of docs/bench-robustness.md and the page itself.

The page leads (in its opening, before the reproduce command and the machine) with the discrimination table
(can the benchmark tell defending from doing nothing?) and issue 11's targets; then the side-by-side accuracy
tables at each fraction, detection rates, plots and the set-up's reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.bench.harness import DOCS, RESULTS, markdown_table, plots_section, pyplot, save_figure, save_page
from fedledger.bench.robustness.grid import HEADLINE, JUDGING, NORM_MATCHED, Setup, detector_sources
from fedledger.bench.robustness.summary import (
    BAR_ASR,
    BAR_POINTS,
    accuracy_table,
    detection_table,
    discrimination_table,
    fmt_rate,
    mean,
    pooled,
    target_table,
)

SETUP_CHOICE = """\
Measured before choosing (2026-12-02, this machine, FedAvg, one torch thread per process, seeds 0-2):

- **Cost.** One local training of the tiny BERT (hidden 64, LoRA r=8 + head, 2 epochs of ~23 rows) takes
  0.04-0.06 s; a 5-round cell of 20 clients 2-5 s (round 1 is shared by a process's cells, so are rounds whose
  base model two cells share). The detector-aware attack runs the contract's detector on the whole round for
  every candidate (a jitter ladder, doubling, then 8 bisection steps): 13-20 s per cell with the detector of
  2026-12-02 (an isolation forest of 200 trees, 0.25-0.45 s a run). The full grid (810 cells) was estimated
  at ~66 min of compute, ~33 min on 2 processes; `--quick` (140 cells, 3 rounds) took 8.4 min on one
  process of a machine shared with other jobs.
- **Warm start.** From its random initialisation the model predicts the majority class (0.628) for its first
  3-4 rounds of clean FedAvg over 20 clients whatever the learning rate (0.03-0.06, 2-4 epochs, batch 8 or
  16; lr 0.1 diverges). An attack on a model that has learnt nothing cannot cost accuracy, and the clean
  run's final accuracy then depends on when it happens to leave the plateau. Every cell therefore starts from
  the model after `warm_rounds` clean FedAvg rounds over all clients' true counts (the consortium's starting
  model, computed once per seed); the clean run then holds 0.90-0.95 from its first round.
- **20 % malicious, undefended, true sample counts** (the attackers hold ~20 % of FedAvg's weight): see
  "Without inflated counts" below; most attacks cost little, which is why the weight an attacker can
  declare matters.
"""

DECLARED = """\
Honest clients declare their true sample counts. The participant ids (`client-NNN`) carry no MSP prefix, so
for `chaincode.weights.round_weights` every client is its own organisation and both caps (`max_participant_share`
and `max_organisation_share`, 0.5 by default) bound each client's share; nothing bounds a group's. Each
malicious client declares the smallest count at which its capped share binds: the count that would give it
the cap on its own beside all honest clients, `ceil(H * c / (1 - c))` for the honest total `H` and cap `c`
(= `H` at 0.5). A lone accepted attacker then holds exactly the cap; declaring more would only raise the share
of several accepted colluders together. The column "attackers' FedAvg weight" is their share of the
contract's weights per round (capped shares of the accepted updates), averaged over rounds and seeds.

Those are the weights of plain sample-weighted FedAvg (rules `weight_samples_bound: null`,
`weight_norm_clip: false`), which the warm-up and every cell but fedledger's use. fedledger's cells run the
default rules: declared samples count up to `weight_samples_bound` (1) times the median of the round's accepted
updates, an update above the median sketch norm weighs `median / its norm` as much, and each weight is multiplied
by `max(0.01, cosine with the round's centre)` and by `max(0.01, 1 - largest cosine with another update)`
(`weights.weight_values`).
"""

ATTACK_NOTES = """\
- `sign_flip` -own delta; `scaling` x10 own delta (model replacement, Bagdasaryan et al.); `gaussian_noise`
  fresh N(0, sigma^2) each round with sigma = `noise_norm` x the honest median norm / √d, i.e. a noise of 10x the
  honest norm (Fang et al. and FLTrust use variance 200 in absolute units, far larger than these updates);
  `alie` mean - z·std with the paper's z_max for (n, m); `ipm` -ε·honest mean, ε = 0.5 (Xie et al.);
  `sign_flip_nm`/`ipm_nm` the same directions at the honest median norm; `label_flip` all rows; `backdoor`
  trigger "cf zq" appended to half the rows, label benign (ASR: triggered, truly malignant held-out rows
  labelled benign).
- ALIE, IPM and IPM-NM colluders submit one common update; like the adaptive ones they submit jittered copies
  of it, since SubmitUpdate refuses a byte copy of an update already in the round. The rounds here refuse what
  SubmitUpdate refuses after decoding (byte copies, norms over `max_update_norm`) for every defence; a refused
  update counts as not used (column "refused" of the per-round CSV).
- Adaptive, colluding with full knowledge of the round's honest updates, each attacker submitting a jittered
  copy (relative jitter 1e-3, no two byte-identical) of one update: `min_max`/`min_sum` (Shejwalkar &
  Houmansadr, NDSS'21, unit perturbation); `sybil`: copies of the first colluder's sign-flipped own delta (one
  attacker's update under many identities); `under_threshold`: the honest
  mean pushed against itself as far as the contract's own detector still accepts every copy, found by
  bisection against `chaincode.verdicts.detect` run on the round exactly as FinalizeRound will run it (same
  participants in the same order, the declared samples, the rules and the previous accepted direction).
"""

TRUE_COUNTS = """\
Measured before choosing (2026-12-02, seeds 0-2, this set-up but every client declaring its true count, so the
4 attackers hold ~20 % of FedAvg's weight; undefended FedAvg, 20 % malicious, mean final accuracy over seeds,
clean 0.929): sign_flip 0.858, scaling 0.717, gaussian_noise 0.912, alie 0.923, ipm 0.906, sign_flip_nm
0.888, ipm_nm 0.897, label_flip 0.853, backdoor 0.926 (ASR 0.44, clean 0.14), min_max 0.876, min_sum 0.867,
sybil 0.891, under_threshold 0.912. Only scaling costs 10 points: with true counts a fifth of the clients
barely move a converged FedAvg, so the study could not tell a defence from none. With the counts the rules
allow (above), the same attacks hold 0.80 of the weight.
"""

READING = """\
- Accuracies are means over seeds with (min-max) or ± std; one held-out row is 0.9 points (114 rows).
- Krum keeps one update, Multi-Krum n - f (f = the number of attackers, `no_attack_f` without attack): their
  TPR/FPR count the updates they did not use. Median, trimmed mean, NNM, ARC, geometric median and centered
  clipping have no per-update verdict (n/a).
- When an attack has wrecked the global model, some adapter tensors of an honest client can get no gradient
  (saturated attention); the trainer then refuses to submit (its guard against opacus issue 820). The study
  keeps the client's real delta (zero in those tensors) instead; the run's JSON counts these trainings
  ("stalled_trainings", ~50 per seed in the undefended cells).
- The robust baselines are unweighted (byzfl's rules); only `fedavg` and `fedledger` use the contract's
  capped weights, so inflated counts hurt exactly those two when an attacker is accepted.
"""


def plot_heatmap(rows: Sequence[Mapping[str, Any]], setup: Setup, fraction: float) -> Path:
    """Mean final accuracy per attack x defence at ``fraction``."""
    plt = pyplot()
    attacks = ["none", *setup.attacks]
    index = {(r["attack"], r["defence"]): r["accuracy"] for r in rows if r["fraction"] in (0.0, fraction)}
    values = np.array([[index.get((a, d), np.nan) for d in setup.defences] for a in attacks])
    fig, ax = plt.subplots(figsize=(11, 7))
    image = ax.imshow(values, cmap="RdYlGn", vmin=0.35, vmax=0.95, aspect="auto")
    ax.set_xticks(range(len(setup.defences)), setup.defences, rotation=30, ha="right")
    ax.set_yticks(range(len(attacks)), attacks)
    for i in range(len(attacks)):
        for j in range(len(setup.defences)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="final held-out accuracy (mean over seeds)")
    pct = round(100 * fraction)
    ax.set_title(f"Final accuracy, {pct} % malicious (no-attack row: no attacker)")
    return save_figure(fig, RESULTS / f"robustness_accuracy_{pct}.png")


def plot_detection(rows: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    """TPR and FPR of the judging defences per attack at the headline fraction."""
    plt = pyplot()
    index = {(r["attack"], r["defence"]): r for r in rows if r["fraction"] == HEADLINE}
    judges = [d for d in JUDGING if d in setup.defences]
    fig, axes = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    width = 0.8 / max(len(judges), 1)
    x = np.arange(len(setup.attacks))
    for k, defence in enumerate(judges):
        for ax, key in zip(axes, ("tpr", "fpr"), strict=True):
            values = [index.get((a, defence), {}).get(key, np.nan) for a in setup.attacks]
            ax.bar(x + (k - (len(judges) - 1) / 2) * width, values, width, label=defence)
    axes[0].axhline(0.90, color="k", ls="--", lw=0.8)
    axes[1].axhline(0.05, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("TPR (rounds pooled)")
    axes[1].set_ylabel("FPR (rounds pooled)")
    axes[0].legend(ncol=3, fontsize=8)
    axes[1].set_xticks(x, setup.attacks, rotation=30, ha="right")
    axes[0].set_title(f"Detection at {int(HEADLINE * 100)} % malicious (dashed: targets)")
    return save_figure(fig, RESULTS / "robustness_detection_20.png")


def plot_rounds(cells: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    """Held-out accuracy per round (mean over seeds), one panel per attack."""
    plt = pyplot()
    attacks = ["none", *setup.attacks]
    cols = 5
    n_rows = (len(attacks) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(16, 3.2 * n_rows), sharey=True, squeeze=False)
    for ax, attack in zip(axes.ravel(), attacks, strict=False):
        for defence in setup.defences:
            runs = [
                [r["accuracy"] for r in c["rounds"]]
                for c in cells
                if c["attack"] == attack and c["defence"] == defence and c["fraction"] in (0.0, HEADLINE)
            ]
            if runs:
                curve = np.mean(np.array(runs), axis=0)
                ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=defence)
        ax.set_title(attack, fontsize=9)
        ax.set_xlabel("round")
    for ax in axes.ravel()[len(attacks) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"Held-out accuracy per round, {int(HEADLINE * 100)} % malicious (mean over seeds)")
    return save_figure(fig, RESULTS / "robustness_rounds_20.png")


def plot_fractions(rows: Sequence[Mapping[str, Any]], setup: Setup) -> Path:
    """Final accuracy against the malicious fraction for the attacks that separate the defences."""
    plt = pyplot()
    attacks = [a for a in ("scaling", *NORM_MATCHED, "min_max", "under_threshold") if a in setup.attacks]
    fig, axes = plt.subplots(1, len(attacks), figsize=(4 * len(attacks), 3.5), sharey=True, squeeze=False)
    for ax, attack in zip(axes[0], attacks, strict=True):
        for defence in setup.defences:
            points = sorted(
                (r["fraction"], r["accuracy"]) for r in rows if r["attack"] == attack and r["defence"] == defence
            )
            if points:
                ax.plot([100 * p for p, _ in points], [a for _, a in points], marker="o", label=defence)
        ax.set_title(attack)
        ax.set_xlabel("malicious clients (%)")
    axes[0, 0].set_ylabel("final accuracy")
    axes[0, 0].legend(fontsize=6)
    return save_figure(fig, RESULTS / "robustness_fractions.png")


def setup_text(setup: Setup, seeds: Sequence[int], cells: Sequence[Mapping[str, Any]], detector: str) -> str:
    """The set-up in one paragraph: data, clients, model, rounds, defences, compute time, detector version."""
    majority = mean([c["majority"] for c in cells])
    samples = {c["seed"]: c["client_samples"] for c in cells}
    sources = ", ".join(p.name for p in detector_sources())
    return (
        f"{setup.clients} clients (Dirichlet alpha = {setup.alpha} label skew, at least "
        f"{setup.min_client_samples} rows each; rows per client by seed: "
        + "; ".join(f"seed {s}: {v}" for s, v in sorted(samples.items()))
        + f"). Breast-cancer Wisconsin as text, {int(setup.test_fraction * 100)} % held out (majority-class "
        f"accuracy {majority:.3f}). Tiny random BERT (hidden {setup.hidden_size}) + LoRA r={setup.lora_r} and "
        f"head, AdamW lr {setup.learning_rate}, {setup.epochs} local epochs, batch {setup.batch_size}, max length "
        f"{setup.max_length}. Every cell starts from the model after {setup.warm_rounds} clean FedAvg rounds and "
        f"runs {setup.rounds} rounds; seeds {', '.join(map(str, seeds))}. Defence `fedledger` is the contract's "
        "verdict (sketch features from the bytes → `chaincode.verdicts.detect` with the round seed, the rules and the "
        "previous accepted direction → FedAvg of the accepted updates with the contract's capped weights); the "
        "baselines aggregate every update with byzfl (`fedavg`: Flower's weighted aggregate over the contract's "
        "weights). TPR/FPR: share of malicious / honest updates not used, pooled over rounds, mean over seeds. "
        "After the grid every seed runs once more with honest members only, each training with DP-SGD (Opacus) "
        "at the epsilon the target names, spent over the rounds, from the same warm start; every rejection there "
        "is a false one (last target). "
        f"This run took {len(cells)} cells; their compute time adds up to "
        f"{sum(c['seconds'] for c in cells) / 60:.0f} min (two processes on a machine shared with other jobs, "
        "see the load averages). Detector source version (sha-256 prefix of "
        f"{sources}): `{detector}`."
    )


def lead(rows: Sequence[Mapping[str, Any]], setup: Setup, met: Sequence[tuple[str, bool, str]]) -> str:
    """What the page opens with: the discrimination table, then the targets (summary and per attack)."""
    headers, table = discrimination_table(rows, setup)
    target_rows = [[statement, "**met**" if ok else "**missed**", numbers] for statement, ok, numbers in met]
    detail_headers, detail = target_table(rows, setup)
    return (
        "## Can this benchmark tell defending from doing nothing?\n\n"
        f"Undefended FedAvg against the clean run (no attacker, FedAvg), per attack: the bar is a cost of at least "
        f"{BAR_POINTS:.0f} points of mean final accuracy (the claim's metric; the cost over rounds is shown too), "
        f"or a backdoor attack success rate of at least {BAR_ASR:.0%}.\n\n"
        + markdown_table(headers, table)
        + "\n\n## Targets of issue 11\n\n"
        + markdown_table(("target", "status", "measured"), target_rows)
        + "\n\nWhy the attacks with TPR 0 are not rejected, and what a multi-round memory rule would buy: "
        "[bench-robustness-separability.md](bench-robustness-separability.md).\n\nPer attack:\n\n"
        + markdown_table(detail_headers, detail)
        + "\n\n## How this run was made"
    )


def sections(
    rows: Sequence[Mapping[str, Any]],
    cells: Sequence[Mapping[str, Any]],
    setup: Setup,
    seeds: Sequence[int],
    detector: str,
    figures: Sequence[Path],
) -> list[tuple[str, str]]:
    """The page's sections after the lead: side by side at each fraction, detection, plots, set-up, every row."""
    out: list[tuple[str, str]] = []
    for fraction in setup.fractions:
        pct = round(100 * fraction)
        headers, table = accuracy_table(rows, setup, fraction)
        out.append((f"Final accuracy side by side, {pct} % malicious", markdown_table(headers, table)))
    for fraction in setup.fractions:
        pct = round(100 * fraction)
        headers, table = accuracy_table(rows, setup, fraction, key="accuracy_rounds")
        out.append((f"Accuracy averaged over rounds, {pct} % malicious", markdown_table(headers, table)))
    headers, table = detection_table(rows, setup)
    out.append(("Detection: TPR/FPR of the defences that judge single updates", markdown_table(headers, table)))
    full = [
        [
            r["attack"],
            f"{round(100 * r['fraction'])} %",
            r["defence"],
            f"{r['accuracy']:.3f}",
            f"{r['accuracy_min']:.3f}-{r['accuracy_max']:.3f}",
            f"{r['accuracy_rounds']:.3f}",
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            fmt_rate(r["tpr"]),
            fmt_rate(r["fpr"]),
            fmt_rate(r["attack_success"]),
            f"{r['malicious_weight']:.2f}",
        ]
        for r in sorted(rows, key=lambda r: (r["attack"] != "none", r["attack"], r["fraction"], r["defence"]))
    ]
    out += [
        plots_section(*figures),
        ("Set-up", setup_text(setup, seeds, cells, detector)),
        ("What the attackers declare", DECLARED),
        ("The attacks", ATTACK_NOTES),
        ("Reading the numbers", READING),
        ("Why this set-up", SETUP_CHOICE),
        ("Without inflated counts", TRUE_COUNTS),
        (
            "Every row",
            markdown_table(
                (
                    "attack",
                    "malicious",
                    "defence",
                    "final acc.",
                    "min-max",
                    "acc. over rounds",
                    "precision",
                    "recall",
                    "TPR",
                    "FPR",
                    "backdoor ASR",
                    "attackers' weight",
                ),
                full,
            ),
        ),
    ]
    return out


def other_seeds(cells: Sequence[Mapping[str, Any]], setup: Setup) -> str:
    """No-attack accuracy per round and detection at the headline fraction, seed by seed."""
    seeds = sorted({c["seed"] for c in cells})
    curves = [
        [c["seed"], c["defence"], " ".join(f"{r['accuracy']:.3f}" for r in c["rounds"])]
        for c in cells
        if c["attack"] == "none"
    ]
    detection = []
    for attack in setup.attacks:
        line: list[Any] = [attack]
        for seed in seeds:
            for defence in JUDGING:
                match = [
                    c
                    for c in cells
                    if (c["seed"], c["attack"], c["defence"], c["fraction"]) == (seed, attack, defence, HEADLINE)
                ]
                line.append(
                    f"{fmt_rate(pooled(match[0], 'tpr'))}/{fmt_rate(pooled(match[0], 'fpr'))}" if match else "—"
                )
        detection.append(line)
    headers = ["attack", *(f"seed {s} {d}" for s in seeds for d in JUDGING)]
    return (
        "Accuracy per round without attack:\n\n"
        + markdown_table(("seed", "defence", f"accuracy, rounds 1..{setup.rounds}"), sorted(curves))
        + f"\n\nDetection TPR/FPR at {int(HEADLINE * 100)} % malicious (pooled over rounds):\n\n"
        + markdown_table(headers, detection)
    )


def plots(rows: Sequence[Mapping[str, Any]], cells: Sequence[Mapping[str, Any]], setup: Setup) -> list[Path]:
    """Every plot of the page (the fractions plot only when the run covers more than one fraction)."""
    paths = [plot_heatmap(rows, setup, fraction) for fraction in setup.fractions]
    paths += [plot_detection(rows, setup), plot_rounds(cells, setup)]
    if len(setup.fractions) > 1:
        paths.append(plot_fractions(rows, setup))
    return paths


def write_page(
    *,
    setup: Setup,
    seeds: Sequence[int],
    cells: Sequence[Mapping[str, Any]],
    extra: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    met: Sequence[tuple[str, bool, str]],
    detector: str,
    command: str,
    machine: Mapping[str, str],
) -> Path:
    """Plots and ``docs/bench-robustness.md`` for the headline ``cells`` (and the ``extra`` seeds' cells)."""
    body = sections(rows, cells, setup, seeds, detector, plots(rows, cells, setup))
    if extra:
        body.append(("Other seeds", other_seeds(extra, setup)))
    return save_page(
        DOCS / "bench-robustness.md",
        "Robustness: attacks x defences x malicious fraction",
        command=command,
        machine=machine,
        intro=lead(rows, setup, met),
        sections=body,
    )
