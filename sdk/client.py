"""FedLedgerClient: the contract's operations as typed Python methods.

Works over any Contract (embedded or Fabric) — it only encodes arguments and decodes records.
Submitting methods return the record the contract wrote; ``last_result`` holds the transaction
id and block number of the most recent submit (the provenance a model card cites).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fedledger.chaincode import errors as contract_errors
from fedledger.chaincode.aggregation import BASE_FIELD, OPTIMIZER_FIELD
from fedledger.chaincode.privacy_budget import DPParams
from fedledger.chaincode.records import (
    Anomaly,
    Dispute,
    Enrolment,
    ModelVersion,
    OrgShares,
    Participant,
    Payout,
    Proposal,
    Round,
    Rules,
    ShareKey,
    Update,
    Vote,
    from_dict,
)
from fedledger.chaincode.transactions.shared_aggregate import BASE_OPTIMIZER_FIELD, org_sum_field
from fedledger.chaincode.transactions.shares import PREVIOUS_FIELD, share_field
from fedledger.chaincode.transactions.updates import COMMITMENTS_FIELD
from fedledger.sdk.aggregate import DEFAULT_MAX_PROPOSAL_BYTES, AggregateInputs
from fedledger.sdk.backend import SubmitResult
from fedledger.sdk.gateway import Argument, Contract, EventStream, Network

T = TypeVar("T")

UPDATE_FIELD = "update"
MODEL_FIELD = "model"


@dataclass(frozen=True)
class Balance:
    participant: str
    balance: int
    payouts: list[Payout]
    epsilon_spent: float


def _decode(data: bytes) -> Any:
    return json.loads(data) if data else None


class FedLedgerClient:
    def __init__(self, contract: Contract, network: Network | None = None) -> None:
        self.contract = contract
        self.network = network
        self.last_result: SubmitResult | None = None
        self.last_chunk_results: list[SubmitResult | None] = []  # the AggregateChunks of the last commit_aggregate

    # -- plumbing ---------------------------------------------------------------------------
    def _submit(
        self,
        name: str,
        *args: Argument,
        transient: Mapping[str, bytes] | None = None,
        endorsing_orgs: Sequence[str] = (),
    ) -> Any:
        self.last_result = self.contract.submit(
            name, arguments=args, transient=transient, endorsing_orgs=endorsing_orgs
        )
        return _decode(self.last_result.result)

    def _evaluate(self, name: str, *args: Argument) -> Any:
        return _decode(self.contract.evaluate(name, arguments=args))

    @staticmethod
    def _one(record: type[T], data: Any) -> T:
        return from_dict(record, data)

    @staticmethod
    def _many(record: type[T], data: Any) -> list[T]:
        return [from_dict(record, item) for item in data]

    def events(self, *, start_block: int | None = None) -> EventStream:
        if self.network is None:
            raise ValueError("events need the Network: build the client with FedLedgerClient(contract, network)")
        return self.network.get_chaincode_events(self.contract.chaincode, start_block=start_block)

    # -- consortium ---------------------------------------------------------------------------
    def init_consortium(self, rules: Mapping[str, Any] | None = None) -> Rules:
        return self._one(Rules, self._submit("InitConsortium", json.dumps(dict(rules or {}))))

    def rules(self, version: int | None = None) -> Rules:
        return self._one(Rules, self._evaluate("GetRules", "" if version is None else version))

    # -- governance: acts a quorum of organisations approves -------------------------------------------
    def propose_rules(self, changes: Mapping[str, Any]) -> Proposal:
        return self._one(Proposal, self._submit("ProposeRules", json.dumps(dict(changes))))

    def propose_role(self, participant_id: str, role: str) -> Proposal:
        return self._one(Proposal, self._submit("ProposeRole", participant_id, role))

    def propose_revocation(self, participant_id: str, reason: str) -> Proposal:
        return self._one(Proposal, self._submit("ProposeRevocation", participant_id, reason))

    def propose_early_close(self, round_number: int) -> Proposal:
        return self._one(Proposal, self._submit("ProposeEarlyClose", round_number))

    def approve(self, proposal_id: str) -> Proposal:
        return self._one(Proposal, self._submit("ApproveProposal", proposal_id))

    def proposal(self, proposal_id: str) -> Proposal:
        return self._one(Proposal, self._evaluate("GetProposal", proposal_id))

    def proposals(self) -> list[Proposal]:
        return self._many(Proposal, self._evaluate("ListProposals"))

    # -- participants -------------------------------------------------------------------------
    def enrol_trainer(self, common_name: str, *, dataset_size: int, schema_hash: str) -> Enrolment:
        """As an organisation admin: enrols (or re-attests) a trainer of this organisation and its dataset."""
        return self._one(Enrolment, self._submit("EnrolTrainer", common_name, dataset_size, schema_hash))

    def enrolment(self, participant_id: str) -> Enrolment:
        return self._one(Enrolment, self._evaluate("GetEnrolment", participant_id))

    def register(self, role: str) -> Participant:
        """Registers this identity in the role its organisation enrolled it for, or a quorum granted it."""
        return self._one(Participant, self._submit("RegisterParticipant", role))

    def suspend(self, participant_id: str, reason: str) -> Participant:
        return self._one(Participant, self._submit("SuspendParticipant", participant_id, reason))

    def reinstate(self, participant_id: str, reason: str) -> Participant:
        return self._one(Participant, self._submit("ReinstateParticipant", participant_id, reason))

    def participant(self, participant_id: str) -> Participant:
        return self._one(Participant, self._evaluate("GetParticipant", participant_id))

    def participants(self) -> list[Participant]:
        return self._many(Participant, self._evaluate("ListParticipants"))

    def whoami(self) -> dict[str, Any]:
        return self._evaluate("WhoAmI")

    # -- models -------------------------------------------------------------------------------
    def register_genesis_model(self, model: bytes, *, name: str) -> ModelVersion:
        return self._one(ModelVersion, self._submit("RegisterGenesisModel", name, transient={MODEL_FIELD: model}))

    def model(self, model_hash: str) -> ModelVersion:
        return self._one(ModelVersion, self._evaluate("GetModel", model_hash))

    def latest_model(self) -> ModelVersion:
        return self._one(ModelVersion, self._evaluate("GetLatestModel"))

    def lineage(self, model_hash: str) -> list[ModelVersion]:
        return self._many(ModelVersion, self._evaluate("GetLineage", model_hash))

    # -- rounds -------------------------------------------------------------------------------
    def open_round(self, number: int, *, base_model: str, deadline: float, rules_version: int | None = None) -> Round:
        version = rules_version if rules_version is not None else self.rules().version
        return self._one(Round, self._submit("OpenRound", number, base_model, repr(float(deadline)), version))

    def close_round(self, number: int) -> Round:
        return self._one(Round, self._submit("CloseRound", number))

    def abandon_round(self, number: int, reason: str) -> Round:
        return self._one(Round, self._submit("AbandonRound", number, reason))

    def round(self, number: int) -> Round:
        return self._one(Round, self._evaluate("GetRound", number))

    def rounds(self) -> list[Round]:
        return self._many(Round, self._evaluate("ListRounds"))

    # -- updates ------------------------------------------------------------------------------
    def submit_update(
        self,
        round_number: int,
        update: bytes,
        *,
        samples: int,
        privacy: DPParams | None,
        train_loss: float,
    ) -> Update:
        """Sends the update bytes as transient data: they reach the endorsers, never a block.

        ``privacy``: the DP-SGD parameters this round was trained with (None without DP); the contract
        computes ε from them with the RDP accountant and checks the budgets.
        """
        return self._submit_update(round_number, samples, privacy, train_loss, {UPDATE_FIELD: update})

    def submit_shared_update(
        self,
        round_number: int,
        commitments: Sequence[str],
        *,
        samples: int,
        privacy: DPParams | None,
        train_loss: float,
    ) -> Update:
        """A secret-shared round's SubmitUpdate: only the SHA-256 of each organisation's share, in share-index
        order (``fedledger.shares.share_update``); the sealed shares go to the store, never to a peer."""
        commitments_json = json.dumps(list(commitments)).encode()
        return self._submit_update(round_number, samples, privacy, train_loss, {COMMITMENTS_FIELD: commitments_json})

    def _submit_update(
        self,
        round_number: int,
        samples: int,
        privacy: DPParams | None,
        train_loss: float,
        transient: Mapping[str, bytes],
    ) -> Update:
        arguments = (json.dumps(privacy.to_dict()) if privacy is not None else "", repr(float(train_loss)))
        return self._one(Update, self._submit("SubmitUpdate", round_number, samples, *arguments, transient=transient))

    def update(self, round_number: int, participant_id: str) -> Update:
        return self._one(Update, self._evaluate("GetUpdate", round_number, participant_id))

    def updates(self, round_number: int) -> list[Update]:
        return self._many(Update, self._evaluate("ListUpdates", round_number))

    def finalize_round(self, number: int) -> Round:
        return self._one(Round, self._submit("FinalizeRound", number))

    def commit_aggregate(
        self,
        round_number: int,
        model: bytes,
        *,
        base: bytes,
        updates: Mapping[str, bytes],
        update_hashes: Sequence[str] | None = None,
        metrics: Mapping[str, Any] | None = None,
        optimizer_state: bytes | None = None,
        base_optimizer_state: bytes | None = None,
        max_proposal_bytes: int = DEFAULT_MAX_PROPOSAL_BYTES,
    ) -> ModelVersion:
        """Commits ``model``, the aggregate of round ``round_number``; the endorsers recompute it.

        They need what it is made of, as transient data: the ``base`` model's bytes, ``updates`` (update hash ->
        bytes, every accepted update) and, for FedAdam, the new ``optimizer_state`` and the base model's
        (``base_optimizer_state``, after the first step). ``update_hashes`` (default: the keys of ``updates``)
        is the set the aggregate claims to use. A round whose inputs do not fit in one proposal of
        ``max_proposal_bytes`` goes as AggregateChunks transactions first (``last_chunk_results``), then
        CommitAggregate (``last_result``).
        """
        inputs = AggregateInputs.for_round(
            self, round_number, base=base, updates=updates, base_moments=base_optimizer_state
        )
        fixed = {MODEL_FIELD: model}
        if optimizer_state is not None:
            fixed[OPTIMIZER_FIELD] = optimizer_state
        plan = inputs.plan(max_proposal_bytes, sum(len(v) for v in fixed.values()))
        chunk_results = []
        for first, count in plan.batches:
            self._submit("AggregateChunks", round_number, first, count, transient=inputs.transient(first, count))
            chunk_results.append(self.last_result)
        self.last_chunk_results = chunk_results
        inline = plan.chunks - plan.inline_from
        return self._one(
            ModelVersion,
            self._submit(
                "CommitAggregate",
                round_number,
                json.dumps(sorted(update_hashes if update_hashes is not None else updates)),
                json.dumps(dict(metrics or {})),
                plan.inline_from if inline else "",
                transient={**fixed, **inputs.transient(plan.inline_from, inline)},
            ),
        )

    # -- secret-shared rounds ---------------------------------------------------------------------------
    def register_share_key(self, public_key_pem: bytes | str) -> ShareKey:
        """As an organisation admin: the X25519 key members seal this organisation's shares to."""
        pem = public_key_pem.decode() if isinstance(public_key_pem, bytes) else public_key_pem
        return self._one(ShareKey, self._submit("RegisterShareKey", pem))

    def share_keys(self) -> list[ShareKey]:
        return self._many(ShareKey, self._evaluate("ListShareKeys"))

    def org_shares(self, round_number: int) -> list[OrgShares]:
        return self._many(OrgShares, self._evaluate("GetOrgShares", round_number))

    def submit_share_sketches(
        self,
        round_number: int,
        org: str,
        shares: Mapping[str, bytes],
        *,
        previous: bytes | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> OrgShares:
        """As ``org``'s admin: its share of every update (participant -> share bytes), endorsed by ``org``'s
        peers only, so the shares reach no other organisation."""
        transient = {share_field(p): data for p, data in shares.items()}
        if previous is not None:
            transient[PREVIOUS_FIELD] = previous
        return self._one(
            OrgShares,
            self._submit(
                "SubmitShareSketches",
                round_number,
                json.dumps(dict(refused or {})),
                transient=transient,
                endorsing_orgs=[org],
            ),
        )

    def submit_share_sum(self, round_number: int, org: str, shares: Mapping[str, bytes]) -> OrgShares:
        """As ``org``'s admin: its shares of the accepted updates, summed by ``org``'s own peers."""
        transient = {share_field(p): data for p, data in shares.items()}
        return self._one(
            OrgShares, self._submit("SubmitShareSum", round_number, transient=transient, endorsing_orgs=[org])
        )

    def commit_shared_aggregate(
        self,
        round_number: int,
        model: bytes,
        *,
        base: bytes,
        sums: Mapping[str, bytes],
        update_hashes: Sequence[str],
        metrics: Mapping[str, Any] | None = None,
        optimizer_state: bytes | None = None,
        base_optimizer_state: bytes | None = None,
    ) -> ModelVersion:
        """CommitAggregate of a secret-shared round: the endorsers add the organisations' share ``sums`` (org ->
        bytes), take the server step from ``base`` and record ``model`` only if it is the result."""
        transient = {MODEL_FIELD: model, BASE_FIELD: base, **{org_sum_field(o): b for o, b in sums.items()}}
        if optimizer_state is not None:
            transient[OPTIMIZER_FIELD] = optimizer_state
        if base_optimizer_state is not None:
            transient[BASE_OPTIMIZER_FIELD] = base_optimizer_state
        arguments = (json.dumps(sorted(update_hashes)), json.dumps(dict(metrics or {})), "")
        return self._one(ModelVersion, self._submit("CommitAggregate", round_number, *arguments, transient=transient))

    def anomalies(self, round_number: int | None = None) -> list[Anomaly]:
        return self._many(Anomaly, self._evaluate("ListAnomalies", "" if round_number is None else round_number))

    # -- disputes -----------------------------------------------------------------------------
    def open_dispute(self, round_number: int, participant_id: str, reason: str) -> Dispute:
        return self._one(Dispute, self._submit("OpenDispute", round_number, participant_id, reason))

    def cast_vote(self, round_number: int, participant_id: str, decision: str, reason: str = "") -> Vote:
        return self._one(Vote, self._submit("CastVote", round_number, participant_id, decision, reason))

    def resolve_dispute(self, round_number: int, participant_id: str) -> Dispute:
        return self._one(Dispute, self._submit("ResolveDispute", round_number, participant_id))

    def dispute(self, round_number: int, participant_id: str) -> Dispute:
        return self._one(Dispute, self._evaluate("GetDispute", round_number, participant_id))

    def disputes(self, round_number: int | None = None) -> list[Dispute]:
        return self._many(Dispute, self._evaluate("ListDisputes", "" if round_number is None else round_number))

    def votes(self, round_number: int, participant_id: str) -> list[Vote]:
        return self._many(Vote, self._evaluate("ListVotes", round_number, participant_id))

    # -- rewards, trust, history --------------------------------------------------------------------
    def balance(self, participant_id: str) -> Balance:
        data = self._evaluate("GetBalance", participant_id)
        return Balance(data["participant"], data["balance"], self._many(Payout, data["payouts"]), data["epsilon_spent"])

    def balances(self) -> dict[str, int]:
        return self._evaluate("ListBalances")

    def history(self, kind: str, *ids: str | int) -> list[dict[str, Any]]:
        return self._evaluate("GetHistory", kind, *ids)


def with_quorum(admins: Sequence[FedLedgerClient], propose: Callable[[FedLedgerClient], Proposal]) -> Proposal:
    """Proposes with the first organisation admin, then has the others approve until the act applies.

    ``admins`` are clients of different member organisations' admins, e.g.
    ``with_quorum(admins, lambda a: a.propose_role("Org1MSP:aggregator", "aggregator"))``.
    """
    proposal = propose(admins[0])
    for admin in admins[1:]:
        if proposal.status == "applied":
            break
        proposal = admin.approve(proposal.id)
    if proposal.status != "applied":
        raise ValueError(
            f"proposal {proposal.id} has {len(proposal.approvals)} approval(s) after every given admin approved; "
            "the rules' governance_quorum needs more member organisations"
        )
    return proposal


def grant_role(admins: Sequence[FedLedgerClient], participant_id: str, role: str) -> None:
    """Setup scripts: grants ``role`` with a quorum of ``admins`` unless it was already granted."""
    with contextlib.suppress(contract_errors.AlreadyExists):
        with_quorum(admins, lambda admin: admin.propose_role(participant_id, role))
