"""When calibration matters: the regime map (one factor changed per row) and the student's
accuracy over the teacher's temperature. Apart because each reads its own experiment's table."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .analysis import paired_by_seed, per_seed_means
from .inference import DECIDED, MARGINS
from .plot_style import (BAND, INTERVAL, MIN_SEEDS_FOR_INTERVAL, REFERENCE, errorbars,
                         forest_handles, forest_rows, legend_below, mode_color, row_label,
                         tag_intervals)


# ---------------------------------------------------------------- regime map
def _regime_seeds(table: pd.DataFrame, cells, mode: str) -> list[np.ndarray]:
    """Per cell: each seed's effect of calibration (points), the mean over the cell's teachers."""
    out = []
    for cell in cells:
        g = table[(table["cell"] == cell) & (table["role"] == "student")]
        kd = g[g["mode"].isin(["uncalibrated", mode])]
        out.append(per_seed_means(paired_by_seed(kd, mode, "uncalibrated")).to_numpy() * 100)
    return out


def regime_map(effects: pd.DataFrame, mode: str, table: pd.DataFrame | None = None,
               margin: float | None = MARGINS.acc):
    """One row per regime cell: the paired effect of calibration, then the size correlations.

    Read left to right: does calibrating the teacher move the student (a), does teacher size help
    the student with and without it (b), and is the bigger teacher the less calibrated one in that
    regime (c). Filled markers: a decided verdict (:func:`kdcal.inference.decide`): the effect's
    95% interval over seeds, or the size slope's permutation interval over teachers, excludes 0
    and does not lie inside the margin (negligible effects stay hollow).
    ``table`` (the regimes' results, as :func:`kdcal.regimes.regime_effects` read them) adds each
    seed's effect beside its row; ``margin`` (accuracy) is the shaded band of (a).
    """
    e = effects.sort_values("order").reset_index(drop=True)
    y = np.arange(len(e))[::-1].astype(float)
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.46 * len(e) + 2.8), sharey=True,
                             gridspec_kw={"width_ratios": [1.3, 1, 1]}, layout="constrained")
    seeds = _regime_seeds(table, e["cell"], mode) if table is not None else None
    n = (e["seeds"].to_numpy(float) if "seeds" in e
         else np.array([len(s) for s in seeds], float) if seeds is not None
         else np.full(len(e), np.inf))
    color = mode_color(mode)
    forest_rows(axes[0], y, e["effect"].to_numpy(), e["effect_low"].to_numpy(),
                e["effect_high"].to_numpy(), n, [color] * len(e),
                e["verdict"].isin(DECIDED).to_numpy(), seeds,
                None if margin is None else margin * 100)
    axes[0].set_xlabel(f"student accuracy (points):\n{mode} minus uncalibrated KD")
    axes[0].set_title("(a) effect of calibrating the teacher", fontsize=10)

    def points(ax, col, color, sig, offset=0.0):
        mid = e[col]  # correlations carry no interval here: teachers are the units
        ax.scatter(mid[sig], (y + offset)[sig], color=color, s=36, zorder=3)
        ax.scatter(mid[~sig], (y + offset)[~sig], facecolor="#FFFFFF", edgecolor=color, s=36,
                   zorder=3)
        ax.axvline(0, color=REFERENCE, lw=1)

    for col, c, offset in (("size_uncal", mode_color("uncalibrated"), 0.15),
                           ("size_cal", color, -0.15)):
        points(axes[1], col, c, e[f"{col}_verdict"].isin(DECIDED).to_numpy(), offset)
    axes[1].set_xlabel("Spearman correlation of teacher means:\nteacher size vs student accuracy")
    axes[1].set_title("(b) does a bigger teacher help?", fontsize=10)
    points(axes[2], "size_ece", mode_color("teacher"),
           e["size_ece_verdict"].isin(DECIDED).to_numpy())
    axes[2].set_xlabel("Spearman correlation of teacher means:\nteacher size vs teacher ECE")
    axes[2].set_title("(c) is the bigger teacher less calibrated?", fontsize=10)
    for ax in axes[1:]:
        ax.set_xlim(-1.1, 1.1)
    axes[0].set_yticks(y, [row_label(c, k) for c, k in zip(e["cell"], n)], fontsize=8)
    axes[0].set_ylim(-0.75, len(e) - 0.5)
    for ax in axes:  # separate the factors
        for boundary in np.flatnonzero(e["factor"].to_numpy()[1:] != e["factor"].to_numpy()[:-1]):
            ax.axhline(y[boundary] - 0.5, color=BAND, lw=0.8)
    handles = [Line2D([], [], ls="none", marker="o", color=mode_color("uncalibrated"),
                      label="(b) uncalibrated KD"),
               Line2D([], [], ls="none", marker="o", color=color, label=f"(a, b) {mode} KD"),
               Line2D([], [], ls="none", marker="o", color=mode_color("teacher"),
                      label="(c) teachers")]
    handles += forest_handles(None if margin is None else margin * 100, "pt", seeds is not None,
                              "verdict supported or contradicted")
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    seeds_n = int(np.nanmax(n)) if np.isfinite(n).any() else None
    ladder = int(e["ladder"].max()) if "ladder" in e else None
    counts = ", ".join(x for x in (f"n = {seeds_n} seeds" if seeds_n else "",
                                   f"{ladder} teachers per cell" if ladder else "") if x)
    interval = (f"mean with {INTERVAL}" if seeds_n and seeds_n >= MIN_SEEDS_FOR_INTERVAL
                else "mean over seeds; n < 3: no interval")
    fig.suptitle(f"When does teacher calibration matter? One factor changed per row ({counts}); "
                 f"(a) {interval}, (b, c) teachers as units (exact permutation over teachers)",
                 fontsize=11)
    return fig


# ---------------------------------------------------------------- temperature sweep
def temperature_sweep(sweep: pd.DataFrame):
    """Per teacher: student accuracy against the teacher's temperature; the fitted T as a star."""
    teachers = list(dict.fromkeys(sweep.sort_values("teacher_params")["teacher"]))
    fig, axes = plt.subplots(1, len(teachers), figsize=(3.6 * len(teachers), 3.6), sharey=True,
                             squeeze=False)
    for ax, teacher in zip(axes[0], teachers):
        g = sweep[sweep["teacher"] == teacher]
        line = g[g["point"] == "sweep"].sort_values("teacher_temperature")
        errorbars(ax, line, "teacher_temperature", mode_color("temp_sweep"),
                  "sweep (temp_sweep)")
        plain = line[np.isclose(line["teacher_temperature"], 1.0)]
        ax.scatter(plain["teacher_temperature"], plain["mean"], s=60, zorder=4,
                   color=mode_color("uncalibrated"), label="m = 1: uncalibrated KD")
        fitted = g[g["point"] == "fitted T"]
        if len(fitted):
            few = fitted["n"].to_numpy() < MIN_SEEDS_FOR_INTERVAL
            err = np.nan_to_num(np.vstack([fitted["mean"] - fitted["ci_low"],
                                           fitted["ci_high"] - fitted["mean"]]))
            err[:, few] = 0.0
            tag_intervals(ax.errorbar(fitted["teacher_temperature"], fitted["mean"],
                                      yerr=err if err.any() else None, fmt="*", markersize=12,
                                      color=mode_color("compose"), capsize=3,
                                      label="NLL-fitted T (compose)"))
            ax.axvline(float(fitted["teacher_temperature"].iloc[0]), color=mode_color("compose"),
                       ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_title(teacher)
        ax.set_xlabel("teacher temperature (x tau)")
    axes[0][0].set_ylabel("student test accuracy")
    handles, _ = axes[0][0].get_legend_handles_labels()
    legend_below(fig, handles, ncols=3)
    n = int(sweep["n"].max())
    what = (f"mean and {INTERVAL}" if n >= MIN_SEEDS_FOR_INTERVAL
            else "one student per point; n < 3: no interval" if n == 1
            else "mean over seeds; n < 3: no interval")
    fig.suptitle("Does the student's optimum sit at the calibrated temperature?\n"
                 f"(n = {n} seed{'s' if n != 1 else ''} per point, {len(teachers)} teachers; "
                 f"{what})", fontsize=10)
    fig.tight_layout()
    return fig
