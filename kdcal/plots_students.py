"""Student figures: accuracy against teacher size per mode, and the paired mode differences
as forest plots. Apart from the teachers' figures: these read the students' results."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .analysis import paired_by_seed, per_seed_means, seed_summary
from .inference import MARGINS
from .plot_style import (INTERVAL, MIN_SEEDS_FOR_INTERVAL, MODE_ORDER, errorbars, family_handles,
                         family_lines, forest_handles, forest_rows, legend_below, mode_color,
                         row_label, seed_note, significant, size_axis, stagger_ticks,
                         teacher_families)


# ---------------------------------------------------------------- students against size
def student_accuracy_vs_teacher_size(students: pd.DataFrame):
    """Student test accuracy per distillation mode against teacher size: every seed, and the mean.

    Modes sit side by side around each teacher's x (a small offset), so no seed hides behind
    another mode's bar; lines join teachers of one family only. The no-KD baseline sits at its
    own place left of the teachers (its seeds as dots, its mean and interval), its mean also a
    dashed line across.
    """
    fig, ax = plt.subplots(figsize=(10, 5))
    kd = students[students["mode"].isin(MODE_ORDER) | students["mode"].str.startswith("cal-")]
    kd = kd[kd["mode"] != "baseline"]
    extra = sorted(m for m in set(kd["mode"]) if m not in MODE_ORDER)
    modes = [m for m in MODE_ORDER if m in set(kd["mode"])] + extra
    for i, mode in enumerate(modes):
        g = kd[kd["mode"] == mode]
        shift = 1.06 ** (i - (len(modes) - 1) / 2)  # log axis: multiplicative offsets
        family_lines(ax, g, "teacher_params", "acc", "teacher", mode_color(mode), f"KD, {mode}",
                     scale=shift)
        ax.scatter(g["teacher_params"] * shift, g["acc"], color=mode_color(mode), s=14,
                   alpha=0.55, edgecolor="none", zorder=3)
    base = students[students["mode"] == "baseline"]
    extra_ticks = []
    if len(base):
        x0 = kd["teacher_params"].min() / 1.8
        color = mode_color("baseline")
        ax.axhline(base["acc"].mean(), color=color, ls=":", lw=1.2)
        summ = seed_summary(base.assign(x=x0), ["x"], "acc")
        errorbars(ax, summ, "x", color, f"no KD (baseline): mean of {base['seed'].nunique()} "
                  "seeds, dotted across", marker="s")
        ax.scatter(np.full(len(base), x0), base["acc"], color=color, s=18, alpha=0.7,
                   edgecolor="none", zorder=3, label="no KD (baseline): one seed")
        extra_ticks = [(x0, "no KD\n(baseline)")]
    size_axis(ax, kd, "teacher_params", "teacher", extra=extra_ticks)
    ax.set_xlabel("teacher parameters (log scale; modes offset side by side)")
    ax.set_ylabel("student test accuracy")
    ax.set_title(f"Students: test accuracy against teacher size\n({seed_note(kd, 'teacher')})",
                 fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    first = sorted(range(len(labels)), key=lambda i: labels[i].startswith("no KD"))  # KD first
    stagger_ticks(fig, [ax])
    legend_below(fig, [handles[i] for i in first]
                 + family_handles(teacher_families(kd, "teacher")), ncols=3)
    return fig


# ---------------------------------------------------------------- forest plots
def _difference_seeds(students: pd.DataFrame, comparison: str, teacher: str) -> np.ndarray:
    """The per-seed paired differences behind one row of :func:`kdcal.analysis.mode_differences`."""
    mode_a, mode_b = comparison.split(" - ", 1)
    modes = set(students["mode"])
    if mode_a not in modes or mode_b not in modes:
        return np.array([])
    diff = paired_by_seed(students, mode_a, mode_b)
    if teacher == "all":
        return per_seed_means(diff).to_numpy()
    return diff.loc[diff["teacher"].astype(str) == str(teacher), "diff"].to_numpy()


def _difference_panel(ax, diffs: pd.DataFrame, title: str, students=None,
                      margin: float | None = None) -> None:
    """One row per (comparison, teacher): mean paired difference in points, the seeds beside it,
    its 95% interval (from 3 seeds on) and the margin band."""
    y = np.arange(len(diffs))
    n = diffs["n"].to_numpy(float) if "n" in diffs else np.full(len(diffs), np.inf)
    seeds = None
    if students is not None:
        seeds = [_difference_seeds(students, c, t) * 100
                 for c, t in zip(diffs["comparison"], diffs["teacher"])]
        if "n" not in diffs:
            n = np.array([len(s) for s in seeds], float)
    colors = [mode_color(c.split(" - ")[0]) for c in diffs["comparison"]]
    forest_rows(ax, y, diffs["mean"].to_numpy() * 100, diffs["ci_low"].to_numpy() * 100,
                diffs["ci_high"].to_numpy() * 100, n, colors, significant(diffs), seeds,
                None if margin is None else margin * 100, below=0.25)  # y runs downwards
    labels = diffs["comparison"].str.split(" - ").str[0] + "  |  " + diffs["teacher"].astype(str)
    ax.set_yticks(y, [row_label(lab, k) for lab, k in zip(labels, n)], fontsize=8)
    ax.set_ylim(len(diffs) - 0.5, -0.6)
    ax.set_title(title, fontsize=10)


def paired_mode_differences(diffs: pd.DataFrame, students: pd.DataFrame | None = None,
                            margin: float | None = MARGINS.acc):
    """Paired student accuracy differences, two panels: KD modes against the no-KD baseline, and the
    calibrated modes against uncalibrated KD. One row per mode and teacher ("all": pooled).

    ``students`` (the student rows ``diffs`` came from) adds each seed's paired difference as a
    dot beside its row; ``margin`` (accuracy, as in :func:`kdcal.analysis.mode_differences`) is
    drawn as a shaded band around 0, so "equivalent" (interval inside it) reads at a glance.
    """
    vs_base = diffs[diffs["comparison"].str.endswith(" - baseline")]
    vs_uncal = diffs[diffs["comparison"].str.endswith(" - uncalibrated")]
    panels = [(p, t) for p, t in ((vs_uncal, "(a) calibrated KD minus uncalibrated KD"),
                                  (vs_base, "(b) KD minus the no-KD student (baseline)"))
              if len(p)]
    heights = [len(p) for p, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.6 + 0.34 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (part, title) in zip(axes[:, 0], panels):
        _difference_panel(ax, part.reset_index(drop=True), title, students, margin)
    per_teacher = diffs[diffs["teacher"] != "all"]
    n = int(per_teacher["n"].max()) if "n" in diffs and len(per_teacher) else None
    axes[-1, 0].set_xlabel("difference in student test accuracy (percentage points)")
    rule = ("Holm-adjusted verdict supported or contradicted" if "verdict_holm" in diffs
            else "verdict supported or contradicted" if "verdict" in diffs
            else "95% interval excludes 0")
    teachers = per_teacher["teacher"].nunique()
    counts = (f"n = {n} seeds per teacher, {teachers} teachers" if n
              else f"{teachers} teachers")
    interval = (f"mean and {INTERVAL}" if n and n >= MIN_SEEDS_FOR_INTERVAL
                else "mean; n < 3: no interval")
    fig.suptitle(f"Paired by teacher and seed ({counts}): {interval}\n"
                 "'all': one value per seed, its mean over teachers", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))  # the two title lines: 0.6 in
    legend_below(fig, forest_handles(None if margin is None else margin * 100, "pt",
                                     students is not None, rule), ncols=3)
    return fig
