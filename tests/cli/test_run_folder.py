"""A run folder is relocatable (audit and report check it where it is now, from any working directory), and a
new run replaces the previous one only once it finished."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fedledger.experiments.run_folder import MARKER, new_run

from .commands import fedledger_cli, tree


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-4] ^= 0x01
    path.write_bytes(bytes(raw))


def test_no_path_in_a_run_folder_names_where_it_was_made(demo_run):
    where = str(demo_run.resolve()).encode()
    holding = [name for name, data in tree(demo_run).items() if where in data]
    assert holding == []


def test_a_moved_run_audits_and_reports_from_another_directory(demo_run, tmp_path):
    moved = tmp_path / "elsewhere" / "renamed-run"
    shutil.copytree(demo_run, tmp_path / "made")
    moved.parent.mkdir()
    (tmp_path / "made").rename(moved)
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    audit = fedledger_cli("audit", str(moved), cwd=cwd)
    assert audit.returncode == 0 and audit.stdout.startswith("OK: "), audit.stdout + audit.stderr
    report = fedledger_cli("report", str(moved), cwd=cwd)
    assert report.returncode == 0, report.stderr
    assert str(moved.resolve()) not in (moved / "report.html").read_text()  # the page moves with the folder too


def test_the_audit_of_a_copy_checks_the_copy_not_the_original(demo_run, tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copies" / "copy"
    shutil.copytree(demo_run, original)
    shutil.copytree(original, copy)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _flip_byte(original / "model" / "global_adapter.safetensors")
    assert fedledger_cli("audit", str(original), cwd=cwd).returncode == 1
    untouched = fedledger_cli("audit", "copy", cwd=copy.parent)  # also a relative run folder
    assert untouched.returncode == 0, untouched.stdout + untouched.stderr
    _flip_byte(copy / "model" / "global_adapter.safetensors")
    shutil.copy(demo_run / "model" / "global_adapter.safetensors", original / "model")  # the original is fine again
    tampered = fedledger_cli("audit", str(copy), cwd=cwd)
    assert tampered.returncode == 1 and "global_adapter.safetensors" in tampered.stdout, tampered.stdout
    assert fedledger_cli("audit", str(original), cwd=cwd).returncode == 0


def test_a_demo_that_fails_late_leaves_the_previous_run_byte_identical(tmp_path):
    out = tmp_path / "run"
    assert fedledger_cli("demo", "--synthetic", "--out", str(out), "--rounds", "1").returncode == 0
    before = tree(out)
    broken = tmp_path / "not-a-model"  # a folder passes the argument check; loading it fails during the run
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    failed = fedledger_cli("demo", "--out", str(out), "--model", str(broken), "--rounds", "1")
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("fedledger: error: ")]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-model", "run"]  # no partial run left beside it


def test_an_interrupted_run_leaves_the_previous_run_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    with new_run(out) as folder:
        (folder / "result.txt").write_text("the first run")
    before = tree(out)
    with pytest.raises(KeyboardInterrupt), new_run(out) as folder:
        (folder / "result.txt").write_text("half of the second run")
        raise KeyboardInterrupt
    assert tree(out) == before and (out / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_finished_run_replaces_the_previous_one_and_leaves_nothing_beside_it(tmp_path):
    out = tmp_path / "run"
    with new_run(out) as folder:
        (folder / "first.txt").write_text("1")
    with new_run(out) as folder:
        assert folder.parent == tmp_path and folder != out and (folder / MARKER).is_file()
        (folder / "second.txt").write_text("2")
        assert (out / "first.txt").is_file()  # the previous run is complete until the new one is
    assert sorted(tree(out)) == [MARKER, "second.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_folder_the_user_filled_during_the_run_is_not_replaced(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FileExistsError, match="choose another --out"), new_run(out) as folder:
        (folder / "result.txt").write_text("the run")
        out.mkdir()
        (out / "thesis.txt").write_text("mine")
    assert tree(out) == {"thesis.txt": b"mine"}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
