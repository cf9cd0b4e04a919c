"""The trust study's pure parts: the behaviour schedule, the noise spread, the tables and the findings."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.bench.trust.measure import HONEST, INTERMITTENT, MALICIOUS, ROLES, SLEEPER, coordinate_std, plan
from fedledger.bench.trust.render import findings, table


def test_schedule_of_each_role():
    assert [plan(INTERMITTENT, n, turn=3).action for n in range(1, 9)] == [
        "honest",
        "skip",
        "noisy",
        "honest",
        "skip",
        "noisy",
        "honest",
        "skip",
    ]
    assert {plan(MALICIOUS, n, turn=3).action for n in range(1, 9)} == {"sign_flip_x10"}
    assert [plan(SLEEPER, n, turn=3).action for n in (1, 3, 4, 8)] == ["honest", "honest", "scale_x10", "scale_x10"]
    assert all(plan(name, n, turn=3).action == "honest" for name in HONEST for n in range(1, 9))


def test_coordinate_std_is_the_rms_coordinate_of_the_deltas():
    deltas = [{"a": np.full(4, 2.0, np.float32)}, {"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32)}]
    assert coordinate_std(deltas) == pytest.approx(np.sqrt((4.0 + 0.0) / 2))
    assert coordinate_std([]) == 1e-3


def _result() -> dict:
    names = [*HONEST, INTERMITTENT, MALICIOUS, SLEEPER]
    records = []
    for n in (1, 2):
        for name in names:
            action = plan(name, n, turn=1).action
            bad = name in (MALICIOUS, SLEEPER) and action != "honest"
            records.append(
                {
                    "round": n,
                    "participant": name,
                    "role": ROLES[name],
                    "action": "skipped" if action == "skip" else action,
                    "verdict": "none" if action == "skip" else ("rejected" if bad else "accepted"),
                    "trust": 0.5 if bad and n == 2 else 0.8,
                    "status": "suspended" if bad and n == 2 else "active",
                    "reward": 0 if bad or action == "skip" else 100,
                }
            )
    final = {name: {"trust": 0.5 if name in (MALICIOUS, SLEEPER) else 0.8, "role": ROLES[name]} for name in names}
    for name in names:
        final[name]["status"] = "suspended" if name in (MALICIOUS, SLEEPER) else "active"
    balances = {name: sum(r["reward"] for r in records if r["participant"] == name) for name in names}
    return {"records": records, "final": final, "balances": balances}


def test_table_has_one_row_per_participant_with_action_verdict_trust_and_reward():
    text = table(_result())
    assert text.splitlines()[0] == "| participant | role | r1 | r2 | final trust | status | balance |"
    assert (
        "| mallory | malicious | sign_flip_x10 ✗ 0.80 (0) | sign_flip_x10 ✗ 0.50 (0) | 0.500 | suspended | 0 |" in text
    )
    assert "| clinic-e | intermittent | honest ✓ 0.80 (100) | skipped - 0.80 (0) | 0.800 | active | 100 |" in text


def test_findings_report_the_honest_share_and_each_non_honest_member():
    text = findings(_result())
    assert "- Honest members (4 of 7) earned 80.0% of all rewards paid (800 of 1000 units)." in text
    assert "- mallory (malicious): 2 rejected update(s), final trust 0.500, suspended after round 2, balance 0" in text
    assert "- lab-h (sleeper): 1 rejected update(s)" in text and "balance 100 (10.0%)" in text
    assert text.endswith("Honest updates rejected (false positives of the detector): 0.")


def test_the_study_refuses_an_out_folder_it_did_not_make_and_leaves_it_untouched(tmp_path, capsys):
    from fedledger.bench.trust.cli import main

    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "draft.txt").write_text("keep me")
    assert main(["--quick", "--out", str(mine)]) == 2
    assert "no fedledger run made" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["draft.txt"] and (mine / "draft.txt").read_text() == "keep me"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["--quick", "--out", str(a_file)]) == 2
    assert a_file.read_text() == "x"


def test_a_finished_study_run_replaces_only_an_earlier_run(tmp_path):
    from fedledger.bench.trust.measure import run_study
    from fedledger.experiments.run_folder import MARKER

    out = tmp_path / "trust-run"
    run_study(out=out, rounds=1, turn=1, epochs=1, model_name="tiny-bert", seed=0)
    assert (out / MARKER).is_file() and (out / "consortium").is_dir()
    first = (out / MARKER).read_text()
    run_study(out=out, rounds=1, turn=1, epochs=1, model_name="tiny-bert", seed=0)
    assert (out / MARKER).read_text() != first  # a new run, swapped in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust-run"]  # no staging or retired folder left
