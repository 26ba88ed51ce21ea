"""Issue 36: the confirmatory profile `confirm-transfer` meets its design, and the arms at a tau of
their own (``compose@1``, ``uncalibrated@1``) plan, train and analyse as the design says, without
moving a run id of the profiles before them.

The design (docs/preregistration-confirm-transfer.md): a student at most a quarter of the smallest
teacher's parameters, learning on images no teacher saw, beside the no-KD baseline on the same
step budget; at least 12 teachers in the two families over at least 6 doublings; the modes at
tau 4, the tau-1 arms, and the tuned-tau control over 1, 2, 4, 8, 16; one seed within 90 minutes
by `kdcal plan`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kdcal import analysis, budget, claims, config, plan, study
from kdcal.distill import arm_name, mode_temperatures, split_mode
from kdcal.models import count_params, family
from kdcal.store import Study, write_json

PROFILE = "confirm-transfer"
ARMS = ("uncalibrated@1", "compose@1")


@pytest.fixture(scope="module")
def cfg():
    return config.resolve(PROFILE)


def _params(cfg, arch: str) -> int:
    return count_params(arch, 1, 10)  # Fashion-MNIST: 1 channel, 10 classes


# ---------------------------------------------------------------- the design
def test_student_is_at_most_a_quarter_of_the_smallest_teacher(cfg):
    smallest = min(_params(cfg, t) for t in cfg.teachers)
    assert _params(cfg, cfg.student) * 4 <= smallest
    assert cfg.student not in cfg.teachers


def test_student_learns_on_unseen_images_on_the_baseline_s_budget(cfg):
    """Students and the no-KD baseline: the transfer split, one step budget (the resnet8
    teacher's 1,380 steps), and the plan counts the epochs that budget trains."""
    assert cfg.dataset == "fmnist" and cfg.train_size > 0 and cfg.transfer_size > 0
    assert cfg.student_steps == 1380 == budget.teacher_steps(cfg)
    assert budget.student_steps(cfg) >= cfg.student_steps
    jobs = plan.student_jobs(cfg, packs=False)
    assert {j.epochs for j in jobs} == {budget.student_epochs(cfg)}


def test_ladder_has_twelve_teachers_in_two_families_over_six_doublings(cfg):
    fams = [family(t) for t in cfg.teachers]
    assert len(cfg.teachers) >= 12 and set(fams) == {"depth", "width"}
    assert min(fams.count("depth"), fams.count("width")) >= 5
    # the analysis reads families by the same name rule, fractional widths too (also for names
    # outside the registry, as in tables from elsewhere)
    assert [analysis.teacher_family(t) for t in cfg.teachers] == fams
    assert analysis.teacher_family("resnet9x0.5") == "width"
    assert analysis.teacher_family("resnet9") == "depth"
    sizes = [_params(cfg, t) for t in cfg.teachers]
    assert math.log2(max(sizes) / min(sizes)) >= 6
    assert len(set(sizes)) == len(sizes)


def test_modes_arms_and_the_tuned_tau_grid(cfg):
    assert cfg.tau == 4.0
    assert {"uncalibrated", "compose", "replace", "cal-vector"} <= set(cfg.modes)
    assert set(ARMS) <= set(cfg.modes)
    assert {split_mode(m)[1] for m in ARMS} == {1.0}
    assert {1.0, 2.0, 4.0, 8.0, 16.0} <= {*cfg.tau_grid, cfg.tau}
    assert not cfg.control_seeds  # the control on every seed
    assert "vector" in cfg.calibrators


def test_one_seed_plans_within_ninety_minutes(cfg):
    one = plan.plan_profile(PROFILE, {"seeds": "[0]"})
    assert one.seconds <= 90 * 60
    assert len(cfg.seeds) >= 10 and cfg.split_per_seed


# ---------------------------------------------------------------- arms at a tau of their own
def test_an_arm_is_its_mode_at_its_own_tau():
    assert split_mode("compose@1") == ("compose", 1.0)
    assert split_mode("compose") == ("compose", None)
    assert split_mode("cal-vector") == ("cal-vector", None)
    assert arm_name("compose", 1.0) == "compose@1" and arm_name("uncalibrated", 0.5) == \
        "uncalibrated@0.5"
    assert mode_temperatures("compose@1", 4.0, 1.7) == (1.0, 1.7)
    assert mode_temperatures("uncalibrated@1", 4.0, 1.7) == (1.0, 1.0)
    assert mode_temperatures("compose", 4.0, 1.7) == (4.0, 1.7)
    with pytest.raises(ValueError, match="'replace' has no arm at a tau of its own; valid: "
                                         "uncalibrated, compose$"):
        mode_temperatures("replace@1", 4.0, 1.7)
    with pytest.raises(ValueError):  # one tau per arm: the first @ splits, the rest is no number
        split_mode("compose@1@2")


@pytest.mark.parametrize("mode,message", [
    ("replace@1", "mode of an arm"), ("cal-vector@1", "mode of an arm"),
    ("compose@1.0", "spelt 'compose@1'"), ("compose@4", "config's tau"),
    ("compose@x", "must be a number"), ("compose@0", "must be a number"),
    ("uncalibrated@nan", "must be a number"), ("compose@200", "must be a number"),
    ("compose@1@2", "must be a number")])
def test_bad_arms_fail_before_any_work(mode, message):
    with pytest.raises(config.ConfigError, match=message):
        config.resolve("smoke", {"modes": ["uncalibrated", mode]})


def test_the_sweep_leaves_out_what_an_arm_trains():
    c = config.resolve("smoke", {"modes": ["uncalibrated", "uncalibrated@1", "compose@1"],
                                 "tau_grid": [1.0, 2.0, 4.0, 8.0]})
    assert config.sweep_taus(c) == [2.0, 8.0]  # tau itself and the arm's tau 1 left out
    # every profile before arms: the sweep as it always was (so its run ids stay)
    for name in config.PROFILES:
        p = config.resolve(name, {"device": "cpu"})
        if not any("@" in m for m in p.modes):
            assert config.sweep_taus(p) == [v for v in p.tau_grid if v != p.tau], name


def test_student_plan_of_the_profile_with_calibrated_teachers(cfg, tmp_path):
    """Every teacher gets the 4 modes, 2 arms and 3 sweep taus, arms at tau 1 (compose with the
    teacher's T), distinct run ids; the plan's count agrees. No training: T is written by hand."""
    one = config.resolve(PROFILE, {"seeds": "[0]"})
    root = Study(tmp_path)
    for i, (rid, _, _) in enumerate(study.teacher_runs(one)):
        write_json({"temperature": 1.5 + 0.01 * i}, root.run_dir(rid) / "calibration.json")
    students = study.student_plan(one, tmp_path)
    assert len({p["rid"] for p in students}) == len(students)
    per_teacher = [p for p in students if p["teacher_arch"] == "resnet8"]
    keys = sorted(p["key"] for p in per_teacher)
    assert keys == sorted(["uncalibrated", "compose", "replace", "cal-vector", *ARMS,
                           "tau_sweep2", "tau_sweep8", "tau_sweep16"])
    assert len(per_teacher) == plan.students_per_teacher(one, 0)
    by_key = {p["key"]: p["config"] for p in per_teacher}
    t = per_teacher[0]["T"]
    assert (by_key["compose@1"]["kd_tau"], by_key["compose@1"]["teacher_temperature"]) == (1.0, t)
    assert (by_key["uncalibrated@1"]["kd_tau"],
            by_key["uncalibrated@1"]["teacher_temperature"]) == (1.0, 1.0)
    assert by_key["compose"]["kd_tau"] == 4.0 and by_key["replace"]["kd_tau"] == t
    assert len(students) == 1 + len(one.teachers) * 9


# ---------------------------------------------------------------- end to end, tiny
TINY = {"dataset": "synthetic", "teachers": ["resnet8x0.5"], "student": "resnet8x0.25",
        "seeds": [0], "teacher_epochs": 1, "student_epochs": 1, "synthetic_size": 8,
        "synthetic_classes": 4, "amp": "off", "threads": 1, "workers": 0, "train_size": 200,
        "transfer_size": 150, "teacher_variants": [], "teacher_temperature_grid": [],
        "calibrators": ["temperature", "vector"], "tau_grid": [1.0, 2.0],
        "modes": ["uncalibrated", "compose", "cal-vector", "uncalibrated@1", "compose@1"]}


def test_arms_train_and_join_the_tuned_tau_control(tmp_path):
    """A tiny transfer study with arms: they train with their own tau, the tuned-tau control
    takes uncalibrated@1 as its tau-1 candidate (no sweep student at tau 1), and the claims
    table leaves the arms out of the tau-4 claims."""
    quiet = dict(log=lambda *_: None)
    c = config.resolve("smoke", TINY)
    study.train_teachers(c, tmp_path, **quiet)
    study.calibrate_teachers(c, tmp_path, **quiet)
    study.compare_calibrators(c, tmp_path, **quiet)
    study.distill_students(c, tmp_path, **quiet)
    results = study.results_table(c, tmp_path)
    students = results[results["role"] == "student"]
    assert set(students["mode"]) == {"baseline", "tau_sweep", *TINY["modes"]}
    arms = students.set_index("mode").loc[list(ARMS)]
    assert (arms["kd_tau"] == 1.0).all()
    assert set(students.loc[students["mode"] == "tau_sweep", "kd_tau"]) == {2.0}
    candidates = analysis.tau_candidates(students)
    assert sorted(candidates["kd_tau"]) == [1.0, 2.0, 4.0]
    table = claims.claims_table(results)
    assert not table["claim"].str.contains("@").any()
    assert np.isfinite(students["acc"]).all()


def test_tau_candidates_without_arms_are_what_they_were():
    students = pd.DataFrame({"mode": ["uncalibrated", "tau_sweep", "tau_sweep", "compose"],
                             "seed": [0, 0, 0, 0], "kd_tau": [4.0, 2.0, 8.0, 4.0],
                             "teacher": ["a"] * 4, "val_acc": [0.1, 0.2, 0.3, 0.4]})
    got = analysis.tau_candidates(students)
    assert list(got["kd_tau"]) == [4.0, 2.0, 8.0]
    assert list(got.dtypes) == list(students.dtypes)
