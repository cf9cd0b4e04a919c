"""Capped shares: no participant and no organisation exceeds its cap, and the split is exact."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.anomaly.features import update_features
from fedledger.chaincode.records import Rules
from fedledger.chaincode.rules import apply_patch
from fedledger.chaincode.weights import (
    PLAIN_FEDAVG_RULES,
    WEIGHT_UNITS,
    accepted_weights,
    capped_shares,
    organisation_of,
    quantise,
    weight_values,
)

from ..support import UpdateFactory, dp, enrol, participant_id, ready_round


def test_an_inflated_member_is_held_to_its_cap_and_the_rest_keep_their_ratio() -> None:
    values = {"Org1MSP:liar": 10**9, "Org1MSP:a": 100, "Org2MSP:b": 100, "Org2MSP:c": 300}
    split = capped_shares(values, participant_cap=0.3, organisation_cap=0.6)
    assert split.feasible
    assert split.shares["Org1MSP:liar"] == Fraction(3, 10)
    # c (3/7 of the remaining 0.7) is over the cap too; a and b, equal, split what is left
    assert split.shares["Org2MSP:c"] == Fraction(3, 10)
    assert split.shares["Org1MSP:a"] == split.shares["Org2MSP:b"] == Fraction(2, 10)
    assert sum(split.shares.values()) == 1


def test_an_organisation_is_held_to_its_cap() -> None:
    values = {"Org1MSP:a": 1000, "Org1MSP:b": 1000, "Org1MSP:c": 1000, "Org2MSP:d": 10}
    split = capped_shares(values, participant_cap=1.0, organisation_cap=0.5)
    assert split.feasible
    assert sum(s for p, s in split.shares.items() if p.startswith("Org1")) == Fraction(1, 2)
    assert split.shares["Org2MSP:d"] == Fraction(1, 2)


def test_caps_that_cannot_hold_are_reported_and_the_shares_still_sum_to_one() -> None:
    split = capped_shares({"Org1MSP:a": 5, "Org1MSP:b": 15}, participant_cap=1.0, organisation_cap=0.5)
    assert not split.feasible
    assert split.shares == {"Org1MSP:a": Fraction(1, 4), "Org1MSP:b": Fraction(3, 4)}


@given(
    st.dictionaries(
        st.tuples(st.sampled_from(["Org1MSP", "Org2MSP", "Org3MSP", "Org4MSP"]), st.text("abcdef", min_size=1)),
        st.integers(min_value=0, max_value=10**12),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([0.1, 0.25, 0.34, 0.5, 1.0]),
    st.sampled_from([0.25, 0.34, 0.5, 0.75, 1.0]),
)
def test_caps_hold_whenever_they_can(raw: dict[tuple[str, str], int], p_cap: float, o_cap: float) -> None:
    values = {f"{org}:{name}": v for (org, name), v in raw.items()}
    split = capped_shares(values, participant_cap=p_cap, organisation_cap=o_cap)
    assert sum(split.shares.values()) == 1
    assert all(s >= 0 for s in split.shares.values())
    orgs = {organisation_of(p) for p in values}
    if split.feasible:
        assert max(split.shares.values()) <= Fraction(str(p_cap))
        for org in orgs:
            assert sum(s for p, s in split.shares.items() if organisation_of(p) == org) <= Fraction(str(o_cap))
    else:  # infeasible only when the caps cannot cover the whole weight
        members = {org: sum(1 for p, v in values.items() if organisation_of(p) == org and v > 0) for org in orgs}
        reachable = sum(min(Fraction(str(o_cap)), n * Fraction(str(p_cap))) for n in members.values())
        assert reachable < 1
    units = quantise(WEIGHT_UNITS, split.shares)
    assert sum(units.values()) == WEIGHT_UNITS


def test_quantise_is_exact_and_independent_of_order() -> None:
    shares = {"b": Fraction(1, 3), "a": Fraction(1, 3), "c": Fraction(1, 3)}
    assert quantise(1000, shares) == {"a": 334, "b": 333, "c": 333}
    assert quantise(1000, dict(reversed(list(shares.items())))) == quantise(1000, shares)
    assert quantise(0, shares) == {"a": 0, "b": 0, "c": 0}


def test_negative_values_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        capped_shares({"Org1MSP:a": -1}, participant_cap=1.0, organisation_cap=1.0)


def test_declared_samples_count_up_to_the_bound_times_the_median() -> None:
    samples = {"a": 10, "b": 20, "c": 30, "liar": 10**9}
    norms = dict.fromkeys(samples, 1.0)
    values = weight_values(samples, norms, samples_bound=2.0, norm_clip=False)
    # median of 20 and 30 is 25: the liar counts for 50, the honest members keep their counts
    assert values == {"a": 10, "b": 20, "c": 30, "liar": 50}
    assert weight_values(samples, norms, samples_bound=None, norm_clip=False)["liar"] == 10**9


def test_an_update_above_the_median_norm_weighs_in_proportion_less() -> None:
    samples = {"a": 100, "b": 100, "c": 100, "big": 100}
    norms = {"a": 1.0, "b": 2.0, "c": 3.0, "big": 25.0}
    values = weight_values(samples, norms, samples_bound=None, norm_clip=True)
    # the median norm is 2.5: below it nothing changes; above it the weight times the norm is held to 250
    assert values == {"a": 100, "b": 100, "c": Fraction(250, 3), "big": 10}
    assert values["big"] * Fraction(25) == values["c"] * Fraction(3) == 100 * Fraction(5, 2)


def test_an_update_pointing_away_from_the_centre_adds_nothing() -> None:
    samples = dict.fromkeys(["a", "b", "c", "flipped"], 100)
    norms = dict.fromkeys(samples, 1.0)
    cosines = {"a": 0.5, "b": 0.25, "c": 0.75, "flipped": -0.5}
    values = weight_values(samples, norms, samples_bound=None, norm_clip=False, cosines=cosines)
    # against the centre: the floor (1/100), so that every accepted update keeps a positive weight
    assert values == {"a": 50, "b": 25, "c": 75, "flipped": 1}
    against = dict.fromkeys(samples, -0.1)
    assert weight_values(samples, norms, samples_bound=None, norm_clip=False, cosines=against) == {
        pid: 1 for pid in samples
    }


def test_updates_that_resemble_another_weigh_less() -> None:
    samples = dict.fromkeys(["a", "b", "copy1", "copy2"], 100)
    norms = dict.fromkeys(samples, 1.0)
    nearest = {"a": -0.25, "b": 0.5, "copy1": 0.98, "copy2": 0.995}
    values = weight_values(samples, norms, samples_bound=None, norm_clip=False, nearest=nearest)
    # 1 - the largest cosine with another update, between the floor (1/100) and 1 (resembling nothing earns no more)
    assert values == {"a": 100, "b": 50, "copy1": 2, "copy2": 1}


def test_round_weights_read_sketches_and_samples_only_and_starve_flips_and_copies() -> None:
    """From stored features: a flipped update and two near copies end with a sliver of the weight, a liar's
    samples count as the median; stripping every field but the sketch and the samples changes nothing (so
    the weights can be computed from the summed sketches of secret shares)."""
    factory = UpdateFactory(3)
    honest = [factory.honest() for _ in range(6)]
    copy = {k: v * 1.001 for k, v in honest[0].items()}
    flipped = {k: -v for k, v in factory.honest().items()}
    updates = [*honest, copy, flipped]
    ids = [f"Org{i % 3 + 1}MSP:m{i}" for i in range(len(updates))]
    samples = [100] * 6 + [100, 10**6]
    features = [update_features(u, samples=n) for u, n in zip(updates, samples, strict=True)]
    rules = Rules(max_participant_share=1.0, max_organisation_share=1.0)
    weights = accepted_weights(rules, list(zip(ids, samples, features, strict=True)))
    assert sum(weights.values()) == WEIGHT_UNITS
    fair = WEIGHT_UNITS / len(updates)
    least_honest = min(weights[pid] for pid in ids[1:6])
    assert least_honest > fair
    assert weights[ids[-1]] < 0.1 * least_honest  # flipped, however many samples it declares
    assert max(weights[ids[0]], weights[ids[6]]) < 0.1 * least_honest  # the pair of near copies
    stripped = [{"sketch": f["sketch"], "sketch_blocks": f["sketch_blocks"], "samples": f["samples"]} for f in features]
    assert accepted_weights(rules, list(zip(ids, samples, stripped, strict=True))) == weights
    plain = apply_patch(rules, PLAIN_FEDAVG_RULES)
    assert accepted_weights(plain, list(zip(ids, samples, features, strict=True)))[ids[-1]] > 0.99 * WEIGHT_UNITS


def test_weight_values_need_one_norm_per_participant() -> None:
    with pytest.raises(ValueError, match="one norm and one cosine"):
        weight_values({"a": 1, "b": 2}, {"a": 1.0}, samples_bound=2.0, norm_clip=True)


# -- on the ledger (both backends) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "defence",
    ["default-rules", "caps-only", "no-caps-baseline"],
)
def test_an_inflated_dataset_cannot_buy_the_round(consortium, updates, defence: str) -> None:
    """The attack: an organisation's admin attests 10^9 rows for its trainer, which declares them all.

    Without caps or bounds (the baseline: caps 1.0, no samples bound) it takes 0.999997 of the weight and the pool;
    with the caps alone it holds at most half, and the honest organisation keeps its half; with the default rules
    its samples count for the round's median (1000), so it holds about a quarter of the weight.
    """
    rules: dict[str, object] = {"detector_min_updates": 10}
    if defence == "caps-only":
        rules |= PLAIN_FEDAVG_RULES
    elif defence == "no-caps-baseline":
        rules |= PLAIN_FEDAVG_RULES | {"max_participant_share": 1.0, "max_organisation_share": 1.0}
    aggregator, _, _ = ready_round(consortium, trainers=0, rules=rules)
    liar = enrol(consortium, "Org1MSP", "liar", dataset_size=10**9)
    honest = [enrol(consortium, mspid, name) for mspid, name in (("Org1MSP", "a"), ("Org2MSP", "b"), ("Org2MSP", "c"))]
    aggregator.abandon_round(1, "trainers joined after it opened")
    aggregator.open_round(2, base_model=aggregator.latest_model().hash, deadline=consortium.now() + 600)
    liar.submit_update(2, updates.bytes(), samples=10**9, privacy=dp(1.0), train_loss=0.5)
    for client in honest:
        client.submit_update(2, updates.bytes(), samples=1000, privacy=dp(1.0), train_loss=0.5)
    aggregator.finalize_round(2)
    weight = {u.participant: u.weight for u in aggregator.updates(2)}
    balances = aggregator.balances()
    org2 = [participant_id("Org2MSP", "b"), participant_id("Org2MSP", "c")]
    assert sum(weight.values()) == WEIGHT_UNITS and sum(balances.values()) == 1000
    if defence == "default-rules":  # 1000 of 4000 counted samples (the bound is the median), then norm and direction
        # factors (these updates share a direction plus noise) move it by some percent
        assert 0.15 * WEIGHT_UNITS < weight[participant_id("Org1MSP", "liar")] < 0.30 * WEIGHT_UNITS
        assert sum(weight[p] for p in org2) >= WEIGHT_UNITS // 2
    elif defence == "caps-only":
        assert weight[participant_id("Org1MSP", "liar")] <= WEIGHT_UNITS // 2
        assert [weight[p] for p in org2] == [WEIGHT_UNITS // 4, WEIGHT_UNITS // 4]
        assert [balances[p] for p in org2] == [250, 250]
    else:
        assert weight[participant_id("Org1MSP", "liar")] > 0.99999 * WEIGHT_UNITS
        assert sum(balances[p] for p in org2) == 0
