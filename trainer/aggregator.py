"""Aggregator: the contract-backed :class:`~fedledger.trainer.rounds.RoundLedger`, over either ledger.

The ledger is the source of truth for round state, so a restarted aggregator picks up exactly where the
ledger says the federation is. Driven by :class:`~fedledger.trainer.rounds.RoundDriver`, one round is:
OpenRound → the driver's collect hook (``wait_for_updates`` counts UpdateSubmitted events until the
deadline or every expected member) → CloseRound + FinalizeRound (the contract's detector rules on every
update) → read the ACCEPTED updates from the store, each verified against its on-chain hash → the
driver's strategy aggregates and evaluates → CommitAggregate with the exact accepted set and the metrics,
and what the endorsers need to recompute the aggregate: the base model's and the updates' bytes, and
FedAdam's moments (AbandonRound when nothing was accepted).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger import shares
from fedledger.chaincode.aggregation import encode_moments
from fedledger.chaincode.errors import NotFound, PermissionDenied
from fedledger.chaincode.records import ModelVersion, OrgShares, Round, Update
from fedledger.chaincode.share_protocol import mean_of_sums, sum_inputs_digest
from fedledger.sdk.client import FedLedgerClient, grant_role
from fedledger.sdk.store import UpdateStore
from fedledger.tensors import NDState, decode, encode, sha256_hex
from fedledger.trainer.rounds import Contribution, RoundOutcome, Step
from fedledger.trainer.share_holder import ShareHolder
from fedledger.trainer.strategy import Strategy, check_strategy

logger = logging.getLogger(__name__)


class SharesPendingError(RuntimeError):
    """A secret-shared round waits for organisations whose share holders have not acted yet."""


class Aggregator:
    """Opens, screens and commits rounds on the ledger as the aggregator identity of ``client``."""

    def __init__(
        self,
        client: FedLedgerClient,
        store: UpdateStore,
        *,
        round_seconds: float = 600.0,
        holders: Sequence[ShareHolder] = (),
        share_wait_seconds: float = 120.0,
    ) -> None:
        """``holders``: the organisations' share work this process runs itself (simulations that play every
        party); the others run theirs elsewhere, and a shared round waits up to ``share_wait_seconds`` for them at
        each step (then stops with an error; a restarted aggregator resumes where the ledger says)."""
        self.client = client
        self.store = store
        self.round_seconds = round_seconds
        self.holders = list(holders)
        self.share_wait_seconds = share_wait_seconds
        self._events: dict[str, tuple[str, int]] = {}  # update hash -> (tx id, block)
        self._opened_in: dict[int, int] = {}  # round -> block of its OpenRound
        self._bases: dict[int, ModelVersion] = {}  # round -> its base model (a round's base never changes)

    def _base(self, number: int) -> ModelVersion:
        if number not in self._bases:
            self._bases[number] = self.client.model(self.client.round(number).base_model)
        return self._bases[number]

    # -- setup --------------------------------------------------------------------------------
    def ensure_registered(self, admins: Sequence[FedLedgerClient] = ()) -> None:
        """Registers in the aggregator role a quorum of organisations granted this identity.

        ``admins`` (simulations that play every party): clients of the member organisations' admins, which
        grant the role first.
        """
        whoami = self.client.whoami()
        if whoami["participant"] is not None:
            return
        if admins:
            grant_role(admins, whoami["id"], "aggregator")
        try:
            self.client.register("aggregator")
        except PermissionDenied as exc:
            if "holds no aggregator grant" not in str(exc):
                raise
            raise PermissionDenied(
                f"{whoami['id']} holds no aggregator grant; a member organisation's admin runs: fedledger submit "
                f"ProposeRole '{whoami['id']}' aggregator --ledger-dir <ledger> --msp-dir <admin msp> --mspid <MSP>, "
                "and the admins of the other organisations: fedledger submit ApproveProposal <proposal id> ..."
            ) from None

    def publish_genesis(self, state: Mapping[str, Any], *, name: str) -> ModelVersion:
        """Stores the initial adapter and registers it on the ledger (once; later calls return it)."""
        try:
            return self.client.latest_model()
        except NotFound:
            pass
        payload = encode(state)
        self.store.put(payload)
        return self.client.register_genesis_model(payload, name=name)

    def global_state(self) -> tuple[ModelVersion, NDState]:
        model = self.client.latest_model()
        return model, decode(self.store.get(model.hash), expected=model.manifest, what=f"model {model.hash}")

    # -- the RoundLedger protocol --------------------------------------------------------------
    def head(self) -> str:
        return self.client.latest_model().hash

    def digest(self, state: NDState) -> str:
        return sha256_hex(encode(state, like=self.client.latest_model().manifest))

    def next_step(self) -> tuple[Step, int]:
        """What to do next according to the ledger, so that a restarted aggregator resumes the round."""
        rounds = self.client.rounds()
        if not rounds or rounds[-1].status in ("aggregated", "abandoned"):
            return "open", rounds[-1].number + 1 if rounds else 1
        last = rounds[-1]
        if last.status == "open":
            return ("collect" if time.time() < last.deadline else "finalize"), last.number
        if last.status == "closed":
            return "finalize", last.number
        return "aggregate", last.number

    def open(self, number: int) -> None:
        model = self.client.latest_model()
        self.client.open_round(number, base_model=model.hash, deadline=time.time() + self.round_seconds)
        if self.client.last_result is not None:
            self._opened_in[number] = self.client.last_result.block_number

    def screen(self, number: int) -> None:
        """CloseRound (when still open) and FinalizeRound: the contract's detector rules on every update.

        An aggregator may close a round early only once every trainer expected when it opened has submitted;
        otherwise this waits for the round's deadline (the late members' right), then finalizes.
        """
        record = self.client.round(number)
        if record.status == "open":
            submitted = {u.participant for u in self.client.updates(number)}
            missing = [p for p in record.expected if p not in submitted]
            if missing and time.time() < record.deadline:
                logger.info("round %d: waiting for the deadline, %d expected member(s) missing", number, len(missing))
                time.sleep(max(0.0, record.deadline - time.time()) + 1.0)
            else:
                self.client.close_round(number)
            if record.shared and time.time() >= record.deadline and self.client.round(number).status == "open":
                self.client.close_round(number)  # a shared round's seed is fixed by its CloseRound
        if record.shared:
            for holder in self.holders:
                holder.sketch(number)
            self._wait_for_holders(number, "sketches", lambda p: bool(p.sketched_tx))
        self.client.finalize_round(number)
        self._index_submissions(number)

    def base_state(self, number: int) -> NDState:
        base = self._base(number)
        return decode(self.store.get(base.hash), expected=base.manifest, what=f"base model {base.hash}")

    def _wait_for_holders(self, number: int, what: str, done: Callable[[OrgShares], bool]) -> list[OrgShares]:
        deadline = time.time() + self.share_wait_seconds
        while True:
            parts = self.client.org_shares(number)
            waiting = [p.org for p in parts if not done(p)]
            if not waiting:
                return parts
            if time.time() >= deadline:
                raise SharesPendingError(
                    f"round {number} waits for the share {what} of {', '.join(waiting)}; once those organisations "
                    "ran their share holders, run the aggregator again: it resumes the round"
                )
            time.sleep(0.5)

    def _shared_mean(self, record: Round, accepted: Sequence[Update]) -> Contribution:
        """The weighted mean delta of a shared round, from the holders' sums in the store (each checked against
        its hash on the ledger): the only update-derived tensor the aggregator ever holds."""
        for holder in self.holders:
            holder.sum(record.number)
        inputs = sum_inputs_digest([(u.hash, u.weight) for u in accepted])
        parts = self._wait_for_holders(record.number, "sums", lambda p: p.sum_inputs == inputs)
        base = self._base(record.number)
        sums = [shares.Share.from_bytes(self.store.get(p.sum_hash), base.manifest).values for p in parts]
        mean = mean_of_sums(sums, scale=record.share_scale, total_weight=sum(u.weight for u in accepted))
        return Contribution(inputs, ",".join(sorted(u.participant for u in accepted)), 1, mean)

    def contributions(self, number: int) -> list[Contribution]:
        record = self.client.round(number)
        if record.shared:
            accepted = [u for u in self.client.updates(number) if u.status == "accepted"]
            return [self._shared_mean(record, accepted)] if accepted else []
        base = self._base(number)
        accepted = sorted((u for u in self.client.updates(number) if u.status == "accepted"), key=lambda u: u.hash)
        return [
            Contribution(
                u.hash,
                u.participant,
                u.weight,
                decode(self.store.get(u.hash), expected=base.manifest, what=f"update {u.hash}"),
            )
            for u in accepted
        ]

    def commit(
        self,
        number: int,
        state: NDState,
        used: Sequence[Contribution],
        metrics: Mapping[str, float],
        *,
        strategy: Strategy,
    ) -> RoundOutcome:
        """CommitAggregate of ``state`` built by ``strategy`` from ``used``; AbandonRound when nothing was accepted.

        The endorsers recompute the aggregate: the commit sends the base model's and every used update's bytes
        from the store and, for FedAdam, the strategy's new moments (kept in the store for the next round) and
        the base model's. ``strategy`` must be the one the round's rules name (:class:`StrategyMismatch`).
        """
        base = self._base(number)
        model = None
        if used:
            record = self.client.round(number)
            check_strategy(strategy, self.client.rules(record.rules_version))
            payload = encode(state, like=base.manifest)
            self.store.put(payload)
            optimizer = strategy.server_optimizer()
            optimizer_state = base_optimizer_state = None
            if optimizer is not None and optimizer.stateful:
                moments = strategy.state_dict()
                optimizer_state = encode_moments(moments["m"], moments["v"])
                self.store.put(optimizer_state)
                if base.optimizer_state is not None:
                    base_optimizer_state = self.store.get(base.optimizer_state)
            common = {
                "base": self.store.get(base.hash),
                "metrics": dict(metrics),
                "optimizer_state": optimizer_state,
                "base_optimizer_state": base_optimizer_state,
            }
            if record.shared:  # the organisations' sums, not the updates: no update is in the store
                model = self.client.commit_shared_aggregate(
                    number,
                    payload,
                    sums={p.org: self.store.get(p.sum_hash) for p in self.client.org_shares(number)},
                    update_hashes=[u.hash for u in self.client.updates(number) if u.status == "accepted"],
                    **common,
                )
            else:
                model = self.client.commit_aggregate(
                    number, payload, updates={c.hash: self.store.get(c.hash) for c in used}, **common
                )
            step = "CommitAggregate"
        else:
            self.client.abandon_round(number, "no update was accepted")
            step = "AbandonRound"
        result = self.client.last_result
        updates = self.client.updates(number)
        return RoundOutcome(
            number=number,
            base_model=base.hash,
            model=model,
            accepted=[self._describe(u) for u in updates if u.status == "accepted"],
            rejected=[self._describe(u) for u in updates if u.status == "rejected"],
            metrics=dict(metrics),
            transactions={step: {"tx_id": result.transaction_id, "block": result.block_number} if result else {}},
        )

    # -- waiting for members ---------------------------------------------------------------------
    def wait_for_updates(self, number: int, *, expected: int, timeout: float | None = None) -> int:
        """Blocks until ``expected`` updates of round ``number`` were submitted, or the deadline passes.

        Counts the round's UpdateSubmitted events from its opening block, so submissions made before
        this call count too and nothing is polled.
        """
        deadline = self.client.round(number).deadline if timeout is None else time.time() + timeout
        submitted: set[str] = set()
        done = threading.Event()
        stream = self.client.events(start_block=self._opened_in.get(number, 1))

        def watch() -> None:
            for event in stream:
                payload = json.loads(event.payload)
                if event.name == "UpdateSubmitted" and payload["round"] == number:
                    submitted.add(payload["hash"])
                    if len(submitted) >= expected:
                        done.set()
                        return

        threading.Thread(target=watch, daemon=True).start()
        done.wait(max(0.0, deadline - time.time()))
        stream.close()
        return len(submitted)

    def _index_submissions(self, number: int) -> None:
        """Block and transaction of every update of the round, from the chaincode events between the round's
        opening and its RoundFinalized event (the provenance a model card cites)."""
        with self.client.events(start_block=self._opened_in.get(number, 1)) as stream:
            for event in stream:
                payload = json.loads(event.payload)
                if event.name == "UpdateSubmitted":
                    self._events[payload["hash"]] = (event.transaction_id, event.block_number)
                elif event.name == "RoundFinalized" and payload["round"] == number:
                    return

    def _describe(self, update: Any) -> dict[str, Any]:
        tx_block = self._events.get(update.hash)
        return {
            "participant": update.participant,
            "hash": update.hash,
            "samples": update.samples,
            "epsilon": update.epsilon,
            "epsilon_spent": update.epsilon_spent,
            "score": update.score,
            "reason": update.reason,
            "tx_id": update.tx_id,
            "block": tx_block[1] if tx_block else None,
        }
