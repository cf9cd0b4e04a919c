"""The model card: a global adapter's provenance, per round, as the ledger recorded it.

``provenance.json`` is the machine-readable part (checked by ``fedledger audit``); ``README.md``
is the human-readable card in the Hugging Face layout (YAML front matter, then prose and tables), rendered
from it (also as ``adapter/README.md``). ``global_adapter.safetensors`` holds the exact bytes whose hash the
ledger committed; ``adapter/`` is the same weights in peft format, loadable with ``PeftModel.from_pretrained``.
``timings.json`` holds where each round's wall time went (read by ``fedledger report``); timings are not
ledger facts.

What a user needs to load and use the adapter but the weights' hash does not cover (the base model's name
and weights' hash, the peft ``adapter_config.json``, the input text format) is the card's *identity*. Its
SHA-256 is written on the ledger at genesis, in the genesis model's name (:func:`genesis_name`), so the audit
can prove the card describes the model the consortium trained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fedledger.trainer.rounds import STEPS, RoundOutcome

PROVENANCE = "provenance.json"
CARD = "README.md"
ADAPTER_BYTES = "global_adapter.safetensors"
ADAPTER_DIR = "adapter"
TIMINGS = "timings.json"
#: A round's steps in the order they happen: the members' two, then the aggregator's.
ROUND_STEPS = ("local_training", "submit", *STEPS)
#: The card's identity fields (see the module docstring), anchored on the ledger at genesis.
IDENTITY_FIELDS = ("base_model", "base_model_sha256", "adapter_config", "input_format")
_ANCHOR = " | card identity sha256:"


def identity_sha256(record: Mapping[str, Any]) -> str:
    """SHA-256 of the identity fields of ``record`` (canonical JSON)."""
    identity = {k: record.get(k) for k in IDENTITY_FIELDS}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def genesis_name(identity: Mapping[str, Any]) -> str:
    """The name the genesis model is registered under: the base model's name and the card identity's hash."""
    return f"{identity['base_model']}{_ANCHOR}{identity_sha256(identity)}"


def anchored_identity(name: str) -> str | None:
    """The card identity hash a genesis model's name carries (None for runs registered without one)."""
    return name.rpartition(_ANCHOR)[2] if _ANCHOR in name else None


def input_format(
    description: str,
    dataset: Any,
    *,
    max_length: int,
    loader: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card's input format: ``description`` and, from ``dataset`` (a TextDataset), its labels and an example.

    ``loader`` and ``options`` name the function that wrote the rows as text (a key of
    :data:`fedledger.trainer.data.TEXT_LOADERS` and its keyword arguments), so ``fedledger score`` can write the
    held-out rows exactly so; left out for a user's own table, whose text is used as written.
    """
    named = {} if loader is None else {"loader": loader, "options": dict(options or {})}
    return {
        "description": description,
        "labels": list(dataset.label_names),
        "max_length": max_length,
        "example": dataset.texts[0] if len(dataset) else "",
        **named,
    }


def model_identity(model: Any, *, base_model: str, input_format: Mapping[str, Any]) -> dict[str, Any]:
    """The card identity of ``model`` (a peft model) before training: see :data:`IDENTITY_FIELDS`.

    ``input_format`` says how a row of data becomes the text the model reads (a description, the labels, the
    tokenizer's max length and an example), so a user feeds the adapter what it was trained and scored on.
    """
    from fedledger.trainer.models import adapter_config, base_model_sha256

    return {
        "base_model": base_model,
        "base_model_sha256": base_model_sha256(model),
        "adapter_config": adapter_config(model, base_model=base_model),
        "input_format": dict(input_format),
    }


def provenance(
    outcomes: Sequence[RoundOutcome],
    *,
    genesis: str,
    identity: Mapping[str, Any],
    ledger: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    rounds = []
    for o in outcomes:
        entry = asdict(o)
        entry["model"] = (
            None
            if o.model is None
            else {
                "hash": o.model.hash,
                "version": o.model.version,
                "parent": o.model.parent,
                "tx_id": o.model.tx_id,
            }
        )
        entry["epsilon_spent"] = {u["participant"]: u["epsilon"] for u in o.accepted + o.rejected}
        rounds.append(entry)
    latest = next((r["model"] for r in reversed(rounds) if r["model"] is not None), None)
    return {
        "format": "fedledger-provenance/2",
        **{k: identity[k] for k in IDENTITY_FIELDS},
        "genesis_adapter": genesis,
        "final_adapter": latest,
        "ledger": ledger,
        "training": training,
        "rounds": rounds,
    }


def publish_card(
    directory: Path | str,
    *,
    model: Any,
    state: Mapping[str, Any],
    outcomes: Sequence[RoundOutcome],
    genesis: str,
    identity: Mapping[str, Any],
    ledger: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The whole model card of a run: the peft adapter of ``state`` (the final committed model) with the
    identity's ``adapter_config.json``, its exact committed bytes, ``provenance.json`` and ``README.md``.
    Returns the provenance record."""
    from fedledger.tensors import encode
    from fedledger.trainer.models import save_adapter

    directory = Path(directory)
    save_adapter(model, directory / ADAPTER_DIR, state, config=identity["adapter_config"])
    record = provenance(outcomes, genesis=genesis, identity=identity, ledger=ledger, training=training)
    write_card(directory, record, encode(state))
    return record


def write_card(directory: Path | str, record: dict[str, Any], adapter_bytes: bytes) -> Path:
    """``provenance.json``, the committed bytes and the README (also the peft folder's, replacing peft's empty
    template, when there is one)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ADAPTER_BYTES).write_bytes(adapter_bytes)
    (directory / PROVENANCE).write_text(json.dumps(record, indent=2, sort_keys=True))
    for readme in card_readmes(directory):
        readme.write_text(render_card(record))
    return directory


def card_readmes(directory: Path) -> list[Path]:
    """The README files of a card folder: its own, and the peft adapter folder's when there is one."""
    return [directory / CARD, *([directory / ADAPTER_DIR / CARD] if (directory / ADAPTER_DIR).is_dir() else [])]


def render_card(record: Mapping[str, Any]) -> str:
    """The README of a card, rendered from its provenance record alone (so the audit can re-render it)."""
    final = record["final_adapter"] or {}
    base = record["base_model"]
    config = record.get("adapter_config") or {}
    text = record.get("input_format") or {}
    training = record["training"]
    rounds = record["rounds"]
    last = next((r for r in reversed(rounds) if r["model"] is not None), None)
    spent = [e for r in rounds for e in r["epsilon_spent"].values() if e is not None]  # None: no DP
    lineage = " → ".join([f"genesis `{record['genesis_adapter'][:12]}`", *_versions(rounds)])
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {json.dumps(base)}",
        "tags: [lora, federated-learning, differential-privacy, fedledger]",
        "---",
        "",
        f"# Federated LoRA adapter for {base}",
        "",
        "Trained by a consortium with fedledger: every update below was endorsed, featurised and judged on the "
        f"ledger ({record['ledger'].get('kind', '?')}, channel `{record['ledger'].get('channel', '?')}`), and only "
        "accepted updates were aggregated. Verify this card with `fedledger audit <run dir>`.",
        "",
        "## What was trained",
        "",
        f"- base model: {base}, weights sha256 `{record.get('base_model_sha256', '-')}`",
        f"- adapter: LoRA r={config.get('r', '-')}, lora_alpha={config.get('lora_alpha', '-')} on "
        f"{', '.join(config.get('target_modules') or ['-'])}; trained head: "
        f"{', '.join(sorted(set(config.get('modules_to_save') or []))) or 'none'} ({config.get('task_type', '-')})",
        f"- {len(rounds)} rounds, strategy {json.dumps(training.get('strategy'), sort_keys=True)}",
        f"- privacy: {_privacy(training.get('privacy'), spent)}",
        f"- final adapter: `{final.get('hash', '-')}` (v{final.get('version', '-')}, "
        f"committed in transaction `{final.get('tx_id', '-')}`)",
        f"- final metrics (held-out set): {_metrics(last['metrics']) if last else '-'}",
        f"- lineage: {lineage}",
        "",
        "## Input text format",
        "",
        "The scores above hold for text in exactly this format; the same data written differently scores differently.",
        "",
        f"- {text.get('description', 'not recorded')}",
        f"- labels: {', '.join(f'{i} = {n}' for i, n in enumerate(text.get('labels') or [])) or '-'}",
        f"- tokenizer max length: {text.get('max_length', '-')}",
        f"- example: `{text.get('example', '-')}`",
        # only cards that name their text loader can be re-scored; older cards must render as they were written
        *(
            [
                f"- written by `fedledger.trainer.data.load_text({text['loader']!r}, {text.get('options') or {}})`; "
                "check that this adapter, fed this text, scores as above: `fedledger score <run dir>`"
            ]
            if "loader" in text
            else []
        ),
        "",
        "## Training details",
        "",
        f"`{json.dumps(training, sort_keys=True)}`",
        "",
        "| round | model | accepted | rejected | ε of the round (max, on-chain) | metrics | commit tx (block) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        model = r["model"] or {}
        commit = r["transactions"].get("CommitAggregate", {})
        round_spent = [e for e in r["epsilon_spent"].values() if e is not None]
        eps = f"{max(round_spent):.3g}" if round_spent else "no DP"
        commit_ref = f"`{commit.get('tx_id', '-')[:12]}` ({commit.get('block')})"
        lines.append(
            f"| {r['number']} | v{model.get('version', '-')} `{model.get('hash', '-')[:12]}` | {len(r['accepted'])} "
            f"| {len(r['rejected'])} | {eps} | {_metrics(r['metrics'])} | {commit_ref} |"
        )
    lines += ["", "## Updates per round", ""]
    for r in rounds:
        lines.append(f"### Round {r['number']}")
        for verdict in ("accepted", "rejected"):
            for u in r[verdict]:
                lines.append(
                    f"- {verdict} `{u['hash']}` from {u['participant']} ({u['samples']} samples, "
                    f"ε {'no DP' if u['epsilon'] is None else format(u['epsilon'], '.3g')},"
                    f" score {u['score']}, tx `{u['tx_id'][:12]}`, block {u['block']})"
                )
        lines.append("")
    return "\n".join(lines)


def _metrics(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())) or "-"


def _versions(rounds: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"v{r['model']['version']} `{r['model']['hash'][:12]}`" for r in rounds if r["model"] is not None]


def _privacy(settings: Mapping[str, Any] | None, spent: Sequence[float]) -> str:
    if not settings:
        return "no DP-SGD"
    most = f"{max(spent):.3g}" if spent else "-"
    return (
        f"DP-SGD, target ε {settings.get('target_epsilon')} at δ {settings.get('target_delta')} per member over the "
        f"run; largest ε of one member in one round, composed on the ledger: {most}"
    )


def round_timings(outcome: RoundOutcome, members: Mapping[str, Mapping[str, float]], wall: float) -> dict[str, Any]:
    """One round's latency breakdown: members' training and SubmitUpdate summed (they ran one after
    another in this process, inside the round driver's collect step, so the wait is what remains of that
    step), the aggregator's other steps as the driver timed them, and the round's wall time."""
    training = sum(m.get("train", 0.0) for m in members.values())
    submitting = sum(m.get("submit", 0.0) for m in members.values())
    waiting = max(0.0, outcome.seconds.get("wait_for_deadline", 0.0) - training - submitting)
    steps = {**outcome.seconds, "local_training": training, "submit": submitting, "wait_for_deadline": waiting}
    return {
        "round": outcome.number,
        "wall": round(wall, 6),
        "steps": {k: round(steps.get(k, 0.0), 6) for k in ROUND_STEPS},
        "members": {pid: {k: round(v, 6) for k, v in s.items()} for pid, s in members.items()},
    }


def write_timings(
    directory: Path | str,
    rounds: Sequence[Mapping[str, Any]],
    *,
    setup: float,
    total: float,
    members: Mapping[str, str],
) -> dict[str, Any]:
    record = {
        "format": "fedledger-timings/1",
        "steps": list(ROUND_STEPS),
        "setup_seconds": round(setup, 6),
        "total_seconds": round(total, 6),
        "member_names": dict(members),
        "rounds": list(rounds),
    }
    (Path(directory) / TIMINGS).write_text(json.dumps(record, indent=2, sort_keys=True))
    return record
