"""Seeds added run by run (kdcal.grow): halves added up give the one run's tables exactly, and
every refusal leaves the study folder byte-identical."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kdcal import bundle, config, grow, study
from kdcal.claims import claims_table
from kdcal.store import write_json

# the smoke profile on synthetic data, in this process, with tiny epochs: seconds
TINY = {"workers": 0, "threads": 1, "teacher_epochs": 2, "student_epochs": 1,
        "teacher_variants": ["early_stop"]}


def run_seeds(seeds: list[int], out: Path) -> Path:
    """What `kdcal run --profile smoke --set seeds=...` does, stage by stage; returns the bundle."""
    overrides = {**TINY, "seeds": seeds}
    cfg = config.resolve("smoke", overrides)
    write_json({"profile": "smoke", "overrides": overrides, "config": cfg.to_dict()},
               out / "study.json")
    quiet = dict(log=lambda *_: None)
    study.train_teachers(cfg, out, **quiet)
    study.train_teacher_variants(cfg, out, **quiet)
    study.calibrate_teachers(cfg, out, **quiet)
    study.compare_calibrators(cfg, out, **quiet)
    study.distill_students(cfg, out, **quiet)
    results = study.write_results(cfg, out)
    study.save_table(claims_table(results), out, "claims.csv")
    return bundle.export_bundle(cfg, out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seeds 0 and 1 in one run, and each alone in its own folder."""
    root = tmp_path_factory.mktemp("grow")
    return {name: run_seeds(seeds, root / name).parent
            for name, seeds in (("both", [0, 1]), ("s0", [0]), ("s1", [1]))}


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))} if root.exists() else {}


def test_two_halves_add_up_to_the_one_run(runs, tmp_path):
    grown = tmp_path / "grown"
    assert grow.add_bundle(runs["s1"], grown, log=lambda *_: None) == [1]
    assert grow.add_bundle(runs["s0"] / "bundle", grown, log=lambda *_: None) == [0]
    for name in ("results.csv", "claims.csv"):
        assert (grown / name).read_bytes() == (runs["both"] / name).read_bytes(), name
    info = json.loads((grown / "study.json").read_text())
    assert info["config"]["seeds"] == [0, 1] and info["overrides"]["seeds"] == [0, 1]
    assert info["config"] == {**json.loads((runs["both"] / "study.json").read_text())["config"]}
    # the stage functions find every run done under the grown config (a rerun trains nothing)
    cfg = config.resolve("smoke", info["overrides"])
    assert set(bundle.study_run_ids(cfg, grown)) == set(bundle.study_run_ids(cfg, runs["both"]))
    bundle.study_results(cfg, grown)  # notebook 04's table, rebuilt from the grown runs
    assert (grown / "results.csv").read_bytes() == (runs["both"] / "results.csv").read_bytes()


def test_provenance_records_each_seed_and_its_run(runs, tmp_path):
    grown = tmp_path / "grown"
    grow.add_bundle(runs["s0"], grown, log=lambda *_: None)
    grow.add_bundle(runs["s1"], grown, log=lambda *_: None)
    prov = pd.read_csv(grown / bundle.PROVENANCE, dtype=str)
    assert list(prov.columns) == bundle.PROVENANCE_COLUMNS and list(prov["seed"]) == ["0", "1"]
    ids = {s: json.loads((runs[f"s{s}"] / "bundle" / "bundle.json").read_text())["provenance"][0]
           ["bundle_id"] for s in (0, 1)}
    assert list(prov["bundle_id"]) == [ids[0], ids[1]] and ids[0] != ids[1]
    assert set(prov["device"]) == {"cpu"}
    assert prov["source_hash"][0] == bundle.code_fingerprint()["source_hash"]
    # re-exporting the grown study (what `kdcal run` does at its end) keeps each seed's row
    cfg = config.resolve("smoke", {**TINY, "seeds": [0, 1]})
    bundle.export_bundle(cfg, grown)
    again = pd.read_csv(grown / bundle.PROVENANCE, dtype=str)
    pd.testing.assert_frame_equal(again, prov)


def _refused(bundle_dir, study_dir, match):
    before = snapshot(study_dir)
    with pytest.raises(grow.GrowError, match=match):
        grow.add_bundle(bundle_dir, study_dir, log=lambda *_: None)
    assert snapshot(study_dir) == before


def _edited_bundle(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src / "bundle", dst)
    info = json.loads((dst / "bundle.json").read_text())
    edit(info)
    (dst / "bundle.json").write_text(json.dumps(info))
    return dst


@pytest.fixture
def half(runs, tmp_path):
    """A study folder holding seed 0, grown by an add."""
    grown = tmp_path / "study"
    grow.add_bundle(runs["s0"], grown, log=lambda *_: None)
    return grown


def test_a_seed_already_there_is_refused_and_changes_nothing(runs, half):
    _refused(runs["s0"], half, "already in")
    _refused(runs["both"], half, "already in")


def test_other_code_is_refused_and_changes_nothing(runs, half, tmp_path):
    other = _edited_bundle(runs["s1"], tmp_path / "other",
                           lambda i: i["code"].update(source_hash="0" * 64))
    _refused(other, half, "other code")


def test_another_config_is_refused_and_changes_nothing(runs, half, tmp_path):
    other = _edited_bundle(runs["s1"], tmp_path / "tau", lambda i: i["config"].update(tau=3.0))
    _refused(other, half, "differs from the study's in tau")
    threads = _edited_bundle(runs["s1"], tmp_path / "threads",
                             lambda i: i["config"].update(threads=2))
    _refused(threads, half, "training_threads")
    gpu = _edited_bundle(runs["s1"], tmp_path / "gpu", lambda i: i.update(device="cuda"))
    _refused(gpu, half, "device.*--allow-engine")
    # scheduling never changes a number: another executor or worker count is accepted
    moved = _edited_bundle(runs["s1"], tmp_path / "ray", lambda i: i["config"].update(
        executor="ray", data_root="/elsewhere"))
    assert grow.add_bundle(moved, half, log=lambda *_: None) == [1]


def _on_gpu(info):
    info["device"] = "cuda"
    for row in info["provenance"]:
        row["device"] = "cuda"


def test_engine_differences_pass_only_when_allowed(runs, half, tmp_path):
    gpu = _edited_bundle(runs["s1"], tmp_path / "gpu", _on_gpu)
    assert grow.add_bundle(gpu, half, allow_engine=True, log=lambda *_: None) == [1]
    prov = pd.read_csv(half / bundle.PROVENANCE)
    assert list(prov["device"]) == ["cpu", "cuda"]


def test_old_bundles_and_foreign_folders_are_refused(runs, tmp_path):
    old = _edited_bundle(runs["s1"], tmp_path / "old", lambda i: i.pop("code"))
    _refused(old, tmp_path / "empty", "no code fingerprint")
    assert not (tmp_path / "empty").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _refused(runs["s1"], foreign, "no bundle/")
    _refused(tmp_path, tmp_path / "empty", "not a kdcal bundle")


def test_a_failure_while_staging_leaves_the_study_as_it_was(runs, half, monkeypatch):
    before = snapshot(half)

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(grow, "_tables", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        grow.add_bundle(runs["s1"], half, log=lambda *_: None)
    assert snapshot(half) == before


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_analyse_re_executes_every_notebook_of_a_grown_study(runs, tmp_path):
    """A grown study holds every run: `kdcal analyse` re-executes notebooks 01-04 over all its
    seeds (training nothing) and the report; the tables stay the add's. Broken on purpose:
    notebook 04 alone (01-03 then show the first run's seeds only)."""
    from kdcal import pipeline

    grown = tmp_path / "grown"
    for part in ("s1", "s0"):
        grow.add_bundle(runs[part], grown, log=lambda *_: None)
    cfg = config.resolve("smoke", json.loads((grown / "study.json").read_text())["overrides"])
    assert pipeline.nothing_to_train(cfg, grown)
    before = {n: (grown / n).read_bytes() for n in ("results.csv", "claims.csv")}
    runs_before = snapshot(grown / "runs")
    pipeline.analyse_study(grown, log=lambda *_: None)
    for name in pipeline.NOTEBOOKS:
        injected = [c for c in json.loads((grown / name).read_text())["cells"]
                    if "injected-parameters" in c["metadata"].get("tags", [])]
        assert "[0, 1]" in "".join(injected[0]["source"]), name  # both seeds
    assert {n: (grown / n).read_bytes() for n in before} == before
    assert snapshot(grown / "runs") == runs_before  # nothing trained, nothing rewritten
    assert (grown / "report.html").exists() and not list(grown.glob(".analyse*"))
    shutil.rmtree(grown / "runs" / sorted(p.name for p in (grown / "runs").iterdir())[-1])
    assert not pipeline.nothing_to_train(cfg, grown)  # a run missing: 01-03 stay as they are


def test_the_cli_adds_and_refuses_in_one_line(runs, tmp_path, capsys):
    from kdcal.cli import main

    grown = tmp_path / "grown"
    assert main(["add", "--bundle", str(runs["s0"]), "--study", str(grown)]) == 0
    assert f"kdcal analyse --study {grown}" in capsys.readouterr().out  # never `kdcal run` on it
    assert main(["add", "--bundle", str(runs["s0"]), "--study", str(grown)]) == 1
