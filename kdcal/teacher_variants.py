"""Teachers calibrated by training (label smoothing, mixup, early stopping): extra teacher rows
of notebook 01, each with its own temperature fitted on validation. Compared, not distilled from."""
from __future__ import annotations

import pandas as pd
import torch.nn.functional as F

from .config import StudyConfig
from .executor import Task, run_tasks
from .runs import (engine_for, for_seed, load_splits, recipe_config, teacher_recipe,
                   teacher_run_config, teacher_runs, train_checkpoint)
from .store import Study, read_json, run_id
from .teacher_calibration import calibrate_run
from .teachers import train_teacher_run
from .train import Engine, Recipe

def variant_recipe(cfg: StudyConfig, variant: str) -> tuple[Recipe, float]:
    """(recipe, label smoothing) of a teacher calibrated by training."""
    recipe, smoothing = teacher_recipe(cfg), 0.0
    if variant == "label_smoothing":
        smoothing = cfg.label_smoothing
    elif variant == "mixup":
        recipe.mixup_alpha = cfg.mixup_alpha
    elif variant == "early_stop":
        recipe.stop_epoch = cfg.early_stop_epochs or max(1, cfg.teacher_epochs // 2)
    return recipe, smoothing


def variant_run_config(cfg: StudyConfig, arch: str, seed: int, variant: str,
                       engine: Engine) -> dict:
    recipe, smoothing = variant_recipe(cfg, variant)
    return {**teacher_run_config(cfg, arch, seed, engine), "variant": variant,
            "recipe": recipe_config(recipe), "label_smoothing": smoothing}


def variant_runs(cfg: StudyConfig, engine: Engine | None = None) -> list[tuple[str, str, int, str]]:
    """(run id, arch, seed, variant) of every teacher variant calibrated by training."""
    engine = engine or engine_for(cfg)
    return [(run_id("teacher", f"{arch}-{variant}-s{seed}",
                    variant_run_config(cfg, arch, seed, variant, engine)), arch, seed, variant)
            for variant in cfg.teacher_variants for _, arch, seed in teacher_runs(cfg, engine)]


def train_teacher_variants(cfg: StudyConfig, study_dir, log=print) -> pd.DataFrame:
    """Teachers calibrated by training (label smoothing, mixup, early stopping), with their own
    temperature fitted on validation like the others. They are compared, not distilled from."""
    study = Study(study_dir)
    runs = variant_runs(cfg)
    tasks = [Task(_variant_task, (rid, arch, seed, variant), [rid],
                  checkpoints=[train_checkpoint(rid)],
                  label=f"teacher {arch} ({variant}) seed {seed}")
             for rid, arch, seed, variant in runs]
    with study.lock():
        run_tasks(cfg, study, tasks, "teacher variants", log)
        for rid, _, _, _ in runs:  # here, not on workers: cheap, and also after a kill
            if study.is_done(rid) and not (study.run_dir(rid) / "calibration.json").exists():
                calibrate_run(study, rid, cfg)
    return variant_table(cfg, study_dir)


def _variant_task(cfg: StudyConfig, study: Study, rid: str, arch: str, seed: int, variant: str,
                  log=print) -> None:
    """One teacher calibrated by training: a unit of work of the executor."""
    engine = engine_for(cfg)
    splits = load_splits(for_seed(cfg, seed), engine)
    recipe, smoothing = variant_recipe(cfg, variant)
    loss = lambda s, y, t=None, ls=smoothing: F.cross_entropy(s, y, label_smoothing=ls)  # noqa: E731
    train_teacher_run(study, rid, variant_run_config(cfg, arch, seed, variant, engine),
                   arch, seed, loss, recipe, splits, engine, cfg,
                   f"teacher {arch} ({variant}) seed {seed}", log)


def variant_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """The standard teachers and their variants: metrics before and after temperature scaling."""
    study, rows = Study(study_dir), []
    runs = [(rid, arch, seed, "standard") for rid, arch, seed in teacher_runs(cfg)] + \
        variant_runs(cfg)
    for rid, arch, seed, variant in runs:
        run = study.run_dir(rid)
        if study.is_done(rid) and (run / "calibration.json").exists():
            m, c = read_json(run / "metrics.json"), read_json(run / "calibration.json")
            rows.append({"arch": arch, "params": m["params"], "steps": m.get("steps"),
                         "seed": seed, "variant": variant, "acc": m["acc"], "ece": m["ece"], "nll": m["nll"],
                         "temperature": c["temperature"], "ece_cal": c["test_after"]["ece"],
                         "nll_cal": c["test_after"]["nll"], "run_id": rid})
    return pd.DataFrame(rows)
