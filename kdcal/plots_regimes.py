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


SIZE_PANELS = (  # the size correlations: (columns, title, x label), each drawn when it has values
    (("size_uncal", "size_cal"), "does a bigger teacher help?",
     "Spearman correlation of teacher means:\nsize vs student accuracy"),
    (("size_ece",), "is the bigger teacher less calibrated?",
     "Spearman correlation of teacher means:\nsize vs teacher ECE"))


def _size_points(ax, e: pd.DataFrame, y, col: str, color, offset: float = 0.0) -> None:
    """One correlation per row (no interval: teachers are the units), filled when decided."""
    mid, sig = e[col], e[f"{col}_verdict"].isin(DECIDED).to_numpy()
    ax.scatter(mid[sig], (y + offset)[sig], color=color, s=36, zorder=3)
    ax.scatter(mid[~sig], (y + offset)[~sig], facecolor="#FFFFFF", edgecolor=color, s=36,
               zorder=3)
    ax.axvline(0, color=REFERENCE, lw=1)
    ax.set_xlim(-1.1, 1.1)


def regime_map(effects: pd.DataFrame, mode: str, table: pd.DataFrame | None = None,
               margin: float | None = MARGINS.acc):
    """One row per regime cell: the paired effect of calibration, then the size correlations.

    Read left to right: does calibrating the teacher move the student (a), does teacher size help
    the student with and without it (b), and is the bigger teacher the less calibrated one in that
    regime (c). Filled markers: a decided verdict (:func:`kdcal.inference.decide`): the effect's
    95% interval over seeds, or the size slope's permutation interval over teachers, excludes 0
    and does not lie inside the margin (negligible effects stay hollow).
    ``table`` (the regimes' results, as :func:`kdcal.regimes.regime_effects` read them) adds each
    seed's effect beside its row; ``margin`` (accuracy) is the shaded band of (a). A size panel
    with no correlation in any cell (fewer than 3 teachers per cell) is not drawn; the title
    says so.
    """
    e = effects.sort_values("order").reset_index(drop=True)
    y = np.arange(len(e))[::-1].astype(float)
    sizes = [p for p in SIZE_PANELS
             if any(c in e and np.isfinite(e[c].to_numpy(float)).any() for c in p[0])]
    widths = [1.3] + [1.0] * len(sizes)
    fig, axes = plt.subplots(1, len(widths), figsize=(1.2 + 3.9 * sum(widths),
                                                      0.46 * len(e) + 3.0),
                             sharey=True, squeeze=False, gridspec_kw={"width_ratios": widths},
                             layout="constrained")
    axes = axes[0]
    seeds = _regime_seeds(table, e["cell"], mode) if table is not None else None
    n = (e["seeds"].to_numpy(float) if "seeds" in e
         else np.array([len(s) for s in seeds], float) if seeds is not None
         else np.full(len(e), np.inf))
    color = mode_color(mode)
    forest_rows(axes[0], y, e["effect"].to_numpy(), e["effect_low"].to_numpy(),
                e["effect_high"].to_numpy(), n, [color] * len(e),
                e["verdict"].isin(DECIDED).to_numpy(), seeds,
                None if margin is None else margin * 100)
    axes[0].set_xlabel(f"student accuracy (points):\n{mode} minus uncalibrated KD", fontsize=9)
    axes[0].set_ylabel("regime cell", fontsize=9)
    axes[0].set_title("(a) effect of calibrating the teacher", fontsize=10)
    handles = [Line2D([], [], ls="none", marker="o", color=color, label=f"(a) {mode} KD")]
    for k, (ax, (cols, title, xlabel)) in enumerate(zip(axes[1:], sizes)):
        letter = "bc"[k]
        if cols == ("size_ece",):
            _size_points(ax, e, y, "size_ece", mode_color("teacher"))
            handles.append(Line2D([], [], ls="none", marker="o", color=mode_color("teacher"),
                                  label=f"({letter}) teachers"))
        else:
            _size_points(ax, e, y, "size_uncal", mode_color("uncalibrated"), 0.15)
            _size_points(ax, e, y, "size_cal", color, -0.15)
            handles.append(Line2D([], [], ls="none", marker="o", color=mode_color("uncalibrated"),
                                  label=f"({letter}) uncalibrated KD"))
            handles[0].set_label(f"(a, {letter}) {mode} KD")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_title(f"({letter}) {title}", fontsize=10)
    axes[0].set_yticks(y, [row_label(c, k) for c, k in zip(e["cell"], n)], fontsize=8)
    axes[0].set_ylim(-0.75, len(e) - 0.5)
    for ax in axes:  # separate the factors
        for boundary in np.flatnonzero(e["factor"].to_numpy()[1:] != e["factor"].to_numpy()[:-1]):
            ax.axhline(y[boundary] - 0.5, color=BAND, lw=0.8)
    handles += forest_handles(None if margin is None else margin * 100, "pt", seeds is not None,
                              "verdict supported or contradicted")
    fig.legend(handles=handles, loc="outside lower center", ncols=3 if sizes else 2, fontsize=8,
               frameon=False)
    seeds_n = int(np.nanmax(n)) if np.isfinite(n).any() else None
    ladder = int(e["ladder"].max()) if "ladder" in e else None
    counts = ", ".join(x for x in (f"n = {seeds_n} seeds" if seeds_n else "",
                                   f"{ladder} teachers per cell" if ladder else "") if x)
    interval = (f"mean with {INTERVAL}" if seeds_n and seeds_n >= MIN_SEEDS_FOR_INTERVAL
                else "mean over seeds; n < 3: no interval")
    parts = [f"(a) {interval}"]
    if sizes:
        parts.append(f"({'b, c' if len(sizes) == 2 else 'b'}) teachers as units "
                     "(exact permutation over teachers)")
    if len(sizes) < len(SIZE_PANELS):
        parts.append("size correlations need 3 teachers in a cell: "
                     + ("not drawn" if not sizes else "the other one not drawn")
                     + (f" (here {ladder} per cell)" if ladder else ""))
    fig.suptitle(f"When does teacher calibration matter? One factor changed per row ({counts})\n"
                 + "; ".join(parts), fontsize=10)
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
