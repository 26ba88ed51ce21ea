"""Stage 04's input (notebook 04): one row per trained model in ``results.csv``, teachers with
their metrics before and after calibration, students beside their teacher's."""
from __future__ import annotations

import pandas as pd

from .config import StudyConfig
from .data import Splits
from .models import count_params, forward_macs
from .store import Study, write_csv
from .students import student_table
from .teacher_calibration import calibration_table
from .teacher_variants import variant_table
from .teachers import teacher_table

# ---------------------------------------------------------------- 04 results
RESULT_COLUMNS = ["role", "arch", "params", "steps", "seed", "mode", "teacher", "teacher_params",
                  "acc", "ece", "nll", "brier", "temperature", "acc_cal", "ece_cal", "nll_cal",
                  "brier_cal", "train_acc", "train_ece", "train_ece_cal", "train_nll",
                  "train_nll_cal", "distill_acc", "distill_ece", "distill_ece_cal", "distill_nll",
                  "distill_nll_cal", "kd_tau", "teacher_temperature", "teacher_acc", "teacher_ece", "teacher_ece_cal",
                  "agreement", "kl_teacher", "val_acc", "run_id"]
# Wall-clock seconds stay in each run's metrics.json: results.csv is bitwise reproducible.
VOLATILE_COLUMNS = ["train_seconds"]


def results_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """One row per trained model, teachers with metrics before and after calibration."""
    teachers = teacher_table(cfg, study_dir)
    cal = calibration_table(cfg, study_dir)
    if len(teachers) and len(cal):
        after = cal[["run_id", "temperature"] + [c for c in cal if c.endswith("_after")
                                                 or c.startswith(("train_", "distill_"))]]
        after = after.rename(columns=lambda c: c.replace("_after", "_cal"))
        teachers = teachers.merge(after, on="run_id", how="left")
    teachers["mode"], teachers["teacher"] = "teacher", ""
    students = student_table(cfg, study_dir)
    if len(students) and len(teachers):
        info = teachers.set_index("run_id")
        tr = students["teacher_run"]
        students["teacher_params"] = tr.map(info["params"])
        students["teacher_acc"] = tr.map(info["acc"])
        students["teacher_ece"] = tr.map(info["ece"])
        if "ece_cal" in info:
            students["teacher_ece_cal"] = tr.map(info["ece_cal"])
    variants = variant_table(cfg, study_dir) if cfg.teacher_variants else pd.DataFrame()
    if len(variants):  # teachers calibrated by training: extra teacher rows, mode = the variant
        variants = variants[variants["variant"] != "standard"].rename(columns={"variant": "mode"})
        variants = variants.assign(role="teacher", teacher="")
    table = pd.concat([teachers, students, variants], ignore_index=True)
    cols = [c for c in RESULT_COLUMNS if c in table] + \
        [c for c in table if c not in RESULT_COLUMNS + VOLATILE_COLUMNS and c != "teacher_run"]
    return table[cols]


def write_results(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    table = results_table(cfg, study_dir)
    write_csv(table, Study(study_dir).root / "results.csv")
    return table


def architecture_table(cfg: StudyConfig, splits: Splits) -> pd.DataFrame:
    """Parameters and forward cost of the teachers and the student on this dataset's shapes."""

    rows = []
    for role, arch in [*(("teacher", a) for a in cfg.teachers), ("student", cfg.student)]:
        rows.append({"role": role, "arch": arch,
                     "params": count_params(arch, splits.in_channels, splits.num_classes),
                     "forward MMACs": forward_macs(arch, splits.in_channels, splits.num_classes,
                                                   splits.image_size) / 1e6})
    return pd.DataFrame(rows)



def save_table(frame: pd.DataFrame, study_dir, name: str) -> None:
    """Write a derived table into the study folder atomically."""
    write_csv(frame, Study(study_dir).root / name)
