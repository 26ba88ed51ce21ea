"""Notebook 05: in which regime does calibrating the teacher change what the student learns?

Each regime cell is the base study with one config key changed (:func:`kdcal.config.regime_cells`).
Cells share every run they can, because run ids come from full configs: the tau cells reuse the
base teachers, the width ladder reuses resnet8, and a level equal to the base is the base itself.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .analysis import correlation, paired_differences, permutation_floor, permutation_p
from .config import StudyConfig, regime_cells
from .study import (calibrate_teachers, compare_calibrators, engine_for, results_table,
                    student_plan, student_run_config, train_teachers, distill_students)


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


def _corr_columns(frame: pd.DataFrame, x: str, y: str, prefix: str, n_boot: int) -> dict:
    """Spearman estimate, within-seed permutation p-value, and (with 3 or more seeds) the
    interval of notebook 4. With 2 seeds that interval degenerates, so it is left out."""
    out = {prefix: np.nan, f"{prefix}_p": np.nan, f"{prefix}_low": np.nan, f"{prefix}_high": np.nan}
    if frame[x].nunique() < 3 or len(frame) < 3:
        return out
    c = correlation(frame, x, y, "spearman", n_boot)
    out.update({prefix: c["estimate"], f"{prefix}_p": permutation_p(frame, x, y)})
    if frame["seed"].nunique() >= 3:
        out.update({f"{prefix}_low": c["ci_low"], f"{prefix}_high": c["ci_high"]})
    return out


def regime_effects(table: pd.DataFrame, mode: str, n_boot: int = 1000) -> pd.DataFrame:
    """One row per cell: the paired effect of calibrating the teacher, and the size correlations.

    ``effect``: accuracy(mode) - accuracy(uncalibrated) in points, paired by teacher and seed, a
    t-interval over the pairs. ``size_uncal``/``size_cal``: Spearman of teacher parameters with
    student accuracy; ``size_ece``: with teacher ECE (the first claim, per regime); each with a
    within-seed permutation p-value (``_p``) and ``p_floor``, the smallest one the cell allows.
    """
    rows = []
    for (order, factor, level, cell), g in table.groupby(["order", "factor", "level", "cell"],
                                                         sort=True):
        teachers = g[g["role"] == "teacher"]
        students = g[g["role"] == "student"]
        kd = students[students["mode"].isin(["uncalibrated", mode])]
        diff = paired_differences(kd, mode, "uncalibrated")
        allrow = diff[diff["teacher"] == "all"].iloc[0] if len(diff) else None
        eff = {k: (allrow[k] * 100 if allrow is not None else np.nan)
               for k in ("mean", "ci_low", "ci_high")}
        baseline = students.loc[students["mode"] == "baseline", "acc"].mean()
        uncal = students[students["mode"] == "uncalibrated"]
        rows.append({
            "order": order, "factor": factor, "level": level, "cell": cell,
            "effect": eff["mean"], "effect_low": eff["ci_low"], "effect_high": eff["ci_high"],
            "pairs": int(allrow["n"]) if allrow is not None else 0,
            "significant": bool(eff["ci_low"] > 0 or eff["ci_high"] < 0),
            **_corr_columns(uncal, "teacher_params", "acc", "size_uncal", n_boot),
            **_corr_columns(students[students["mode"] == mode], "teacher_params", "acc",
                            "size_cal", n_boot),
            **_corr_columns(teachers, "params", "ece", "size_ece", n_boot),
            "seeds": teachers["seed"].nunique(), "ladder": teachers["arch"].nunique(),
            "p_floor": permutation_floor(teachers),
            "teacher_acc": teachers["acc"].mean(), "teacher_ece": teachers["ece"].mean(),
            "temperature": teachers["temperature"].mean(),
            "student_acc_uncal": uncal["acc"].mean(), "kd_gain": (uncal["acc"].mean() - baseline) * 100,
        })
    return pd.DataFrame(rows)


def regime_summary(effects: pd.DataFrame, mode: str) -> str:
    """A few generated sentences: where the effect and the correlations exclude zero."""
    def cells(mask):
        chosen = effects[mask]
        return ", ".join(f"{r.cell} ({r.effect:+.2f} pt [{r.effect_low:+.2f}, {r.effect_high:+.2f}])"
                         for r in chosen.itertuples()) or "none"

    up = effects["effect_low"] > 0
    down = effects["effect_high"] < 0
    n = len(effects)
    lines = [
        f"Effect of calibrating the teacher ({mode} minus uncalibrated KD, student test accuracy, "
        f"paired by teacher and seed, 95% t-interval) over {n} regime cells:",
        f"- calibration helps (interval above 0): {cells(up)}",
        f"- calibration hurts (interval below 0): {cells(down)}",
        f"- no detectable effect: {int((~up & ~down).sum())} of {n} cells",
        f"- at 95% per cell, about {0.05 * n:.1f} of {n} cells would exclude 0 by chance alone "
        "if calibration never mattered.",
    ]
    for col, what in (("size_cal", f"teacher size vs student accuracy ({mode})"),
                      ("size_uncal", "teacher size vs student accuracy (uncalibrated)"),
                      ("size_ece", "teacher size vs teacher ECE")):
        sig = effects[f"{col}_p"] < SIGNIFICANCE
        pos = effects.loc[sig & (effects[col] > 0), "cell"].tolist()
        neg = effects.loc[sig & (effects[col] < 0), "cell"].tolist()
        lines.append(f"- {what} (Spearman, within-seed permutation p < {SIGNIFICANCE}): positive in "
                     f"{', '.join(pos) or 'no cell'}; negative in {', '.join(neg) or 'no cell'}")
    floor = effects["p_floor"].min()
    if floor >= SIGNIFICANCE:
        lines.append(f"- with {int(effects['seeds'].max())} seeds and {int(effects['ladder'].max())} "
                     f"teachers per cell, no permutation p-value can fall below {floor:.3f}: this "
                     "grid cannot show a size correlation at 5%; add seeds or teachers.")
    return "\n".join(lines)

