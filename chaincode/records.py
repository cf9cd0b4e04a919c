"""The records the contract keeps on the ledger. Plain dataclasses, encoded as canonical JSON.

Field names are the JSON names; clients (fedledger.sdk) decode them into the same classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

ROLES = ("trainer", "aggregator", "auditor")


@dataclass
class Rules:
    """Participation rules; every change is a new version on the ledger."""

    version: int = 0
    admin_msps: list[str] = field(default_factory=list)
    member_msps: list[str] = field(default_factory=list)
    min_samples_per_update: int = 1
    epsilon_per_round: float = 10.0
    epsilon_total: float = 50.0
    max_update_norm: float = 1.0e3
    max_update_bytes: int = 64 * 1024 * 1024
    min_participants_per_round: int = 2
    detector_contamination: str = "auto"
    detector_score_threshold: float | None = None
    detector_min_updates: int = 4
    detector_min_deviation: float = 4.0
    detector_max_deviation: float = 6.0
    detector_n_estimators: int = 200
    sketch_dim: int = 512
    max_text_bytes: int = 1024  # any free-text argument: reasons, names
    max_participant_share: float = 0.5  # of a round's FedAvg weight and of its reward
    max_organisation_share: float = 0.5
    reward_per_round: int = 1000
    trust_prior_accepted: float = 4.0
    trust_prior_rejected: float = 1.0
    trust_rejection_weight: float = 2.0
    trust_suspend_below: float = 0.4
    dispute_window_seconds: float = 86400.0
    dispute_voting_seconds: float = 86400.0
    dispute_quorum: int = 1
    created_at: float = 0.0
    created_by: str = ""


@dataclass
class Participant:
    id: str
    mspid: str
    common_name: str
    cert_fingerprint: str
    role: str
    dataset_size: int
    schema_hash: str
    status: str  # active | suspended
    status_reason: str
    registered_at: float
    trust: float
    accepted_count: int = 0
    rejected_count: int = 0
    auto_suspended: bool = False


@dataclass
class ModelVersion:
    """One global model (adapter) and how it was built: the lineage is the parent chain."""

    hash: str
    version: int
    parent: str | None
    round: int | None
    updates: list[dict[str, Any]]
    manifest: dict[str, list[Any]]
    size: int
    committed_by: str
    tx_id: str
    timestamp: float
    metrics: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Round:
    number: int
    base_model: str
    deadline: float
    rules_version: int
    status: str  # open | closed | finalized | aggregated | abandoned
    opened_by: str
    opened_at: float
    reward_pool: int
    closed_at: float | None = None
    finalized_at: float | None = None
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    aggregate: str | None = None
    revised_after_aggregate: bool = False
    detector_seed: int | None = None
    direction_round: int | None = None  # the round whose accepted updates gave the detector's previous direction


@dataclass
class Update:
    """The on-chain commitment of one update: its hash and the features the peer computed."""

    round: int
    participant: str
    hash: str
    size: int
    samples: int
    epsilon: float
    train_loss: float
    features: dict[str, Any]
    submitted_at: float
    tx_id: str
    trust_at_submit: float
    status: str = "submitted"  # submitted | accepted | rejected
    score: float | None = None
    reason: str = ""
    weight: int = 0  # FedAvg weight in WEIGHT_UNITS (chaincode.weights), set by the verdict; 0 unless accepted


@dataclass
class Anomaly:
    """Immutable record of a rejected update, written once at FinalizeRound."""

    round: int
    participant: str
    update_hash: str
    score: float
    threshold: float
    reason: str
    features: dict[str, Any]
    detected_at: float
    tx_id: str


@dataclass
class Payout:
    round: int
    participant: str
    amount: int
    contribution: float
    tx_id: str


@dataclass
class Dispute:
    round: int
    participant: str  # owner of the contested update
    filed_by: str
    kind: str  # contest_rejection | contest_acceptance
    reason: str
    opened_at: float
    voting_deadline: float
    status: str = "open"  # open | upheld | overturned | expired
    votes_uphold: int = 0
    votes_overturn: int = 0
    ruled_at: float | None = None
    ruling_tx: str = ""

    @property
    def id(self) -> str:
        return f"{self.round}/{self.participant}"


@dataclass
class Vote:
    round: int
    participant: str
    voter: str
    voter_msp: str
    decision: str  # uphold | overturn
    reason: str
    cast_at: float


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Builds a record, ignoring fields a newer contract may have added."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})
