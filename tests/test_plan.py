"""`kdcal plan`: the grid and the time per stage, from step times measured on committed runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdcal import config, plan
from kdcal.executor import Task, run_tasks

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", list(config.PROFILES))
def test_every_profile_has_a_plan(profile):
    p = plan.plan_profile(profile)
    assert p.seconds > 0 and "01 teachers" in p.stages and "03 students" in p.stages
    text = plan.format_plan(p)
    assert "total" in text and "optimizer steps" in text


def test_quick_estimate_is_within_25_percent_of_the_committed_run():
    measured = json.loads((ROOT / "outputs" / "quick" / "timing.json").read_text())["seconds"]
    estimate = plan.plan_profile("quick").seconds
    assert abs(estimate / measured - 1) <= 0.25, (estimate, measured)


@pytest.mark.slow  # the fit's grid search: about 30 s
def test_the_committed_table_is_derived_from_the_committed_logs():
    committed = plan.load_step_times()
    fitted = plan.fit_from_logs(ROOT)
    assert committed["rows"] == fitted["rows"] and committed["devices"] == fitted["devices"]
    assert committed["date"] and committed["how"]


def test_the_grid_counts_what_the_study_plans():
    cfg = config.resolve("quick")
    jobs = plan.student_jobs(cfg, packs=False)
    assert sum(j.models for j in jobs) == 47  # BENCHMARKS: 12 teachers + 47 students
    assert plan.counts(cfg) == {"teachers": 12, "teacher_variants": 0, "students": 47,
                                "controls": 8, "calibrators": 2}
    assert {j.steps for j in plan.teacher_jobs(cfg)} == {10 * (3000 // 64)}


def test_cuda_is_estimated_from_the_h200_rows_and_is_faster_for_big_data():
    cpu = plan.plan_profile("paper-fmnist", device="cpu")
    gpu = plan.plan_profile("paper-fmnist", device="cuda")
    assert gpu.device == "cuda" and gpu.seconds < cpu.seconds / 3


def test_cli_plan_prints_the_grid(capsys):
    from kdcal.cli import main

    assert main(["plan", "--profile", "quick", "--set", "seeds=0,1,2,3"]) == 0
    out = capsys.readouterr().out
    assert "4 teachers resnet44" in out and "03 students" in out
    assert main(["plan", "--profile", "nope"]) == 2


def _noop(cfg, study, log=print):
    pass


def test_the_stage_log_and_bar_show_the_plans_estimate(tmp_path):
    from kdcal.store import Study

    cfg = config.resolve("quick", {"workers": 0})
    labels = [f"teacher {a} seed {s}" for s in cfg.seeds for a in cfg.teachers]
    lines = []
    run_tasks(cfg, Study(tmp_path), [Task(_noop, (), [f"r{i}"], label=label)
                                     for i, label in enumerate(labels)], "teachers", lines.append)
    expected = plan.duration(plan.schedule([plan.task_estimates(cfg)[label] for label in labels], 1))
    assert lines == [f"[teachers] {len(labels)} tasks, plan: ~{expected} (kdcal plan)"]


def test_the_calibration_line_never_gets_faster_per_teacher():
    assert plan.calibration_line((24, 20.0), (70, 43.0)) == pytest.approx((8.0, 0.5))
    # a faster machine's bigger run below a slower machine's small one: flat, at their mean
    assert plan.calibration_line((24, 21.0), (70, 17.0)) == (19.0, 0.0)
    assert plan.calibration_line((24, 21.0), (24, 23.0)) == (21.0, 0.0)


def test_a_grown_study_log_is_read_as_its_first_run_only(tmp_path):
    """`kdcal add` + `kdcal analyse` append a second pass (nothing trained) to the log of the
    study's first run; the stage walls and the seeds are the first run's, as timing.json is."""
    first = ["2026-12-02 00:53:28 == 01_train_teachers",
             "2026-12-02 00:54:00 [teacher resnet8 seed 0] resnet8 epoch 2/30 loss 1.0 train_acc 0.6 lr 0.05 2.0s",
             "2026-12-02 00:55:00 [teachers] 1/1 tasks done (teacher resnet8 seed 0)",
             "2026-12-02 00:55:10 == 02_calibrate_teachers",
             "2026-12-02 00:55:30 == 03_distill_students",
             "2026-12-02 00:57:30 [student groups] 1/1 tasks done (students of resnet8 seed 0)"]
    later = ["2026-12-02 03:57:38 == 01_train_teachers",
             "2026-12-02 03:57:39 [teacher resnet8 seed 3] resnet8 epoch 2/30 loss 1.0 train_acc 0.6 lr 0.05 9.0s",
             "2026-12-02 03:57:49 == 02_calibrate_teachers",
             "2026-12-02 03:57:50 == 03_distill_students",
             "2026-12-02 03:58:01 [student groups] 5/5 tasks done (students of resnet8 seed 4)"]
    (tmp_path / "log.txt").write_text("\n".join(first + later) + "\n")
    (tmp_path / "timing.json").write_text(json.dumps({"seconds": 300.0}))
    log = plan.parse_log(tmp_path / "log.txt")
    assert log["seeds"] == [0]
    assert [m for members in log["epochs"].values() for m in members] == [("resnet8", 2.0)]
    walls = plan.measured_walls(tmp_path)
    assert walls == {"01 teachers": 102.0, "02 calibration": 20.0, "03 students": 120.0,
                     "04 analysis": 300.0 - 242.0, "total": 300.0}
