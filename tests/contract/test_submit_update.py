"""SubmitUpdate: every rejection class, each asserting the error and that nothing changed."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace

import numpy as np
import pytest

from fedledger.anomaly.features import decode_sketch
from fedledger.chaincode.embedded.ledger import LedgerError
from fedledger.chaincode.embedded.proposal import SignedProposal
from fedledger.chaincode.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RuleViolation,
)
from fedledger.chaincode.privacy_budget import epsilon_of
from fedledger.chaincode.records import Rules
from fedledger.sdk.errors import ContractRejected, EndorseError
from fedledger.sdk.store import UpdateStore, create_key
from fedledger.trainer.aggregator import Aggregator
from fedledger.trainer.rounds import RoundDriver

from ..support import (
    SHAPES,
    dp,
    grant,
    only_on,
    participant_id,
    ready_round,
    tensors_bytes,
    world,
    zero_model,
)


@pytest.fixture
def round1(consortium):
    aggregator, trainers, _genesis = ready_round(
        consortium,
        trainers=2,
        rules={"epsilon_per_round": 2.0, "epsilon_total": 3.0, "max_update_norm": 5.0, "max_update_bytes": 20_000},
    )
    return aggregator, trainers


def submit(client, factory, *, round_number=1, data=None, samples=100, epsilon=1.0, loss=0.7, privacy=None):
    return client.submit_update(
        round_number,
        data if data is not None else factory.bytes(),
        samples=samples,
        privacy=privacy or dp(epsilon),
        train_loss=loss,
    )


def test_happy_path_records_commitment_and_features_not_bytes(consortium, round1, updates):
    aggregator, (trainer, _) = round1
    tensors = updates.honest()
    data = tensors_bytes(tensors)
    record = submit(trainer, updates, data=data, samples=120, epsilon=1.5, loss=0.42)
    assert record.hash == hashlib.sha256(data).hexdigest()
    assert (record.samples, record.train_loss, record.status) == (120, 0.42, "submitted")
    assert record.privacy == dp(1.5).to_dict()  # what was declared: the training parameters, not an ε
    assert record.epsilon == epsilon_of([dp(1.5)], 1e-5) and 1.49 < record.epsilon <= 1.5  # what the contract computed
    flat = np.concatenate([v.ravel().astype(np.float64) for _, v in sorted(tensors.items())])
    assert record.features["l2_norm"] == pytest.approx(np.linalg.norm(flat))
    assert len(decode_sketch(record.features["sketch"])) == Rules().sketch_dim
    assert aggregator.update(1, record.participant) == record
    # the bytes never reach a block, in any encoding: only their hash does
    blocks = b"".join(consortium.blocks())
    assert record.hash.encode() in blocks
    tail = data[-48:]
    assert tail not in blocks and base64.b64encode(tail)[4:-4] not in blocks


def test_unregistered_identity_is_refused(consortium, round1, updates):
    aggregator, _ = round1
    before = world(aggregator)
    with pytest.raises(PermissionDenied, match="not a registered participant"):
        submit(consortium.client("Org2MSP", "stranger"), updates)
    assert world(aggregator) == before


def test_wrong_role_is_refused(consortium, round1, updates):
    aggregator, _ = round1
    auditor = grant(consortium, "Org2MSP", "auditor0", "auditor")
    before = world(aggregator)
    for caller in (auditor, aggregator):
        with pytest.raises(PermissionDenied, match="needs role trainer"):
            submit(caller, updates)
    assert world(aggregator) == before


def test_suspended_trainer_is_refused(consortium, round1, updates):
    aggregator, (trainer, _) = round1
    consortium.admin("Org1MSP").suspend(participant_id("Org1MSP", "trainer0"), "investigation")
    before = world(aggregator)
    with pytest.raises(PermissionDenied, match="suspended"):
        submit(trainer, updates)
    assert world(aggregator) == before


def test_duplicate_submission_is_refused(consortium, round1, updates):
    aggregator, (trainer, _) = round1
    submit(trainer, updates)
    before = world(aggregator), consortium.ledger_state()
    with pytest.raises(AlreadyExists, match="already submitted"):
        submit(trainer, updates)
    assert (world(aggregator), consortium.ledger_state()) == before


@only_on("embedded")
def test_replayed_proposal_is_refused_by_the_embedded_ledger(consortium, round1):
    """The very same signed proposal sent twice is refused by transaction id."""
    _, (trainer, _) = round1
    ledger = consortium.ledger
    signed: SignedProposal = trainer.contract._backend._sign(trainer.contract._proposal("WhoAmI", (), None))
    ledger.submit(signed)
    height = ledger.height()
    with pytest.raises(LedgerError, match="duplicate transaction id") as info:
        ledger.submit(signed)
    assert info.value.code == "DUPLICATE_TXID"
    assert ledger.height() == height


@only_on("fabric")
def test_replayed_transaction_is_invalidated_as_duplicate_txid_on_fabric(consortium, round1, updates):
    """An endorsed SubmitUpdate ordered twice: the peers commit the first and mark the replay
    DUPLICATE_TXID, so its writes are never applied again."""
    aggregator, (trainer, _) = round1
    backend = trainer.contract._backend
    proposal = trainer.contract._proposal(
        "SubmitUpdate", (1, 100, json.dumps(dp(1.0).to_dict()), "0.5"), {"update": updates.bytes()}
    )
    transaction = backend.endorse(proposal)
    tx_id = transaction.transaction_id
    backend.submit_endorsed(transaction)
    assert backend.commit_status(transaction.channel, transaction.transaction_id)[0] == "VALID"
    before = world(aggregator)

    def copies() -> list[str]:
        return [tx.validation_code for tx in consortium.ledger_state() if tx.transaction_id == tx_id]

    backend.submit_endorsed(transaction)  # the same transaction (id, proposal, endorsements) again
    deadline = time.monotonic() + 30
    while len(copies()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert copies() == ["VALID", "DUPLICATE_TXID"]
    assert world(aggregator) == before


def test_closed_unknown_and_late_rounds_are_refused(consortium, round1, updates):
    aggregator, (trainer, other) = round1
    before = world(aggregator)
    with pytest.raises(NotFound, match="round 7 does not exist"):
        submit(trainer, updates, round_number=7)
    with pytest.raises(InvalidArgument, match="round must be an integer"):
        trainer.contract.submit("SubmitUpdate", arguments=["one", "10", "1", "0.1"], transient={"update": b"x"})
    consortium.advance(3601)
    with pytest.raises(FailedPrecondition, match="passed its deadline"):
        submit(trainer, updates)
    assert world(aggregator) == before
    aggregator.close_round(1)
    before = world(aggregator)
    with pytest.raises(FailedPrecondition, match="is closed"):
        submit(other, updates)
    assert world(aggregator) == before


def test_per_round_epsilon_budget_is_enforced(consortium, round1, updates):
    aggregator, (trainer, _) = round1
    before = world(aggregator)
    with pytest.raises(RuleViolation, match=r"spend epsilon 2\.5 in one round .*per-round budget is 2\.0"):
        submit(trainer, updates, epsilon=2.5)
    assert world(aggregator) == before
    submit(trainer, updates, epsilon=2.0)
    assert trainer.balance(participant_id("Org1MSP", "trainer0")).epsilon_spent == epsilon_of([dp(2.0)], 1e-5)


def test_epsilon_is_computed_from_the_training_parameters_never_declared(consortium, round1, updates):
    """The attack: declare ε = 0 (or anything) and train as long as you like. ε is no argument any more."""
    aggregator, (trainer, _) = round1
    before, ledger = world(aggregator), consortium.ledger_state()
    greedy = replace(dp(2.0), steps=dp(2.0).steps * 10)  # ten times the training a budget of 2.0 allows
    for privacy, error, message in (
        (greedy, RuleViolation, "spend epsilon .* per-round budget is 2.0"),
        (replace(dp(1.0), delta=1e-3), RuleViolation, "delta 0.001 is larger than the rules allow"),
    ):
        with pytest.raises(error, match=message):
            submit(trainer, updates, privacy=privacy)
    for bad, message in (
        ('{"epsilon": 0}', "unknown"),
        ('{"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5, "accountant": "prv"}', "rdp"),
        ('{"noise_multiplier": 0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5}', "noise_multiplier"),
        ("[1, 2]", "privacy must be"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            trainer.contract.submit("SubmitUpdate", arguments=["1", "100", bad, "0.5"], transient={"update": b"x"})
    assert world(aggregator) == before and consortium.ledger_state() == ledger


def test_dp_can_be_required_by_the_rules(consortium, updates):
    aggregator, (trainer, _), _ = ready_round(consortium, trainers=2, rules={"require_dp": True})
    before = world(aggregator)
    with pytest.raises(RuleViolation, match="the rules require DP-SGD"):
        trainer.submit_update(1, updates.bytes(), samples=100, privacy=None, train_loss=0.5)
    assert world(aggregator) == before
    assert submit(trainer, updates).epsilon is not None


def test_total_epsilon_is_composed_with_rdp_over_rounds_as_opacus_does(consortium, updates):
    aggregator, (a, _b), genesis = ready_round(
        consortium, trainers=2, rules={"epsilon_per_round": 2.0, "epsilon_total": 2.5}
    )
    first = submit(a, updates, epsilon=2.0)
    assert first.epsilon_spent == first.epsilon  # the first update: composed = its own round's ε
    aggregator.abandon_round(1, "moving on")  # spent privacy stays spent, whatever became of the round
    aggregator.open_round(2, base_model=genesis, deadline=consortium.now() + 600)
    before = world(aggregator)
    # basic composition would say 2.0 + 1.5 = 3.5; RDP composes to ~2.58: still over 2.5, refused
    with pytest.raises(RuleViolation, match=r"composed epsilon to 2\.5\d+ at delta 1e-05, over the budget 2\.5"):
        submit(a, updates, round_number=2, epsilon=1.5)
    assert world(aggregator) == before
    # 2.0 + 1.0 would be refused by summing (3.0 > 2.5); the RDP accountant composes it to ~2.3: accepted
    record = submit(a, updates, round_number=2, epsilon=1.0)
    assert record.epsilon == epsilon_of([dp(1.0)], 1e-5)
    spent = a.balance(participant_id("Org1MSP", "trainer0")).epsilon_spent
    opacus = pytest.importorskip("opacus.accountants")
    accountant = opacus.RDPAccountant()
    accountant.history = [(p.noise_multiplier, p.sample_rate, p.steps) for p in (dp(2.0), dp(1.0))]
    assert spent == accountant.get_epsilon(delta=1e-5)  # the ledger's ε is the accountant's, bit for bit
    assert 2.0 < spent < 2.5
    # each update records the composed ε through it: the very figure the budget check used and GetBalance reports
    assert record.epsilon_spent == spent and a.update(2, record.participant).epsilon_spent == spent


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            lambda t: {**t, "layer.0.lora_A": np.full(SHAPES["layer.0.lora_A"], np.nan, np.float32)},
            InvalidArgument,
            "NaN or Inf",
        ),
        (
            lambda t: {**t, "layer.1.lora_B": np.full(SHAPES["layer.1.lora_B"], np.inf, np.float32)},
            InvalidArgument,
            "NaN or Inf",
        ),
        (lambda t: {**t, "layer.0.lora_A": np.zeros((8, 31), np.float32)}, InvalidArgument, "has shape"),
        (lambda t: {k: v for k, v in t.items() if k != "layer.1.lora_A"}, InvalidArgument, "missing"),
        (lambda t: {**t, "extra.weight": np.zeros(3, np.float32)}, InvalidArgument, "unexpected"),
        (lambda t: {**t, "layer.0.lora_A": np.zeros(SHAPES["layer.0.lora_A"], np.int32)}, InvalidArgument, "dtype"),
        (lambda t: {k: v * 1000 for k, v in t.items()}, RuleViolation, "exceeds the bound 5.0"),
    ],
    ids=["nan", "inf", "wrong-shape", "missing-tensor", "extra-tensor", "int-dtype", "norm-too-large"],
)
def test_invalid_update_contents_are_refused(consortium, round1, updates, mutate, error, message):
    aggregator, (trainer, _) = round1
    before = world(aggregator)
    with pytest.raises(error, match=message):
        submit(trainer, updates, data=tensors_bytes(mutate(updates.honest())))
    assert world(aggregator) == before


def test_oversized_garbage_and_missing_bytes_are_refused(consortium, round1, updates):
    aggregator, (trainer, _) = round1
    before = world(aggregator)
    with pytest.raises(RuleViolation, match="at most 20000"):
        submit(trainer, updates, data=b"\0" * 20_001)
    with pytest.raises(InvalidArgument, match="not a valid safetensors"):
        submit(trainer, updates, data=b"definitely not tensors")
    with pytest.raises(InvalidArgument, match="transient"):
        trainer.contract.submit("SubmitUpdate", arguments=[1, 100, "", "0.5"])
    assert world(aggregator) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "many", "", "0.5"), "samples must be an integer"),
        ((1, 0, "", "0.5"), "samples must be >= 1"),
        ((1, 100, "-1", "0.5"), "privacy must be a JSON dict"),
        ((1, 100, "nan", "0.5"), "privacy must be JSON"),
        ((1, 100, "", "inf"), "train_loss must be finite"),
        ((1, 100, ""), "got 3 argument"),
    ],
)
def test_malformed_arguments_are_refused(consortium, round1, updates, args, message):
    aggregator, (trainer, _) = round1
    before = world(aggregator)
    with pytest.raises(InvalidArgument, match=message):
        trainer.contract.submit("SubmitUpdate", arguments=args, transient={"update": updates.bytes()})
    assert world(aggregator) == before


def test_samples_above_attested_dataset_size(consortium, round1, updates):
    aggregator, (trainer, _) = round1
    before = world(aggregator)
    with pytest.raises(RuleViolation, match="exceed the dataset size its organisation's admin attested"):
        submit(trainer, updates, samples=1001)
    assert world(aggregator) == before


def test_contract_errors_are_endorse_errors_with_transaction_ids(consortium, round1, updates):
    _, (trainer, _) = round1
    with pytest.raises(EndorseError) as info:
        submit(trainer, updates, round_number=99)
    assert len(info.value.transaction_id) == 64
    assert info.value.code == "NOT_FOUND"
    assert isinstance(info.value, ContractRejected)
    assert "round 99 does not exist" in info.value.contract_message


def test_an_update_in_another_dtype_is_refused_and_the_round_still_completes(consortium, updates, tmp_path):
    """A float64 update against a float32 base model used to pass SubmitUpdate and then stall aggregation."""
    aggregator, trainers, _genesis = ready_round(consortium, trainers=2)
    store = UpdateStore(tmp_path / "store", create_key(tmp_path / "store.key"))
    genesis = store.put(zero_model())
    before = world(aggregator)
    float64 = {k: v.astype(np.float64) for k, v in updates.honest().items()}
    with pytest.raises(InvalidArgument, match="dtype F64; the base model has F32"):
        submit(trainers[0], updates, data=tensors_bytes(float64))
    assert world(aggregator) == before
    assert [p.stem for p in (tmp_path / "store").rglob("*.sealed")] == [genesis]

    def collect(number: int) -> None:  # every member re-encodes in the base model's dtype and submits again
        for trainer in trainers:
            payload = updates.bytes()
            store.put(payload)
            submit(trainer, updates, round_number=number, data=payload)

    ledger = Aggregator(aggregator, store)
    outcome = RoundDriver(ledger, collect=collect).run_round()
    assert outcome.number == 1 and outcome.started_at == "collect"
    assert aggregator.round(1).status == "aggregated"
    assert sorted(u["hash"] for u in outcome.model.updates) == sorted(u.hash for u in aggregator.updates(1))


def test_a_copy_of_another_members_update_is_refused_and_changes_nothing(consortium, round1, updates):
    aggregator, (author, copier) = round1
    original = updates.bytes()
    authored = submit(author, updates, data=original)
    before = world(aggregator)
    with pytest.raises(AlreadyExists, match="exact bytes"):
        submit(copier, updates, data=original)
    assert world(aggregator) == before
    own = submit(copier, updates)  # its own update is accepted, and the author keeps its record
    assert own.hash != authored.hash
    assert {u.participant: u.hash for u in aggregator.updates(1)} == {
        authored.participant: authored.hash,
        own.participant: own.hash,
    }
