"""The records the contract keeps on the ledger. Plain dataclasses, encoded as canonical JSON.

Field names are the JSON names; clients (fedledger.sdk) decode them into the same classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

ROLES = ("trainer", "aggregator", "auditor")
#: Roles a quorum of organisations grants; trainers are enrolled by their own organisation's admin.
QUORUM_ROLES = ("aggregator", "auditor")


@dataclass
class Rules:
    """Participation rules; every change is a new version on the ledger."""

    version: int = 0
    admin_msps: list[str] = field(default_factory=list)
    member_msps: list[str] = field(default_factory=list)
    min_samples_per_update: int = 1
    epsilon_per_round: float = 10.0  # composed with the RDP accountant from the declared DP-SGD parameters
    epsilon_total: float = 50.0
    dp_delta: float = 1e-5  # the δ of the total budget; a member's declared δ may not exceed it
    require_dp: bool = False  # refuse updates declared without DP-SGD
    max_update_norm: float = 1.0e3
    max_update_bytes: int = 64 * 1024 * 1024
    min_participants_per_round: int = 2
    detector_contamination: str = "auto"
    detector_score_threshold: float | None = None
    detector_min_updates: int = 4
    detector_min_deviation: float = 4.0
    detector_max_deviation: float = 6.0
    detector_max_similarity: float = 0.99  # near copies: rule near-copies (1.0 turns it off)
    detector_max_norm_ratio: float = 4.0  # times the round's median norm: rule norm-bound
    detector_n_estimators: int = 200
    sketch_dim: int = 512
    max_text_bytes: int = 1024  # any free-text argument: reasons, names
    max_participant_share: float = 0.5  # of a round's FedAvg weight and of its reward
    max_organisation_share: float = 0.5
    # declared samples count for weight up to this multiple of the median of the round's accepted updates (null: any)
    weight_samples_bound: float | None = 1.0
    weight_norm_clip: bool = True  # an accepted update above the median sketch norm weighs median / its norm
    weight_direction: bool = True  # and max(0.01, its cosine with the round's centre) as much (FLTrust-style)
    weight_diversity: bool = True  # and max(0.01, 1 - its largest cosine with another update) (FoolsGold-style)
    server_optimizer: str = "fedavg"  # the server step the peers recompute at CommitAggregate: fedavg | fedadam
    server_lr: float = 1.0  # fedavg: x' = x + server_lr * weighted mean of the deltas
    fedadam_eta: float = 1e-2
    fedadam_beta_1: float = 0.9
    fedadam_beta_2: float = 0.99
    fedadam_tau: float = 1e-3
    aggregate_chunk_elements: int = 65_536  # elements per chunk of the aggregate's commitments (chaincode.aggregation)
    reward_per_round: int = 1000
    trust_prior_accepted: float = 4.0
    trust_prior_rejected: float = 1.0
    trust_rejection_weight: float = 2.0
    trust_suspend_below: float = 0.4
    dispute_window_seconds: float = 86400.0
    dispute_voting_seconds: float = 86400.0
    dispute_quorum: int = 1  # organisations
    governance_quorum: int = (
        0  # organisations whose admins must approve a role, a revocation, a rules change; 0 = majority
    )
    max_clock_skew_seconds: float = 300.0  # endorsers refuse proposals stamped further than this from their clock
    # Rounds opened while >= 2 member organisations hold a share key run secret-shared (shares, per-organisation
    # sketches and sums: chaincode.share_protocol); false keeps every update whole (plaintext mode).
    secure_aggregation: bool = True
    share_scale: int = 32  # fractional bits of the fixed-point ring encoding of shared updates (fedledger.shares)
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
    status: str  # active | suspended | revoked
    status_reason: str
    registered_at: float
    trust: float
    accepted_count: int = 0
    rejected_count: int = 0
    auto_suspended: bool = False
    inherited_rejected: int = 0  # rejections of its organisation's suspended members, counted against its trust
    approved_by: list[str] = field(default_factory=list)  # the admins who enrolled it or approved its role


@dataclass
class Enrolment:
    """A trainer enrolled by its own organisation's admin, who attests its dataset."""

    participant: str
    dataset_size: int
    schema_hash: str
    enrolled_by: str
    enrolled_at: float
    tx_id: str
    inherited_rejected: int = 0


@dataclass
class Grant:
    """An aggregator or auditor role, approved by the admins of a quorum of organisations."""

    participant: str
    role: str
    proposal: str
    approved_by: list[str]
    granted_at: float


@dataclass
class Proposal:
    """A governance act that needs a quorum of organisations: a role, a revocation, a rules change, an early close."""

    id: str  # the proposing transaction's id
    action: str  # grant | revoke | rules | close_round
    subject: str  # participant id, round number, or "" for rules
    role: str
    changes: dict[str, Any]
    proposed_by: str
    proposed_at: float
    rules_version: int
    status: str = "open"  # open | applied
    approvals: list[str] = field(default_factory=list)  # MSP IDs, in approval order
    applied_at: float | None = None
    applied_tx: str = ""


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
    chunk_elements: int = 0  # the chunk size of its commitments (the rules of the round that made it)
    chunk_hashes: list[str] = field(default_factory=list)
    server_optimizer: dict[str, Any] = field(default_factory=dict)  # the step that made it, as the rules named it
    optimizer_state: str | None = None  # sha256 of its server optimiser state file (FedAdam's m and v)
    optimizer_chunk_hashes: dict[str, list[str]] = field(default_factory=dict)  # "m", "v" -> chunk hashes


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
    expected: list[str] = field(default_factory=list)  # active trainers when it opened: who may close it early
    closed_by: str = ""
    # Secret-shared rounds: the organisations holding one share each ({"org", "key_id"}, in share-index order),
    # fixed when the round opened; [] = plaintext mode. The sketch seed is fixed at CloseRound, after every
    # share was committed, so no member can aim its update at the projection's blind spots.
    share_holders: list[dict[str, str]] = field(default_factory=list)
    share_scale: int = 0
    sketch_seed: str = ""

    @property
    def shared(self) -> bool:
        return bool(self.share_holders)


@dataclass
class Update:
    """The on-chain commitment of one update: its hash and the features the peer computed."""

    round: int
    participant: str
    hash: str
    size: int
    samples: int
    epsilon: float | None  # this round's ε, computed by the contract from ``privacy``; None without DP
    train_loss: float
    features: dict[str, Any]
    submitted_at: float
    tx_id: str
    trust_at_submit: float
    status: str = "submitted"  # submitted | accepted | rejected
    score: float | None = None
    reason: str = ""
    privacy: dict[str, Any] = field(default_factory=dict)  # the declared DP-SGD parameters (privacy_budget.DPParams)
    rule: str = ""  # the detector rule that decided the verdict (anomaly.screening RULE_*)
    threshold: float | None = None  # the round's isolation-score threshold the rule compared with
    deviation: float | None = None  # the update's largest robust deviation of any feature
    similarity: float | None = None  # its largest sketch cosine with another update of the round
    weight: int = 0  # FedAvg weight in WEIGHT_UNITS (chaincode.weights), set by the verdict; 0 unless accepted
    chunk_hashes: list[str] = field(default_factory=list)  # per chunk of the round's aggregate_chunk_elements
    # The participant's ε over all its updates up to this one, composed (RDP) at the rules' dp_delta: the figure
    # the budget check compared with epsilon_total, kept so every reader shows the same ε spent. None without DP.
    epsilon_spent: float | None = None
    # Secret-shared rounds: the SHA-256 of each organisation's share, in share-index order (the shares themselves
    # never reach the ledger); ``hash`` is then the SHA-256 of this list (chaincode.share_protocol).
    share_commitments: list[str] = field(default_factory=list)


@dataclass
class ShareKey:
    """An organisation's X25519 public key, to which members seal its share of their updates."""

    org: str
    public_key: str  # PEM (SubjectPublicKeyInfo)
    key_id: str  # fedledger.shares.key_id
    registered_by: str
    registered_at: float
    tx_id: str


@dataclass
class OrgShares:
    """One organisation's part of a secret-shared round, written only in transactions its own peers endorse.

    ``sketches``: participant -> base64 of the ring sketch of that member's share (uint64, little-endian);
    ``previous``: the ring sketch, under this round's seed, of its share of the previous round's aggregate sum
    (the detector's previous direction). ``sum_hash``: SHA-256 of its weighted sum of its shares of exactly the
    accepted updates (``sum_inputs``), the bytes CommitAggregate adds up.
    """

    round: int
    org: str
    index: int
    key_id: str
    sketches: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # participant -> why its share did not open or check
    previous: str = ""
    sketched_tx: str = ""
    sum_hash: str = ""
    sum_inputs: str = ""
    summed_tx: str = ""


@dataclass
class AggregateChunk:
    """Chunk ``chunk`` of a round's aggregate, computed by the endorsing peers (AggregateChunks): the hashes of
    the new model's, m's and v's chunk, for the inputs hashed in ``inputs``. CommitAggregate deletes it."""

    round: int
    chunk: int
    inputs: str
    model: str
    m: str | None
    v: str | None
    tx_id: str


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
    rule: str = ""  # the detector rule that fired (anomaly.screening RULE_*)
    deviation: float | None = None  # the largest robust deviation of any feature
    similarity: float | None = None  # the largest sketch cosine with another update of the round


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
