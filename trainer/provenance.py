"""The model card: a global adapter's provenance, per round, as the ledger recorded it.

``provenance.json`` is the machine-readable part (checked by ``fedledger audit``); ``README.md``
is the human-readable card in the Hugging Face layout (YAML front matter, then prose and tables).
``global_adapter.safetensors`` holds the exact bytes whose hash the ledger committed; ``adapter/``
is the same weights in peft format, loadable with ``PeftModel.from_pretrained``. ``timings.json``
holds where each round's wall time went (read by ``fedledger report``); timings are not ledger facts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fedledger.trainer.rounds import STEPS, RoundOutcome

PROVENANCE = "provenance.json"
CARD = "README.md"
ADAPTER_BYTES = "global_adapter.safetensors"
TIMINGS = "timings.json"
#: A round's steps in the order they happen: the members' two, then the aggregator's.
ROUND_STEPS = ("local_training", "submit", *STEPS)


def provenance(
    outcomes: Sequence[RoundOutcome], *, genesis: str, base_model: str, ledger: dict[str, Any], training: dict[str, Any]
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
        "format": "fedledger-provenance/1",
        "base_model": base_model,
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
    base_model: str,
    ledger: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The whole model card of a run: the peft adapter of ``state`` (the final committed model), its exact
    committed bytes, ``provenance.json`` and ``README.md``. Returns the provenance record."""
    from fedledger.tensors import encode
    from fedledger.trainer.models import save_adapter

    directory = Path(directory)
    save_adapter(model, directory / "adapter", state)
    record = provenance(outcomes, genesis=genesis, base_model=base_model, ledger=ledger, training=training)
    write_card(directory, record, encode(state))
    return record


def write_card(directory: Path | str, record: dict[str, Any], adapter_bytes: bytes) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ADAPTER_BYTES).write_bytes(adapter_bytes)
    (directory / PROVENANCE).write_text(json.dumps(record, indent=2, sort_keys=True))
    (directory / CARD).write_text(_markdown(record))
    return directory


def _markdown(record: dict[str, Any]) -> str:
    final = record["final_adapter"] or {}
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {record['base_model']}",
        "tags: [lora, federated-learning, differential-privacy, fedledger]",
        "---",
        "",
        f"# Federated LoRA adapter for {record['base_model']}",
        "",
        "Trained by a consortium with fedledger: every update below was endorsed, featurised and judged on the "
        f"ledger ({record['ledger'].get('kind', '?')}, channel `{record['ledger'].get('channel', '?')}`), and only "
        "accepted updates were aggregated. Verify this card with `fedledger audit <run dir>`.",
        "",
        f"- final adapter: `{final.get('hash', '-')}` (v{final.get('version', '-')}, "
        f"committed in transaction `{final.get('tx_id', '-')}`)",
        f"- genesis adapter: `{record['genesis_adapter']}`",
        f"- training: {json.dumps(record['training'], sort_keys=True)}",
        "",
        "| round | model | accepted | rejected | ε of the round (max, on-chain) | metrics | commit tx (block) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["rounds"]:
        model = r["model"] or {}
        commit = r["transactions"].get("CommitAggregate", {})
        spent = [e for e in r["epsilon_spent"].values() if e is not None]  # None: an update without DP
        eps = f"{max(spent):.3g}" if spent else "no DP"
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r["metrics"].items()))
        commit_ref = f"`{commit.get('tx_id', '-')[:12]}` ({commit.get('block')})"
        lines.append(
            f"| {r['number']} | v{model.get('version', '-')} `{model.get('hash', '-')[:12]}` | {len(r['accepted'])} "
            f"| {len(r['rejected'])} | {eps} | {metrics} | {commit_ref} |"
        )
    lines += ["", "## Updates per round", ""]
    for r in record["rounds"]:
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
