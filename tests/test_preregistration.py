"""The confirmatory study is fixed before it runs: its preregistration names the profile, the
seeds, and the commit and source hash of the code that analyses it; the profile's seeds are the
preregistered ones; the hash is the one the code at that commit has; any committed study of that
profile ran exactly that code on exactly those seeds (kdcal.prereg)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from kdcal import prereg
from kdcal.bundle import PROVENANCE, PROVENANCE_COLUMNS, code_fingerprint
from kdcal.config import resolve

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "preregistration-confirm-transfer.md"
IN_GIT = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                        capture_output=True).returncode == 0


def test_the_preregistration_fixes_the_profiles_seeds():
    block = prereg.read_prereg(PAGE)
    assert block["profile"] == "confirm-transfer"
    assert sorted(block["seeds"]) == sorted(resolve(block["profile"]).seeds)
    assert len(block["seeds"]) == len(set(block["seeds"])) >= 2


@pytest.mark.skipif(not IN_GIT, reason="needs the project's git history")
def test_the_preregistered_source_hash_is_the_code_at_the_preregistered_commit():
    block = prereg.read_prereg(PAGE)
    assert prereg.source_hash_at(block["analysis_commit"]) == block["source_hash"]


@pytest.mark.skipif(not IN_GIT, reason="needs the project's git history")
def test_source_hash_at_a_commit_is_code_fingerprint_of_that_tree():
    """The git reading agrees with the bundles' own fingerprint where the tree is HEAD's."""
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "kdcal"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        pytest.skip("kdcal/ has uncommitted changes")
    assert prereg.source_hash_at("HEAD") == code_fingerprint()["source_hash"]


def test_a_committed_study_of_the_profile_ran_the_preregistered_code_on_its_seeds():
    block = prereg.read_prereg(PAGE)
    study = ROOT / "outputs" / block["profile"]
    if not study.exists():
        pytest.skip(f"no outputs/{block['profile']} yet: nothing has run")
    departures = [d for d in prereg.study_departures(block, study) if "not run yet" not in d]
    assert not departures, departures


def _provenance(tmp_path, seeds, source_hash):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [{"seed": s, "bundle_id": "b", "git_commit": "c", "source_hash": source_hash,
             "device": "cpu", "host": "h", "date": "d"} for s in seeds]
    pd.DataFrame(rows, columns=PROVENANCE_COLUMNS).to_csv(tmp_path / PROVENANCE, index=False)
    return tmp_path


def test_departures_name_other_code_extra_seeds_and_missing_seeds(tmp_path):
    block = {"profile": "p", "seeds": [0, 1, 2], "analysis_commit": "x", "source_hash": "a" * 64}
    assert prereg.study_departures(block, _provenance(tmp_path, [0, 1, 2], "a" * 64)) == []
    got = prereg.study_departures(block, _provenance(tmp_path, [0, 1, 3], "b" * 64))
    assert any("seed 0 ran code bbbbbbbbbbbb" in d for d in got)
    assert any("seeds [3] are beyond the preregistration" in d for d in got)
    assert any("preregistered seeds [2] have not run yet" in d for d in got)
    assert prereg.study_departures(block, tmp_path / "nothing") == [
        f"{tmp_path / 'nothing'}: no {PROVENANCE} (no seed has run)"]


@pytest.mark.parametrize("text, needle", [("no block", "exactly one"),
                                          ("```json prereg\n{not json}\n```", "not JSON"),
                                          ('```json prereg\n{"profile": "p"}\n```', "lacks seeds")])
def test_a_broken_preregistration_is_one_line_naming_what_is_wrong(tmp_path, text, needle):
    page = tmp_path / "p.md"
    page.write_text(text)
    with pytest.raises(prereg.PreregError, match=needle):
        prereg.read_prereg(page)


def test_the_status_note_says_interim_confirmatory_or_departing(tmp_path):
    block = {"profile": "p", "seeds": [0, 1, 2], "analysis_commit": "abcdef1234",
             "source_hash": "a" * 64}
    page = tmp_path / "preregistration-p.md"
    page.write_text("```json prereg\n" + json.dumps(block) + "\n```\n")
    note = lambda study: prereg.status_note("p", study, page=page)  # noqa: E731
    assert "Interim: 2 of 3 seeds have run" in note(_provenance(tmp_path / "a", [0, 1], "a" * 64))
    assert "this is its answer" in note(_provenance(tmp_path / "b", [0, 1, 2], "a" * 64))
    departs = note(_provenance(tmp_path / "c", [0, 1, 2, 3], "a" * 64))
    assert "departs from it" in departs and "seeds [3] are beyond" in departs
    assert prereg.status_note("p", tmp_path / "a", page=tmp_path / "none.md") == ""
    assert prereg.status_note("no-such-profile", tmp_path / "a") == ""
