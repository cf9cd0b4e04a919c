"""Ledger facts for the report, read through the SDK's queries (never from the run's side files).

Rounds, updates with the contract's scores and verdicts, anomaly records, participants and their trust
history, payouts and ε spent, the models and their metrics, and the block of every workflow transaction
(from the chaincode events). A round's detector threshold is on the ledger in its anomaly records; a
round without a rejection takes it from the round's rules version.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from fedledger.chaincode.errors import ContractError
from fedledger.chaincode.records import Anomaly, ModelVersion, Participant, Payout, Round, Rules, Update
from fedledger.sdk.client import FedLedgerClient

logger = logging.getLogger(__name__)

AUTO_OFFSET = -0.5  # IsolationForest's offset_ under contamination="auto" (scikit-learn's definition)


@dataclass
class RoundFacts:
    round: Round
    updates: list[Update]
    anomalies: list[Anomaly]
    model: ModelVersion | None
    threshold: float | None  # the detector's threshold this round (None: no detection, or not derivable)
    threshold_source: str  # where the threshold comes from, or why it is missing
    transactions: dict[str, str] = field(default_factory=dict)  # OpenRound/CloseRound/FinalizeRound -> tx id


@dataclass
class LedgerFacts:
    rules: Rules
    participants: list[Participant]
    rounds: list[RoundFacts]
    models: list[ModelVersion]  # lineage of the latest model, genesis first
    payouts: dict[str, list[Payout]]  # participant -> payouts
    epsilon_spent: dict[str, float]
    trust: dict[str, dict[int, float]]  # participant -> round -> trust after that round's FinalizeRound
    blocks: dict[str, int]  # tx id -> block number
    notes: list[str] = field(default_factory=list)  # what could not be read, in words

    @property
    def trainers(self) -> list[Participant]:
        return [p for p in self.participants if p.role == "trainer"]


def _round_transactions(client: FedLedgerClient, number: int) -> dict[str, str]:
    """The tx id of each status change of the round, from the round record's history."""
    names = {"open": "OpenRound", "closed": "CloseRound", "finalized": "FinalizeRound", "abandoned": "AbandonRound"}
    found: dict[str, str] = {}
    for entry in client.history("round", number):
        status = (entry.get("value") or {}).get("status")
        if status in names and names[status] not in found:
            found[names[status]] = entry["tx_id"]
    return found


def _trust_history(client: FedLedgerClient, participant: Participant, finalize_txs: dict[str, int]) -> dict[int, float]:
    """Trust after each round: the participant record's version written by that round's FinalizeRound
    (a round the participant sat out carries the previous value forward)."""
    by_round: dict[int, float] = {}
    for entry in client.history("participant", participant.id):
        number = finalize_txs.get(entry["tx_id"])
        if number is not None and entry.get("value"):
            by_round[number] = float(entry["value"]["trust"])
    trust, out = None, {}
    for number in sorted(finalize_txs.values()):
        trust = by_round.get(number, trust)
        if trust is not None:
            out[number] = trust
    return out


def _detector_threshold(rules: Rules, updates: list[Update], anomalies: list[Anomaly]) -> tuple[float | None, str]:
    """The threshold FinalizeRound compared the scores with: the anomaly record's when the round rejected
    something, else the one the round's rules fix (a set score threshold, or IsolationForest's constant
    offset -0.5 under contamination "auto")."""
    if not any(u.score is not None for u in updates):
        return None, f"no detection this round ({len(updates)} update(s), rules need {rules.detector_min_updates})"
    if anomalies:
        return anomalies[0].threshold, "anomaly record on the ledger"
    if rules.detector_score_threshold is not None:
        return float(rules.detector_score_threshold), f"rules v{rules.version}: detector_score_threshold"
    if rules.detector_contamination == "auto":
        return AUTO_OFFSET, f"rules v{rules.version}: contamination auto (IsolationForest offset -0.5)"
    return None, (
        f"not on the ledger: rules v{rules.version} set contamination {rules.detector_contamination}, whose "
        "threshold depends on the round's data, and no update was rejected"
    )


def _blocks(client: FedLedgerClient, wanted: set[str], *, timeout: float = 15.0) -> dict[str, int]:
    """Block of each wanted transaction, from the chaincode events (every workflow transaction emits one)."""
    found: dict[str, int] = {}
    if client.network is None or not wanted:
        return found
    stream = client.events(start_block=1)
    done = threading.Event()

    def watch() -> None:
        try:
            for event in stream:
                found[event.transaction_id] = event.block_number
                if wanted <= found.keys():
                    break
        except Exception as exc:  # a closed or failed stream: report what was found
            logger.info("event stream ended: %s", exc)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    done.wait(timeout)
    stream.close()
    return {tx: block for tx, block in found.items() if tx in wanted}


def gather(client: FedLedgerClient) -> LedgerFacts:
    """Everything the report shows about the ledger, through the SDK's queries."""
    notes: list[str] = []
    rules = client.rules()
    participants = client.participants()
    rounds = client.rounds()
    models: list[ModelVersion] = []
    try:
        models = list(reversed(client.lineage(client.latest_model().hash)))
    except ContractError as exc:
        notes.append(f"no model on the ledger yet ({exc})")
    by_hash = {m.hash: m for m in models}
    round_facts = []
    for record in rounds:
        updates = client.updates(record.number)
        anomalies = client.anomalies(record.number)
        model = by_hash.get(record.aggregate) if record.aggregate else None
        if record.aggregate and model is None:
            model = client.model(record.aggregate)
        rules_of_round = rules if record.rules_version == rules.version else client.rules(record.rules_version)
        threshold, source = _detector_threshold(rules_of_round, updates, anomalies)
        transactions = _round_transactions(client, record.number)
        round_facts.append(RoundFacts(record, updates, anomalies, model, threshold, source, transactions))
    finalize_txs = {
        f.transactions["FinalizeRound"]: f.round.number for f in round_facts if "FinalizeRound" in f.transactions
    }
    trust = {p.id: _trust_history(client, p, finalize_txs) for p in participants if p.role == "trainer"}
    payouts: dict[str, list[Payout]] = {}
    epsilon: dict[str, float] = {}
    for p in participants:
        if p.role != "trainer":
            continue
        balance = client.balance(p.id)
        payouts[p.id] = sorted(balance.payouts, key=lambda x: x.round)
        epsilon[p.id] = balance.epsilon_spent
    wanted = {u.tx_id for f in round_facts for u in f.updates}
    wanted |= {tx for f in round_facts for tx in f.transactions.values()}
    wanted |= {m.tx_id for m in models}
    blocks = _blocks(client, wanted)
    if len(blocks) < len(wanted):
        notes.append(f"{len(wanted) - len(blocks)} of {len(wanted)} transactions' blocks were not found in the events")
    return LedgerFacts(rules, participants, round_facts, models, payouts, epsilon, trust, blocks, notes)
