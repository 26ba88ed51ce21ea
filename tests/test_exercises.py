"""Every "Try this" of notebooks 01, 02, 03 and 05 that states an expected outcome, checked.

Against the committed tutorial run (``outputs/tutorial``, the profile the exercises name) where the
answer is about that run; against ``outputs/quick`` or ``outputs/regimes-quick`` where the answer
cites them; against a run made here where the exercise changes the profile. A test that reads a
committed run asserts the direction that the notebook's answer states, so it fails if the answer
were wrong. The tests are named after the notebook and exercise they check.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kdcal import bundle, config, regimes, study, teaching
from kdcal.logfile import StudyLog
from kdcal.store import Study, load_arrays, read_json, safe_torch_load

OUTPUTS = Path(__file__).resolve().parents[1] / "outputs"
TUTORIAL = OUTPUTS / "tutorial"


# ---------------------------------------------------------------- helpers
@pytest.fixture
def tutorial_copy(tmp_path):
    """A scratch study folder seeded from the committed tutorial bundle, and its config."""
    cfg = bundle.seed_from_bundle(TUTORIAL / "bundle", tmp_path / "study")
    return cfg, tmp_path / "study"


def _teachers(name: str) -> pd.DataFrame:
    table = pd.read_csv(OUTPUTS / name / "results.csv")
    return table[(table["role"] == "teacher") & (table["mode"] == "teacher")]


def _students(name: str) -> pd.DataFrame:
    table = pd.read_csv(OUTPUTS / name / "results.csv")
    return table[table["role"] == "student"]


def _teacher_logits(cfg, study_dir):
    """(arch, seed, T, training logits) of every teacher of the study folder."""
    root = Study(study_dir)
    for rid, arch, seed in study.teacher_runs(cfg):
        z = load_arrays(root.run_dir(rid) / "logits.npz")
        yield arch, seed, read_json(root.run_dir(rid) / "calibration.json")["temperature"], z


def _undone(root: Study, rids) -> set[str]:
    return {r for r in rids if not root.is_done(r)}


def _committed_run_ids() -> set[str]:
    """Every run the committed tutorial run trained, its regime cells' included (the bundle holds
    only the base study's runs; regimes_results.csv lists the cells' too)."""
    return {rid for name in ("results.csv", "regimes_results.csv")
            for rid in pd.read_csv(TUTORIAL / name)["run_id"]}


def _tiny(**overrides):
    """A synthetic study small enough to train in seconds on a CPU."""
    base = dict(synthetic_train=240, synthetic_test=100, val_size=80, synthetic_size=8, teachers=["resnet8"],
                seeds=[0], teacher_epochs=1, student_epochs=1, modes=["uncalibrated", "compose", "replace"],
                teacher_variants=[], calibrators=["temperature"], tau_grid=[],
                teacher_temperature_grid=[], control_seeds=[], workers=0, regimes={})
    return config.resolve("smoke", {**base, **overrides})


def test_tutorial_run_is_committed():
    """The run the exercises name is in the repository (tables, bundle, executed notebooks)."""
    for name in ("results.csv", "regimes.csv", "regimes_results.csv", "bundle/bundle.json",
                 "01_train_teachers.ipynb", "05_regimes.ipynb"):
        assert (TUTORIAL / name).exists(), f"outputs/tutorial/{name} missing: kdcal run --profile tutorial"
    info = json.loads((TUTORIAL / "study.json").read_text())
    assert info["profile"] == "tutorial" and not info.get("overrides")


# ---------------------------------------------------------------- notebook 01
def test_nb01_ex1_a_new_recipe_makes_new_run_ids(tutorial_copy):
    """Ex. 1: teacher_epochs=8 changes every teacher's run id, so everything retrains."""
    cfg, folder = tutorial_copy
    longer = dataclasses.replace(cfg, teacher_epochs=8)
    old = {r for r, _, _ in study.teacher_runs(cfg)}
    new = {r for r, _, _ in study.teacher_runs(longer)}
    assert old and not old & new
    assert _undone(Study(folder), new) == new


def test_nb01_ex2_a_second_run_skips_every_teacher_with_one_log_line_each(tutorial_copy):
    """Ex. 2: the training cell run again trains nothing and logs one "done, skipped" per run."""
    cfg, folder = tutorial_copy
    before = {p: p.stat().st_mtime_ns for p in (folder / "runs").rglob("*")}
    study.train_teachers(cfg, folder, log=StudyLog(folder, "01_train_teachers"))
    lines = (folder / "log.txt").read_text().splitlines()
    skipped = [line for line in lines if line.endswith("done, skipped")]
    rids = [r for r, _, _ in study.teacher_runs(cfg)]
    assert len(skipped) == len(rids) == 4
    assert all(any(f"[{r}]" in line for line in skipped) for r in rids)
    after = {p: p.stat().st_mtime_ns for p in (folder / "runs").rglob("*")}
    assert after == before  # nothing written: no training


def test_nb01_ex3_only_the_added_teacher_trains(tutorial_copy):
    """Ex. 3: adding resnet20 leaves resnet8's and resnet14's runs done; only resnet20's train."""
    cfg, folder = tutorial_copy
    wider = dataclasses.replace(cfg, teachers=["resnet8", "resnet14", "resnet20"])
    todo = [(a, s) for r, a, s in study.teacher_runs(wider) if not Study(folder).is_done(r)]
    assert sorted(todo) == [("resnet20", 0), ("resnet20", 1)]


def _final_losses(cfg, folder) -> dict:
    curves = study.training_curves(cfg, folder)
    last = curves.sort_values("epoch").groupby(["arch", "seed"]).tail(1)
    return {(r.arch, r.seed): r.loss for r in last.itertuples()}


@pytest.mark.slow
def test_nb01_ex1_eight_epochs_end_lower_and_the_larger_teacher_stays_below(tutorial_copy):
    """Ex. 1: at 8 epochs every teacher ends with a lower training loss than at 4 (the committed
    run), and resnet14's stays below resnet8's in each seed."""
    cfg, folder = tutorial_copy
    longer = dataclasses.replace(cfg, teacher_epochs=8)
    study.train_teachers(longer, folder, log=lambda *_: None)
    at4, at8 = _final_losses(cfg, folder), _final_losses(longer, folder)
    assert set(at8) == set(at4) and len(at4) == 4
    for key in at4:
        assert at8[key] < at4[key], key
    for seed in cfg.seeds:
        assert at8[("resnet14", seed)] < at8[("resnet8", seed)], seed


# ---------------------------------------------------------------- notebook 02
def test_nb02_ex1_tutorial_teachers_are_under_confident_and_the_larger_one_less():
    """Ex. 1, as the answer states it for outputs/tutorial: T < 1 for both teachers; in each seed
    the larger teacher's T is the larger and its ECE the smaller."""
    t = _teachers("tutorial").set_index(["arch", "seed"])
    assert (t["temperature"] < 1).all()
    for seed in (0, 1):
        small, large = t.loc[("resnet8", seed)], t.loc[("resnet14", seed)]
        assert large["temperature"] > small["temperature"], seed
        assert large["ece"] < small["ece"], seed


DEPTH = ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44"]


@pytest.mark.parametrize("name", ["quick", "evidence"])
def test_nb02_ex1_with_longer_training_T_rises_with_depth_in_every_seed(name):
    """Ex. 1, the runs the answer cites: in quick and evidence, T rises along the depth ladder in
    every seed; quick's resnet8 is below 1 and its resnet44 about 1.4; every evidence teacher is
    over-confident (T > 1)."""
    t = _teachers(name)
    ladder = [a for a in DEPTH if a in set(t["arch"])]
    assert len(ladder) >= 4
    for seed, rows in t.groupby("seed"):
        by_arch = rows.set_index("arch")["temperature"]
        assert list(by_arch[ladder]) == sorted(by_arch[ladder]), (name, seed)
    if name == "quick":
        assert (t.query("arch == 'resnet8'")["temperature"] < 1).all()
        assert t.query("arch == 'resnet44'")["temperature"].mean() == pytest.approx(1.4, abs=0.05)
    else:
        assert (t["temperature"] > 1).all()


def test_nb02_ex2_temperature_scaling_keeps_every_teachers_accuracy(tutorial_copy):
    """Ex. 2: acc_before equals the accuracy after scaling, and the predicted classes are the same."""
    cfg, folder = tutorial_copy
    table = study.calibration_table(cfg, folder)
    assert len(table) == 4
    assert (table["acc_before"] == table["acc_after"]).all()
    for _, _, temperature, z in _teacher_logits(cfg, folder):
        logits = z["test_logits"]
        assert np.array_equal(logits.argmax(1), (logits / temperature).argmax(1))


@pytest.mark.slow
def test_nb02_ex3_one_epoch_teachers_are_more_under_confident(tutorial_copy):
    """Ex. 3: with teacher_epochs=1 every teacher's fitted T falls, below 1 and below its T at 4
    epochs (the committed run)."""
    cfg, folder = tutorial_copy
    short = dataclasses.replace(cfg, teacher_epochs=1)
    study.train_teachers(short, folder, log=lambda *_: None)
    at1 = study.calibrate_teachers(short, folder, log=lambda *_: None).set_index(["arch", "seed"])
    at4 = study.calibration_table(cfg, folder).set_index(["arch", "seed"])
    assert len(at1) == len(at4) == 4
    assert (at1["temperature"] < 1).all()
    assert (at1["temperature"] < at4.loc[at1.index, "temperature"]).all()


# ---------------------------------------------------------------- notebook 03
def test_compose_pull_difference_is_zero_without_calibration_and_has_the_high_tau_limit():
    """The exercise's measure: 0 when T = 1; at a high tau it tends to mean_i sum_c |z_c - mean z|
    * |1 - 1/T| / K (KD turns into logit matching), for T above and below 1."""
    z = torch.randn(50, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    assert teaching.compose_pull_difference(z, 1.0, 4.0) == 0.0
    centred = (z - z.mean(dim=1, keepdim=True)).abs().sum(dim=1).mean().item() / 10
    for temperature in (0.6, 1.7):
        limit = centred * abs(1 - 1 / temperature)
        assert teaching.compose_pull_difference(z, temperature, 1e4) == pytest.approx(limit, rel=1e-3)
    with pytest.raises(ValueError, match="temperature"):
        teaching.compose_pull_difference(z, 0.0, 4.0)
    with pytest.raises(ValueError, match="shape"):
        teaching.compose_pull_difference(z[0], 1.5, 4.0)


def test_nb03_ex1_calibration_changes_the_targets_less_at_tau_1_and_not_less_at_tau_8(tutorial_copy):
    """Ex. 1 (and notebook 05 ex. 2): for every tutorial teacher and seed the pull difference at
    tau = 1 is at most half of that at tau = 4, and at tau = 8 larger than at tau = 4."""
    cfg, folder = tutorial_copy
    seen = 0
    for arch, seed, temperature, z in _teacher_logits(cfg, folder):
        pull = {tau: teaching.compose_pull_difference(z["train_logits"], temperature, tau)
                for tau in (1.0, 4.0, 8.0)}
        assert pull[1.0] <= pull[4.0] / 2, (arch, seed, pull)
        assert pull[8.0] > pull[4.0], (arch, seed, pull)
        seen += 1
    assert seen == 4


def test_nb03_ex1_at_tau_1_only_the_uncalibrated_and_compose_students_are_new(tutorial_copy):
    """Ex. 1: tau = 1 changes the run ids of uncalibrated and compose students only; baseline and
    replace do not use tau. The new ones are those notebook 05's tau=1 cell trained: done."""
    cfg, folder = tutorial_copy
    ids = lambda c: {(p["mode"], p["teacher_arch"], p["seed"]): p["rid"] for p in study.student_plan(c, folder)}
    at4, at1 = ids(cfg), ids(dataclasses.replace(cfg, tau=1.0))
    assert set(at4) == set(at1)
    changed = {key[0] for key in at4 if at4[key] != at1[key]}
    assert changed == {"uncalibrated", "compose"}
    assert set(at1.values()) <= _committed_run_ids()


def test_nb03_ex3_replace_distils_at_the_fitted_temperature():
    """Ex. 3: a replace student's kd_tau is its teacher's fitted T."""
    replace = _students("tutorial").query("mode == 'replace'")
    assert len(replace) == 4
    assert np.allclose(replace["kd_tau"], replace["temperature"], rtol=0, atol=1e-6)
    assert np.allclose(replace["teacher_temperature"], 1.0)


def _student_test_logits(cfg, folder) -> dict:
    root = Study(folder)
    return {p["mode"]: load_arrays(root.run_dir(p["rid"]) / "logits.npz")["test_logits"]
            for p in study.student_plan(cfg, folder)}


@pytest.mark.slow
def test_nb03_ex2_alpha_zero_students_equal_the_baseline_to_the_last_digit(tmp_path):
    """Ex. 2: with alpha = 0 every KD mode trains exactly the baseline student (on a CPU: paired,
    separate loops); with the tutorial's alpha, the same tiny run trains them apart (the control)."""
    silent = lambda *_: None
    zero, tutorial_alpha = _tiny(alpha=0.0), _tiny()
    assert tutorial_alpha.alpha == config.resolve("tutorial", {}).alpha > 0
    study.train_teachers(zero, tmp_path, log=silent)  # the teacher is the same in both
    study.calibrate_teachers(zero, tmp_path, log=silent)
    for cfg in (zero, tutorial_alpha):
        study.distill_students(cfg, tmp_path, log=silent)
    logits = _student_test_logits(zero, tmp_path)
    assert set(logits) == {"baseline", "uncalibrated", "compose", "replace"}
    root = Study(tmp_path)
    weights = {p["mode"]: safe_torch_load(root.run_dir(p["rid"]) / "model.pt")["model"]
               for p in study.student_plan(zero, tmp_path)}
    control = _student_test_logits(tutorial_alpha, tmp_path)
    for mode in ("uncalibrated", "compose", "replace"):
        assert np.array_equal(logits[mode], logits["baseline"]), mode
        for name, value in weights["baseline"].items():
            assert torch.equal(weights[mode][name], value), (mode, name)
        assert not np.array_equal(control[mode], control["baseline"]), mode


# ---------------------------------------------------------------- notebook 05
def _decided(effects: pd.DataFrame) -> pd.DataFrame:
    return effects[(effects["effect_low"] > 0) | (effects["effect_high"] < 0)]


def test_nb05_ex1_at_most_one_tutorial_cell_excludes_zero():
    """Ex. 1: with the tutorial's two cells and two seeds, zero or one interval excludes zero."""
    effects = pd.read_csv(TUTORIAL / "regimes.csv")
    assert list(effects["cell"]) == ["base", "tau=1"]
    assert (effects["seeds"] == 2).all()
    assert len(_decided(effects)) <= 1


def _cell_plan(cfg, folder, regimes_grid):
    grid = dataclasses.replace(cfg, regimes=regimes_grid)
    return {regimes.cell_label(f, l): c for f, l, c in config.regime_cells(grid)}


def test_nb05_ex2_a_tau_8_cell_trains_only_its_students(tutorial_copy):
    """Ex. 2: with tau cells 1 and 8, the teachers and the tau = 1 students are done; what is left
    to train is exactly the tau = 8 cell's uncalibrated and compose students."""
    cfg, folder = tutorial_copy
    done = _committed_run_ids()
    cells = _cell_plan(cfg, folder, {"tau": [1.0, 8.0]})
    assert set(cells) == {"base", "tau=1", "tau=8"}
    for cell in cells.values():
        assert {r for r, _, _ in study.teacher_runs(cell)} <= done
    todo = {label: [p for p in study.student_plan(cell, folder) if p["rid"] not in done]
            for label, cell in cells.items()}
    assert todo["base"] == [] and todo["tau=1"] == []
    assert sorted(p["mode"] for p in todo["tau=8"]) == ["compose"] * 4 + ["uncalibrated"] * 4
    assert all(p["config"]["kd_tau"] == 8.0 for p in todo["tau=8"])


def test_nb05_ex2_regimes_quick_cannot_tell_how_the_effect_moves_with_tau():
    """Ex. 2, the committed regimes-quick numbers the answer quotes: every tau cell undecided, its
    interval spanning zero, the effects +0.14, +1.10, -0.75 (base, tau 4) and -0.34."""
    effects = pd.read_csv(OUTPUTS / "regimes-quick" / "regimes.csv").set_index("cell")
    cells = ["tau=1", "tau=2", "base", "tau=8"]
    assert (effects.loc[cells, "effect_low"] < 0).all() and (effects.loc[cells, "effect_high"] > 0).all()
    assert (effects.loc[cells, "verdict"] == "underpowered").all()
    assert (effects.loc[cells, "seeds"] == 2).all()
    assert effects.loc[cells, "effect"].round(2).tolist() == [0.14, 1.10, -0.75, -0.34]
    assert effects.loc["base", ["effect_low", "effect_high"]].round(1).tolist() == [-2.8, 1.3]
    assert effects.loc["tau=8", ["effect_low", "effect_high"]].round(1).tolist() == [-11.7, 11.0]


def test_nb05_ex3_label_noise_makes_new_teachers(tutorial_copy):
    """Ex. 3: the noise is in the teachers' training labels, so a noise cell's teachers are new."""
    cfg, folder = tutorial_copy
    cell = _cell_plan(cfg, folder, {"label_noise": [0.4]})["label_noise=0.4"]
    rids = [r for r, _, _ in study.teacher_runs(cell)]
    assert len(rids) == 4 and _undone(Study(folder), rids) == set(rids)


def test_nb05_ex3_regimes_quick_label_noise_lowers_T_and_raises_the_larger_teachers_ece():
    """Ex. 3, as the answer states it for regimes-quick: T falls for every teacher and seed at both
    noise levels (means 1.71, 1.38, 1.53); at 0.4 ECE rises for resnet14 (0.08 -> 0.13) and resnet20
    (0.09 -> 0.15) and falls for resnet8 in every seed; the larger teachers' confidence (acc + ECE)
    falls from about 0.94 to 0.76 and their accuracy from about 0.86 to 0.62; ECE after scaling stays
    above the base's for every teacher and seed, 1.5 to 2.7 times it by teacher."""
    table = pd.read_csv(OUTPUTS / "regimes-quick" / "regimes_results.csv")
    t = table[(table["role"] == "teacher") & (table["mode"] == "teacher")]
    t = t.assign(confidence=t["acc"] + t["ece"]).set_index(["cell", "arch", "seed"])
    base = t.loc["base"]
    for level in ("label_noise=0.2", "label_noise=0.4"):
        noisy = t.loc[level]
        assert len(noisy) == len(base) == 6
        assert (noisy["temperature"] < base.loc[noisy.index, "temperature"]).all(), level
    means = pd.read_csv(OUTPUTS / "regimes-quick" / "regimes.csv").set_index("cell")["temperature"]
    assert [round(means[c], 2) for c in ("base", "label_noise=0.2", "label_noise=0.4")] == [1.71, 1.38, 1.53]
    noisy = t.loc["label_noise=0.4"]
    rises = noisy["ece"] > base.loc[noisy.index, "ece"]
    for (arch, seed), up in rises.items():
        assert up == (arch != "resnet8"), (arch, seed)
    large = ["resnet14", "resnet20"]
    mean = lambda frame, col: frame[frame.index.get_level_values("arch").isin(large)][col].mean()
    assert mean(base, "confidence") == pytest.approx(0.94, abs=0.01)
    assert mean(noisy, "confidence") == pytest.approx(0.76, abs=0.01)
    assert mean(base, "acc") == pytest.approx(0.86, abs=0.005)
    assert mean(noisy, "acc") == pytest.approx(0.62, abs=0.005)
    by_arch = lambda frame, col: frame.groupby("arch")[col].mean().round(2).to_dict()
    assert by_arch(base, "ece") == {"resnet8": 0.06, "resnet14": 0.08, "resnet20": 0.09}
    assert {a: e for a, e in by_arch(noisy, "ece").items() if a != "resnet8"} == {
        "resnet14": 0.13, "resnet20": 0.15}
    assert (noisy["ece_cal"] > base.loc[noisy.index, "ece_cal"]).all()
    after = noisy.groupby("arch")["ece_cal"].mean() / base.groupby("arch")["ece_cal"].mean()
    assert after.min().round(1) == 1.5 and after.max().round(1) == 2.7, after
