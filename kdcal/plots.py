"""Figures of the study: one palette per mode everywhere, error bars = 95% intervals over seeds.

Reliability diagrams come from netcal; everything else is seaborn on the results table.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .analysis import seed_summary, t_interval
from .inference import DECIDED

MODE_ORDER = ["baseline", "uncalibrated", "compose", "replace"]
_colors = sns.color_palette("colorblind", 8)
MODE_PALETTE = {"baseline": (0.45, 0.45, 0.45), "uncalibrated": _colors[3], "compose": _colors[0],
                "replace": _colors[2], "teacher": (0.1, 0.1, 0.1),
                "before": _colors[3], "after": _colors[2]}


def mode_color(mode: str):
    """The mode's colour in every figure; calibrator-target modes get the remaining colours."""
    if mode in MODE_PALETTE:
        return MODE_PALETTE[mode]
    return _colors[4 + sum(map(ord, mode)) % 4]


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid")


def save(fig, figures_dir, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.svg into the study's figures folder."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _size_axis(ax, frame: pd.DataFrame, params: str, arch: str) -> None:
    """Log x axis with one tick per model, labelled with its name and parameter count."""
    ticks = frame[[params, arch]].drop_duplicates().sort_values(params)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks(ticks[params], [f"{a}\n{p / 1e3:.0f}k" for p, a in zip(ticks[params], ticks[arch])],
                  fontsize=8)


def _errorbars(ax, summary: pd.DataFrame, x: str, color, label: str, marker="o"):
    s = summary.sort_values(x)
    yerr = np.vstack([s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]])
    yerr = np.nan_to_num(yerr)
    ax.errorbar(s[x], s["mean"], yerr=yerr, color=color, marker=marker, capsize=3, label=label)


def teacher_calibration_vs_size(teachers: pd.DataFrame):
    """Teacher test ECE, NLL and accuracy against parameter count, before and after scaling."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric, label in zip(axes, ("ece", "nll", "acc"),
                                 ("test ECE (15 bins)", "test NLL (nats)", "test accuracy")):
        for phase, col in (("before", metric), ("after", f"{metric}_cal")):
            if col not in teachers:
                continue
            summ = seed_summary(teachers.rename(columns={col: "_v"}), ["params"], "_v")
            _errorbars(ax, summ, "params", MODE_PALETTE[phase],
                       "uncalibrated" if phase == "before" else "temperature-scaled")
            ax.scatter(teachers["params"], teachers[col], color=MODE_PALETTE[phase], s=10, alpha=0.4)
        _size_axis(ax, teachers, "params", "arch")
        ax.set_xlabel("teacher parameters (log scale)")
        ax.set_ylabel(label)
        if metric == "acc":
            break
    axes[0].legend()
    fig.suptitle("Teachers: calibration against size (mean and 95% CI over seeds; dots = seeds)")
    fig.tight_layout()
    return fig


def temperature_vs_size(teachers: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    summ = seed_summary(teachers, ["params"], "temperature")
    _errorbars(ax, summ, "params", MODE_PALETTE["teacher"], "fitted T")
    ax.axhline(1.0, color="grey", lw=1, ls=":")
    _size_axis(ax, teachers, "params", "arch")
    ax.set_xlabel("teacher parameters (log scale)")
    ax.set_ylabel("fitted temperature T (unitless)")
    ax.set_title("Temperature fitted on validation NLL")
    fig.tight_layout()
    return fig


def student_accuracy_vs_teacher_size(students: pd.DataFrame):
    """Student test accuracy per distillation mode against teacher size; baseline as a band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    kd = students[students["mode"].isin(MODE_ORDER) | students["mode"].str.startswith("cal-")]
    kd = kd[kd["mode"] != "baseline"]
    offsets = {"uncalibrated": 0.97, "compose": 1.0, "replace": 1.03}
    extra = sorted(m for m in set(kd["mode"]) if m not in MODE_ORDER)
    for mode in [m for m in MODE_ORDER if m in set(kd["mode"])] + extra:
        summ = seed_summary(kd[kd["mode"] == mode], ["teacher_params"], "acc")
        summ["teacher_params"] = summ["teacher_params"] * offsets.get(mode, 1.0)
        _errorbars(ax, summ, "teacher_params", mode_color(mode), f"KD, {mode}")
    base = students[students["mode"] == "baseline"]
    if len(base):
        mean, _, lo, hi, _ = t_interval(base["acc"])
        ax.axhline(mean, color=MODE_PALETTE["baseline"], ls="--", label="no KD (baseline)")
        if np.isfinite(lo):
            ax.axhspan(lo, hi, color=MODE_PALETTE["baseline"], alpha=0.15)
    _size_axis(ax, kd, "teacher_params", "teacher")
    ax.set_xlabel("teacher parameters (log scale)")
    ax.set_ylabel("student test accuracy")
    ax.set_title("Students: accuracy against teacher size (mean, 95% CI over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def paired_mode_differences(diffs: pd.DataFrame):
    """Paired accuracy differences between modes per teacher, with 95% intervals."""
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.35 * len(diffs)))
    labels = diffs["comparison"] + "  |  " + diffs["teacher"].astype(str)
    y = np.arange(len(diffs))
    colors = [mode_color(c.split(" - ")[0]) for c in diffs["comparison"]]
    err = np.nan_to_num(np.vstack([diffs["mean"] - diffs["ci_low"], diffs["ci_high"] - diffs["mean"]]))
    for i, color in enumerate(colors):
        ax.errorbar(diffs["mean"].iloc[i] * 100, y[i], xerr=err[:, i:i + 1] * 100, fmt="o",
                    color=color, capsize=3)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("student accuracy difference (percentage points, paired by teacher and seed)")
    ax.set_title("Does calibrating the teacher change the student?")
    fig.tight_layout()
    return fig


def training_curves(curves: pd.DataFrame):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    sns.lineplot(curves, x="epoch", y="loss", hue="arch", ax=axes[0], errorbar=("ci", 95))
    sns.lineplot(curves, x="epoch", y="train_acc", hue="arch", ax=axes[1], errorbar=("ci", 95),
                 legend=False)
    axes[0].set_ylabel("training loss (cross-entropy, nats)")
    axes[1].set_ylabel("training accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def reliability_grid(panels: list[tuple], n_bins: int = 15, columns: int = 2):
    """netcal reliability diagrams side by side; ``panels`` holds (probs, labels, title)."""
    from netcal.presentation import ReliabilityDiagram

    rows = (len(panels) + columns - 1) // columns
    fig = plt.figure(figsize=(5 * columns, 5.2 * rows), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(rows, columns)).ravel()
    for sub, (probs, labels, title) in zip(subfigs, panels):
        sub.tight_layout = lambda *a, **k: None  # netcal calls it; the parent lays out instead
        ReliabilityDiagram(bins=n_bins).plot(np.asarray(probs), np.asarray(labels), fig=sub,
                                             title_suffix=title)
    for sub in subfigs[len(panels):]:
        sub.set_visible(False)
    return fig


def image_grid(images, titles, columns: int = 8):
    """A few uint8 images [N, C, H, W] with their labels (a first look at the data)."""
    n = len(images)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows))
    for ax, img, title in zip(np.ravel(axes), images, titles):
        arr = img.cpu().numpy().transpose(1, 2, 0)
        ax.imshow(arr.squeeze(-1) if arr.shape[-1] == 1 else arr, cmap="gray")
        ax.set_title(title, fontsize=7)
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.tight_layout()
    return fig


def _t_errorbar(values):
    _, _, lo, hi, _ = t_interval(values)
    mean = float(np.mean(values))
    return (lo, hi) if np.isfinite(lo) else (mean, mean)


def _teacher_points(frame: pd.DataFrame, hue: str, panels: list[tuple], legend: str,
                    title: str, sharey: bool = False):
    """One panel per (column, y label, panel title): teachers on x by size, ``hue`` as points."""
    order = frame.sort_values("params")["arch"].unique()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), sharey=sharey)
    for ax, (col, ylabel, panel_title) in zip(np.atleast_1d(axes), panels):
        sns.pointplot(frame, x="arch", y=col, hue=hue, order=order, ax=ax,
                      errorbar=_t_errorbar, dodge=0.4, linestyle="none", capsize=0.1)
        ax.set_xlabel("teacher (ordered by parameters)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        if ax is not np.atleast_1d(axes)[0]:
            ax.get_legend().remove()
    np.atleast_1d(axes)[0].legend(fontsize=8, title=legend)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def calibrator_comparison(methods: pd.DataFrame):
    """Test ECE and NLL of every teacher under every calibration method (95% t-intervals)."""
    return _teacher_points(methods, "method", [("ece", "test ECE (15 bins)", ""),
                                               ("nll", "test NLL (nats)", "")], "calibration",
                           "Calibrators fitted on validation logits, scored on test "
                           "(mean, 95% CI over seeds)")


def temperature_sweep(sweep: pd.DataFrame):
    """Per teacher: student accuracy against the teacher's temperature; the fitted T as a star."""
    teachers = list(dict.fromkeys(sweep.sort_values("teacher_params")["teacher"]))
    fig, axes = plt.subplots(1, len(teachers), figsize=(3.6 * len(teachers), 3.6), sharey=True,
                             squeeze=False)
    for ax, teacher in zip(axes[0], teachers):
        g = sweep[sweep["teacher"] == teacher]
        line = g[g["point"] == "sweep"].sort_values("teacher_temperature")
        _errorbars(ax, line, "teacher_temperature", MODE_PALETTE["uncalibrated"], "sweep")
        fitted = g[g["point"] == "fitted T"]
        if len(fitted):
            err = np.nan_to_num(np.vstack([fitted["mean"] - fitted["ci_low"],
                                           fitted["ci_high"] - fitted["mean"]]))
            ax.errorbar(fitted["teacher_temperature"], fitted["mean"], yerr=err, fmt="*",
                        markersize=12, color=MODE_PALETTE["compose"], capsize=3,
                        label="NLL-fitted T (compose)")
            ax.axvline(float(fitted["teacher_temperature"].iloc[0]), color=MODE_PALETTE["compose"],
                       ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_title(teacher)
        ax.set_xlabel("teacher temperature (x tau)")
    axes[0][0].set_ylabel("student test accuracy")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Does the student's optimum sit at the calibrated temperature? (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


def teacher_variants(table: pd.DataFrame):
    """Test ECE before and after temperature scaling of standard teachers and their variants."""
    return _teacher_points(table, "variant", [("ece", "test ECE (15 bins)", "as trained"),
                                              ("ece_cal", "test ECE (15 bins)",
                                               "after temperature scaling")],
                           "trained with", "Calibration by training (mean, 95% CI over seeds)",
                           sharey=True)


def regime_map(effects: pd.DataFrame, mode: str, alpha: float = 0.05):
    """One row per regime cell: the paired effect of calibration, then the size correlations.

    Read left to right: does calibrating the teacher move the student (a), does teacher size help
    the student with and without it (b), and is the bigger teacher the less calibrated one in that
    regime (c). Filled markers: a decided verdict (:func:`kdcal.inference.decide`): the effect's
    95% interval over seeds, or the size slope's permutation interval over teachers, excludes 0.
    """
    e = effects.sort_values("order").reset_index(drop=True)
    y = np.arange(len(e))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.42 * len(e) + 1.8), sharey=True,
                             gridspec_kw={"width_ratios": [1.3, 1, 1]})

    def points(ax, col, color, sig, offset=0.0, label=None):
        mid = e[col]
        if f"{col}_low" in e:  # correlations carry no interval (teachers are the units)
            err = np.nan_to_num(np.vstack([mid - e[f"{col}_low"], e[f"{col}_high"] - mid]))
            ax.errorbar(mid, y + offset, xerr=err, fmt="none", ecolor=color, capsize=3)
        ax.scatter(mid[sig], (y + offset)[sig], color=color, s=36, zorder=3,
                   label=label if sig.any() else None)
        ax.scatter(mid[~sig], (y + offset)[~sig], facecolor="white", edgecolor=color, s=36,
                   zorder=3, label=None if sig.any() else label)
        ax.axvline(0, color="0.3", lw=1)

    points(axes[0], "effect", mode_color(mode), e["verdict"].isin(DECIDED))
    axes[0].set_xlabel(f"student accuracy, {mode} - uncalibrated (points)")
    axes[0].set_title("(a) effect of calibrating the teacher")
    for col, color, offset, label in (("size_uncal", mode_color("uncalibrated"), 0.15, "uncalibrated"),
                                      ("size_cal", mode_color(mode), -0.15, mode)):
        points(axes[1], col, color, e[f"{col}_verdict"].isin(DECIDED), offset, label)
    axes[1].set_xlabel("Spearman: teacher size vs student accuracy")
    axes[1].set_title("(b) does a bigger teacher help?")
    axes[1].legend(fontsize=8, loc="best")
    points(axes[2], "size_ece", MODE_PALETTE["teacher"], e["size_ece_verdict"].isin(DECIDED))
    axes[2].set_xlabel("Spearman: teacher size vs teacher ECE")
    axes[2].set_title("(c) is the bigger teacher less calibrated?")
    for ax in axes[1:]:
        ax.set_xlim(-1.1, 1.1)
    axes[0].set_yticks(y, e["cell"])
    for ax in axes:  # separate the factors
        for boundary in np.flatnonzero(e["factor"].to_numpy()[1:] != e["factor"].to_numpy()[:-1]):
            ax.axhline(y[boundary] - 0.5, color="0.8", lw=0.8)
    fig.suptitle("When does teacher calibration matter? One factor changed per row (filled: "
                 "supported or contradicted by the study's verdict rule: (a) 95% t-interval over "
                 "seeds, (b, c) slope per doubling, exact permutation over teachers)")
    fig.tight_layout()
    return fig
