"""Notebook 05: in which regime does calibrating the teacher change what the student learns?

Each regime cell is the base study with one config key changed (:func:`kdcal.config.regime_cells`).
Cells share every run they can, because run ids come from full configs: the tau cells reuse the
base teachers, the width ladder reuses resnet8, and a level equal to the base is the base itself.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .analysis import correlation, paired_by_seed, per_seed_means, size_trend
from .config import StudyConfig, regime_cells
from .inference import ALPHA, DECIDED, MARGINS, permutation_floor, seed_effect
from .results import results_table
from .runs import engine_for
from .students import distill_students, student_plan, student_run_config
from .teacher_calibration import calibrate_teachers, compare_calibrators
from .teachers import train_teachers

SIGNIFICANCE = 0.05


def cell_label(factor: str, level) -> str:
    if factor == "base":
        return "base"
    if isinstance(level, list):
        level = "/".join(map(str, level))
    elif isinstance(level, float):
        level = f"{level:g}"
    return f"{factor}={level}"


def _student_context(cell: StudyConfig, engine) -> str:
    """What students of a cell share besides their loss: data, recipe, architecture, alpha.

    The baseline student's run config holds exactly the first three (augmentation is in the
    recipe). Cells with equal contexts distill in one pass, so every student of one teacher and
    seed trains in one loop.
    """
    return json.dumps({"baseline": student_run_config(cell, 0, "baseline", None, None, engine),
                       "alpha": cell.alpha}, sort_keys=True)


def run_regimes(cfg: StudyConfig, study_dir, log=print) -> pd.DataFrame:
    """Train, calibrate and distill every cell not already done; return :func:`regime_table`."""
    cells = regime_cells(cfg)
    for factor, level, cell in cells:
        log(f"== regime {cell_label(factor, level)}: teachers")
        train_teachers(cell, study_dir, log)
        calibrate_teachers(cell, study_dir, log)
        if cell.regime_mode.startswith("cal-"):
            compare_calibrators(cell, study_dir, log)
    engine = engine_for(cfg)
    contexts: dict[str, tuple[StudyConfig, list, list[str]]] = {}
    for factor, level, cell in cells:
        first, plan, labels = contexts.setdefault(_student_context(cell, engine), (cell, [], []))
        plan.extend(student_plan(cell, study_dir, engine))
        labels.append(cell_label(factor, level))
    for first, plan, labels in contexts.values():
        log(f"== students of {', '.join(labels)}")
        distill_students(first, study_dir, log, plan=plan)
    return regime_table(cfg, study_dir)


def regime_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """results.csv of every cell, stacked, with the cell's factor, level and label."""
    frames = []
    for order, (factor, level, cell) in enumerate(regime_cells(cfg)):
        table = results_table(cell, study_dir)
        frames.append(table.assign(order=order, factor=factor, level=cell_label(factor, level)
                                   .split("=", 1)[-1], cell=cell_label(factor, level)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _size_columns(frame: pd.DataFrame, x: str, y: str, prefix: str, direction: str,
                  margin: float) -> dict:
    """Teachers as units: Spearman of teacher means, its exact permutation p-value over
    teachers, and the verdict on the slope per doubling (notebook 4's rule)."""
    out = {prefix: np.nan, f"{prefix}_p": np.nan, f"{prefix}_verdict": "underpowered"}
    if frame.empty or frame[x].nunique() < 3:
        return out
    c = correlation(frame, x, y)
    trend = size_trend(frame, x, y, direction, margin)
    out.update({prefix: c["estimate"], f"{prefix}_p": c["p_value"],
                f"{prefix}_verdict": trend["verdict"]})
    return out


def regime_effects(table: pd.DataFrame, mode: str, margin: float = MARGINS.acc) -> pd.DataFrame:
    """One row per cell: the effect of calibrating the teacher, and the size correlations.

    ``effect``: accuracy(mode) - accuracy(uncalibrated) in points, paired by teacher and seed,
    averaged over the cell's teachers per seed, a t-interval over seeds (the seed is the unit);
    ``verdict`` by notebook 4's rule with a margin of ``margin`` (accuracy, 0.005 = half a point).
    ``size_uncal``/``size_cal``: Spearman of teacher parameters with mean student accuracy;
    ``size_ece``: with teacher ECE (the first claim, per regime); each with an exact permutation
    p-value over teachers (``_p``) and a verdict on the slope; ``p_floor``: the smallest
    p-value the cell's number of teachers allows.
    """
    if "order" not in table:  # regimes_results.csv as saved: cells in their order of appearance
        table = table.assign(order=table["cell"].map({c: i for i, c in
                                                      enumerate(table["cell"].unique())}))
    rows = []
    for (order, factor, level, cell), g in table.groupby(["order", "factor", "level", "cell"],
                                                         sort=True):
        teachers = g[g["role"] == "teacher"]
        students = g[g["role"] == "student"]
        kd = students[students["mode"].isin(["uncalibrated", mode])]
        diff = paired_by_seed(kd, mode, "uncalibrated")
        e = seed_effect(per_seed_means(diff) * 100, "positive", margin * 100)
        baseline = students.loc[students["mode"] == "baseline", "acc"].mean()
        uncal = students[students["mode"] == "uncalibrated"]
        ladder = teachers["arch"].nunique()
        rows.append({
            "order": order, "factor": factor, "level": level, "cell": cell,
            "effect": e["estimate"], "effect_low": e["ci_low"], "effect_high": e["ci_high"],
            "verdict": e["verdict"], "mde": e["mde"], "seeds_needed": e["needed"],
            "pairs": len(diff),
            **_size_columns(uncal, "teacher_params", "acc", "size_uncal", "negative",
                            MARGINS.acc_span),
            **_size_columns(students[students["mode"] == mode], "teacher_params", "acc",
                            "size_cal", "positive", MARGINS.acc_span),
            **_size_columns(teachers, "params", "ece", "size_ece", "positive", MARGINS.ece_span),
            "seeds": teachers["seed"].nunique(), "ladder": ladder,
            "p_floor": permutation_floor(ladder) if ladder >= 3 else np.nan,
            "teacher_acc": teachers["acc"].mean(), "teacher_ece": teachers["ece"].mean(),
            "temperature": teachers["temperature"].mean(),
            "student_acc_uncal": uncal["acc"].mean(), "kd_gain": (uncal["acc"].mean() - baseline) * 100,
        })
    return pd.DataFrame(rows)


def regime_summary(effects: pd.DataFrame, mode: str) -> str:
    """A few generated sentences: each cell's verdict, by notebook 4's rule."""
    def cells(verdict):
        chosen = effects[effects["verdict"] == verdict]
        return ", ".join(f"{r.cell} ({r.effect:+.2f} pt [{r.effect_low:+.2f}, {r.effect_high:+.2f}])"
                         for r in chosen.itertuples()) or "none"

    n, seeds = len(effects), int(effects["seeds"].max())
    lines = [
        f"Effect of calibrating the teacher ({mode} minus uncalibrated KD, student test accuracy in "
        f"points, paired by teacher and seed, mean over teachers per seed, 95% t-interval over "
        f"{seeds} seeds) in {n} regime cells; margin +-{MARGINS.acc * 100:.1f} pt:",
        f"- calibration helps (supported: interval above 0, not inside the margin): "
        f"{cells('supported')}",
        f"- calibration hurts (contradicted: interval below 0, not inside the margin): "
        f"{cells('contradicted')}",
        f"- an effect shown but inside the margin (negligible): {cells('negligible')}",
        f"- no effect larger than the margin (equivalent): {cells('equivalent')}",
        f"- underpowered (interval too wide to say): {int((effects['verdict'] == 'underpowered').sum())}"
        f" of {n} cells; median seeds needed to detect the margin: "
        f"{_median_count(effects['seeds_needed'])}",
        f"- at 95% per cell, about {ALPHA * n:.1f} of {n} cells would be decided by chance alone "
        "if calibration never mattered.",
    ]
    for col, what in (("size_cal", f"teacher size vs student accuracy ({mode})"),
                      ("size_uncal", "teacher size vs student accuracy (uncalibrated)"),
                      ("size_ece", "teacher size vs teacher ECE")):
        decided = effects[effects[f"{col}_verdict"].isin(DECIDED)]
        text = ", ".join(f"{r.cell} ({getattr(r, col + '_verdict')})" for r in decided.itertuples())
        lines.append(f"- {what} (slope per doubling, teachers as units): decided in "
                     f"{text or 'no cell'}")
    floor, ladder = effects["p_floor"].min(), int(effects["ladder"].max())
    if ladder < 3:
        lines.append(f"- with {ladder} teachers per cell no size effect can be tested at all; "
                     "it needs at least 5 teachers per cell.")
    elif not floor <= ALPHA:
        lines.append(f"- with {ladder} teachers per cell no permutation p-value over teachers can "
                     f"fall below {floor:.3f}: this grid cannot test a size effect at 5%; it needs "
                     "at least 5 teachers per cell.")
    return "\n".join(lines)


def _median_count(values: pd.Series) -> str:
    v = values.replace(np.inf, np.nan).dropna()
    return "?" if v.empty else f"{int(v.median())}"
