"""The bundle of a finished study, a scratch folder seeded from it, and the notebooks' fallbacks
to a committed reference (bundle, results.csv, regimes_results.csv)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdcal import analysis, bundle, config, regimes, study
from kdcal import claims as claim_tests
from kdcal.store import StoreError, load_arrays


@pytest.fixture(scope="module")
def tiny_study(smoke_study):
    """The shared smoke study (`kdcal run --profile smoke`, which exports its bundle): its
    config and folder. Read only: seeded copies go to tmp folders."""
    return config.resolve("smoke"), smoke_study


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_bundle_is_small_and_holds_no_checkpoints(tiny_study):
    cfg, root = tiny_study
    files = [p for p in (root / "bundle").rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".pt"]
    runs = {p.name for p in (root / "bundle" / "runs").iterdir()}
    assert runs == set(bundle.study_run_ids(cfg, root))
    logits = [p for p in files if p.name == "logits.npz"]
    assert len(logits) == len(cfg.teachers) * len(cfg.seeds)  # teachers only, students: json
    z = load_arrays(logits[0])
    assert z["test_logits"].dtype == np.float16 and z["train_logits"].shape[1] == 10
    for p in logits:
        assert p.stat().st_size < (root / "runs" / p.parent.name / "logits.npz").stat().st_size / 2


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_seeded_folder_gives_the_original_tables(tiny_study, tmp_path):
    cfg, root = tiny_study
    scratch = tmp_path / "scratch"
    seeded = bundle.seed_from_bundle(root / "bundle", scratch)
    assert bundle.teacher_ids(seeded) == bundle.teacher_ids(cfg)
    _same(study.calibration_table(seeded, scratch), study.calibration_table(cfg, root))
    _same(study.calibrator_table(seeded, scratch), study.calibrator_table(cfg, root))
    _same(study.variant_table(seeded, scratch), study.variant_table(cfg, root))
    _same(study.results_table(seeded, scratch), study.results_table(cfg, root))
    study.write_results(seeded, scratch)
    assert (scratch / "results.csv").read_bytes() == (root / "results.csv").read_bytes()
    # the stages find everything done: nothing retrains, nothing refits
    _same(study.calibrate_teachers(seeded, scratch, log=lambda *_: None),
          study.calibration_table(cfg, root))
    assert not list((scratch / "runs").glob("*/model.pt"))


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_seeded_logits_give_the_metrics_within_tolerance(tiny_study, tmp_path):
    from kdcal import metrics

    cfg, root = tiny_study
    scratch = tmp_path / "scratch"
    seeded = bundle.seed_from_bundle(root / "bundle", scratch)
    for rid in bundle.teacher_ids(cfg):
        z = load_arrays(scratch / "runs" / rid / "logits.npz")
        assert z["test_logits"].dtype == np.float32 and z["test_labels"].dtype == np.int64
        m = metrics.summarize(z["test_logits"], z["test_labels"], cfg.ece_bins)
        original = study.teacher_table(cfg, root).set_index("run_id").loc[rid]
        for key in ("acc", "ece", "nll", "brier"):
            assert abs(m[key] - original[key]) <= bundle.TOLERANCE, key
    panels = study.reliability_panels(seeded, scratch, seed=0)
    assert len(panels) == 2 * len(cfg.teachers)


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_seeding_twice_keeps_the_runs(tiny_study, tmp_path):
    cfg, root = tiny_study
    scratch = tmp_path / "scratch"
    bundle.seed_from_bundle(root / "bundle", scratch)
    marker = next((scratch / "runs").iterdir()) / "metrics.json"
    stamp = marker.stat().st_mtime_ns
    bundle.seed_from_bundle(root / "bundle", scratch)
    assert marker.stat().st_mtime_ns == stamp


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_open_study_seeds_an_empty_scratch_folder_from_the_reference(tiny_study, tmp_path):
    cfg, root = tiny_study
    own = config.resolve("tutorial")
    scratch, lines = tmp_path / "scratch", []
    got = bundle.open_study(own, scratch, reference=root, log=lines.append)
    assert bundle.teacher_ids(got) == bundle.teacher_ids(cfg) and len(lines) == 1
    assert "run notebook 01 first" in lines[0]
    # a folder with the profile's own teachers is the profile's; no reference: nothing changes
    assert bundle.open_study(cfg, root, reference=tmp_path / "nowhere") is cfg
    assert bundle.open_study(own, tmp_path / "other", reference="") is own


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_open_study_refuses_to_read_the_reference_into_itself(tiny_study):
    own = config.resolve("tutorial")
    with pytest.raises(StoreError, match="same folder"):
        bundle.open_study(own, tiny_study[1], reference=tiny_study[1])


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_results_from_results_csv_alone(tiny_study, tmp_path):
    """Notebook 04 on a reference with results.csv and study.json only (no runs, no bundle)."""
    cfg, root = tiny_study
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("results.csv", "study.json"):
        shutil.copy(root / name, reference / name)
    scratch = tmp_path / "scratch"
    ref_cfg = bundle.open_study(config.resolve("tutorial"), scratch, reference, log=lambda *_: None)
    assert ref_cfg.modes == cfg.modes and not (scratch / "runs").exists()
    results = bundle.study_results(ref_cfg, scratch, reference)
    _same(results, pd.read_csv(root / "results.csv"))
    assert (scratch / "results.csv").read_bytes() == (root / "results.csv").read_bytes()
    students = results[results["role"] == "student"]
    assert len(analysis.mode_differences(students, ref_cfg.modes))
    assert len(claim_tests.claims_table(results))


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_a_study_without_runs_and_without_reference_reads_its_own_table(tiny_study, tmp_path):
    """`kdcal analyse` on a clone: nothing to train, nothing copied, its own results.csv read."""
    cfg, root = tiny_study
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(root / "results.csv", clone / "results.csv")
    results = bundle.study_results(cfg, clone, reference="")
    _same(results, pd.read_csv(root / "results.csv"))
    assert not (clone / "runs").exists()
    assert sorted(p.name for p in clone.iterdir()) == ["results.csv"]


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_results_from_the_runs_when_the_folder_has_them(tiny_study, tmp_path):
    cfg, root = tiny_study
    scratch = tmp_path / "scratch"
    shutil.copytree(root / "runs", scratch / "runs")
    bundle.study_results(cfg, scratch, reference=tmp_path / "nowhere")
    assert (scratch / "results.csv").read_bytes() == (root / "results.csv").read_bytes()


def test_missing_reference_table_is_a_clear_error(tmp_path):
    cfg = config.resolve("tutorial")
    with pytest.raises(StoreError, match="results.csv not found"):
        bundle.study_results(cfg, tmp_path / "scratch", tmp_path)
    with pytest.raises(StoreError, match="not a study folder"):
        bundle.reference_config(tmp_path)
    with pytest.raises(StoreError, match="not a kdcal bundle"):
        bundle.seed_from_bundle(tmp_path, tmp_path / "scratch")


def test_regime_effects_from_regimes_results_csv_alone(tmp_path):
    """Notebook 05 on the committed regimes-quick folder: its table, cells in the grid's order."""
    reference = Path(__file__).resolve().parents[1] / "outputs" / "regimes-quick"
    cfg = bundle.open_study(config.resolve("tutorial"), tmp_path, reference, seed=False,
                            log=lambda *_: None)
    assert cfg.regimes  # regimes-quick's grid, not the tutorial's
    table = bundle.regime_results(cfg, tmp_path, reference)
    cells = list(dict.fromkeys(pd.read_csv(reference / "regimes_results.csv")["cell"]))
    effects = regimes.regime_effects(table, cfg.regime_mode)
    assert list(effects.sort_values("order")["cell"]) == cells
    assert effects["effect"].notna().all()
    assert (tmp_path / "regimes_results.csv").exists()
