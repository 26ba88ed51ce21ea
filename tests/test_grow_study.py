"""scripts/grow_study.py: a study grows by one full rerun per seed, each added as it ends, with the
study's own profile, overrides and code; a rerun skips what is there and changes nothing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdcal import grow
from scripts import grow_study

PROJECT = Path(__file__).resolve().parents[1]


def test_the_seed_runs_with_the_studys_overrides_but_its_own_seed():
    args = grow_study.set_args({"seeds": [0, 1], "control_seeds": [0], "teacher_epochs": 2,
                                "teacher_variants": ["early_stop"], "lr": 0.1, "amp": "off",
                                "split_per_seed": True}, 7)
    assert args == ["--set", "amp=off", "--set", "lr=0.1", "--set", "split_per_seed=True",
                    "--set", "teacher_epochs=2",
                    "--set", "teacher_variants=['early_stop']", "--set", "seeds=7"]
    from kdcal.config import parse_sets, resolve
    cfg = resolve("smoke", parse_sets(args[1::2]))
    assert (cfg.seeds, cfg.teacher_epochs, cfg.teacher_variants, cfg.lr, cfg.amp, cfg.split_per_seed) == (
        [7], 2, ["early_stop"], 0.1, "off", True)


def test_stage_times_are_kdcal_plans_walls_and_a_missing_log_is_said(tmp_path, monkeypatch):
    walls = {"01 teachers": 1150.2, "02 calibration": 74.0, "total": 3196.4}
    monkeypatch.setattr(grow_study.plan, "measured_walls", lambda run_dir: walls)
    assert grow_study.stage_times(tmp_path) == "01 teachers 1150 s, 02 calibration 74 s, total 3196 s"
    monkeypatch.undo()
    assert grow_study.stage_times(tmp_path).startswith("stage times not readable from its log")


def test_other_code_without_a_commit_is_refused_in_one_line():
    with pytest.raises(SystemExit, match="records no git commit"):
        grow_study.kdcal_at({"source_hash": "0" * 64, "git_commit": ""}, None, print)


def test_this_checkout_runs_a_study_of_its_own_code():
    from kdcal import bundle
    here = bundle.code_fingerprint()
    assert grow_study.kdcal_at(here, None, print) == ([sys.executable, "-m", "kdcal"], PROJECT)


def test_a_folder_without_a_bundle_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="has no bundle"):
        grow_study.study_code(tmp_path / "absent")
    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(SystemExit, match="grow_study: .* but no bundle/"):
        grow_study.study_code(tmp_path)


@pytest.mark.slow
def test_a_study_grows_by_a_seed_and_a_rerun_changes_nothing(smoke_copy, tmp_path):
    runs = tmp_path / "runs"
    command = [sys.executable, str(PROJECT / "scripts" / "grow_study.py"), "--study", str(smoke_copy),
               "--seeds", "1", "2", "--runs", str(runs)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    info = grow.study_bundle(smoke_copy)
    assert info["config"]["seeds"] == [0, 1, 2]
    assert json.loads((smoke_copy / "study.json").read_text())["overrides"]["seeds"] == [0, 1, 2]
    provenance = (smoke_copy / "provenance.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in provenance[1:]] == ["0", "1", "2"]
    log = (runs / "grow.log").read_text()
    assert "seed 1: already in" in log
    assert "seed 2: run " in log and "01 teachers " in log and "03 students " in log
    assert "add + analyse" in log
    assert not (runs / "smoke-s1").exists()  # nothing ran for the seed already there

    before = {p: p.read_bytes() for p in smoke_copy.rglob("*") if p.is_file()}
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "added seeds []" in again.stdout
    assert {p: p.read_bytes() for p in smoke_copy.rglob("*") if p.is_file()} == before
