"""Figures of the study: one palette per mode everywhere; every seed drawn as a dot.

Error bars are 95% t-intervals over seeds, drawn only from 3 seeds on (with 2, a t-interval is
wider than the data and says little; the dots say more). Intervals of non-negative metrics (ECE,
NLL) are clipped at 0. Titles say what the markers are and over how many seeds. Reliability
diagrams come from netcal, relabelled; everything else is matplotlib/seaborn on the results table.
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


CLOSE_TICKS = 1.4  # size ratio under which two neighbouring tick labels would overlap


def size_tick_labels(params, names) -> list[str]:
    """One label per model, "name\nNNNk"; a model within CLOSE_TICKS of the one before it (say
    resnet20 and resnet8x2, 272k and 308k) gets its label two lines lower, so the two stay legible."""
    labels, lowered, previous = [], False, None
    for p, a in zip(params, names):
        lowered = previous is not None and p / previous < CLOSE_TICKS and not lowered
        labels.append(("\n\n" if lowered else "") + f"{a}\n{p / 1e3:.0f}k")
        previous = p
    return labels


def _size_axis(ax, frame: pd.DataFrame, params: str, arch: str) -> None:
    """Log x axis with one tick per model, labelled with its name and parameter count."""
    ticks = frame[[params, arch]].drop_duplicates().sort_values(params)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks(ticks[params], size_tick_labels(ticks[params], ticks[arch]), fontsize=8)


MIN_SEEDS_FOR_INTERVAL = 3  # below this, figures show the seeds' dots and their mean only


def _errorbars(ax, summary: pd.DataFrame, x: str, color, label: str, marker="o",
               floor: float | None = None):
    """Mean line with 95% intervals; intervals dropped below MIN_SEEDS_FOR_INTERVAL, clipped at ``floor``."""
    s = summary.sort_values(x)
    lo, hi = s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float)
    if floor is not None:
        lo = np.maximum(lo, floor)
    if "n" in s:
        few = s["n"].to_numpy() < MIN_SEEDS_FOR_INTERVAL
        lo, hi = np.where(few, np.nan, lo), np.where(few, np.nan, hi)
    yerr = np.nan_to_num(np.vstack([s["mean"] - lo, hi - s["mean"]]))
    ax.errorbar(s[x], s["mean"], yerr=yerr, color=color, marker=marker, capsize=3, label=label)


def _seed_note(frame: pd.DataFrame) -> str:
    """What the markers are, with the number of seeds: for a figure's title."""
    n = frame["seed"].nunique() if "seed" in frame else int(frame["n"].max())
    if n >= MIN_SEEDS_FOR_INTERVAL:
        return f"mean and 95% t-interval over {n} seeds; dots = seeds"
    return f"line = mean of {n} seed{'s' if n != 1 else ''}, dots = seeds; no interval from {n}"


def significant(frame: pd.DataFrame, low: str = "ci_low", high: str = "ci_high") -> np.ndarray:
    """Filled-marker rule: the analysis's verdict when it has one, else 'interval excludes 0'."""
    if "verdict" in frame:
        return frame["verdict"].isin(DECIDED).to_numpy()
    return ((frame[low] > 0) | (frame[high] < 0)).to_numpy()


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
                       "uncalibrated" if phase == "before" else "temperature-scaled",
                       floor=None if metric == "acc" else 0.0)
            ax.scatter(teachers["params"], teachers[col], color=MODE_PALETTE[phase], s=10, alpha=0.4)
        _size_axis(ax, teachers, "params", "arch")
        ax.set_xlabel("teacher parameters (log scale)")
        ax.set_ylabel(label)
        if metric == "acc":
            break
    axes[0].legend()
    fig.suptitle(f"Teachers: calibration against size ({_seed_note(teachers)})")
    fig.tight_layout()
    return fig


def temperature_vs_size(teachers: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    summ = seed_summary(teachers, ["params"], "temperature")
    _errorbars(ax, summ, "params", MODE_PALETTE["teacher"], "fitted T", floor=0.0)
    ax.scatter(teachers["params"], teachers["temperature"], color=MODE_PALETTE["teacher"], s=10,
               alpha=0.4)
    ax.axhline(1.0, color="grey", lw=1, ls=":")
    _size_axis(ax, teachers, "params", "arch")
    ax.set_xlabel("teacher parameters (log scale)")
    ax.set_ylabel("fitted temperature T (unitless)")
    ax.set_title(f"Temperature fitted on validation NLL\n({_seed_note(teachers)})", fontsize=10)
    fig.tight_layout()
    return fig


def student_accuracy_vs_teacher_size(students: pd.DataFrame):
    """Student test accuracy per distillation mode against teacher size: every seed, and the mean.

    Modes sit side by side around each teacher's x (a small offset), so no seed hides behind
    another mode's bar; the no-KD baseline is a dashed line at its mean, its seeds as ticks.
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    kd = students[students["mode"].isin(MODE_ORDER) | students["mode"].str.startswith("cal-")]
    kd = kd[kd["mode"] != "baseline"]
    extra = sorted(m for m in set(kd["mode"]) if m not in MODE_ORDER)
    modes = [m for m in MODE_ORDER if m in set(kd["mode"])] + extra
    for i, mode in enumerate(modes):
        g = kd[kd["mode"] == mode]
        shift = 1.06 ** (i - (len(modes) - 1) / 2)  # log axis: multiplicative offsets
        summ = seed_summary(g, ["teacher_params"], "acc")
        summ["teacher_params"] = summ["teacher_params"] * shift
        _errorbars(ax, summ, "teacher_params", mode_color(mode), f"KD, {mode}")
        ax.scatter(g["teacher_params"] * shift, g["acc"], color=mode_color(mode), s=14, alpha=0.55,
                   edgecolor="none", zorder=3)
    base = students[students["mode"] == "baseline"]
    if len(base):
        ax.axhline(base["acc"].mean(), color=MODE_PALETTE["baseline"], ls="--",
                   label=f"no KD (baseline), mean of {base['seed'].nunique()} seeds")
        for value in base["acc"]:
            ax.axhline(value, color=MODE_PALETTE["baseline"], lw=0.6, alpha=0.5)
    _size_axis(ax, kd, "teacher_params", "teacher")
    ax.set_xlabel("teacher parameters (log scale; modes offset side by side)")
    ax.set_ylabel("student test accuracy")
    ax.set_title(f"Students: test accuracy against teacher size\n({_seed_note(kd)}; "
                 "thin grey lines = baseline seeds)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _difference_panel(ax, diffs: pd.DataFrame, title: str) -> None:
    """One row per (comparison, teacher): mean paired difference in points with its 95% interval."""
    y = np.arange(len(diffs))
    sig = significant(diffs)
    for i, (_, row) in enumerate(diffs.iterrows()):
        color = mode_color(row["comparison"].split(" - ")[0])
        lo, hi = row["ci_low"], row["ci_high"]
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo * 100, hi * 100], [y[i], y[i]], color=color, lw=1.5)
        ax.scatter(row["mean"] * 100, y[i], s=40, zorder=3, color=color if sig[i] else "white",
                   edgecolor=color)
    ax.axvline(0, color="grey", lw=1)
    labels = diffs["comparison"].str.split(" - ").str[0] + "  |  " + diffs["teacher"].astype(str)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(diffs) - 0.5, -0.5)
    ax.set_title(title, fontsize=10)


def paired_mode_differences(diffs: pd.DataFrame):
    """Paired student accuracy differences, two panels: KD modes against the no-KD baseline, and the
    calibrated modes against uncalibrated KD. One row per mode and teacher ("all": pooled)."""
    vs_base = diffs[diffs["comparison"].str.endswith(" - baseline")]
    vs_uncal = diffs[diffs["comparison"].str.endswith(" - uncalibrated")]
    panels = [(p, t) for p, t in ((vs_uncal, "(a) calibrated KD minus uncalibrated KD"),
                                  (vs_base, "(b) KD minus the no-KD student (baseline)"))
              if len(p)]
    heights = [len(p) for p, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.5, 1.6 + 0.3 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (part, title) in zip(axes[:, 0], panels):
        _difference_panel(ax, part.reset_index(drop=True), title)
    n = int(diffs.loc[diffs["teacher"] != "all", "n"].max()) if "n" in diffs else None
    axes[-1, 0].set_xlabel("difference in student test accuracy (percentage points)")
    rule = ("verdict supported or contradicted" if "verdict" in diffs
            else "95% interval excludes 0")
    fig.suptitle("Paired by teacher and seed: mean difference, 95% t-interval"
                 + (f" over {n} seeds per teacher" if n else "") + f"\n(filled: {rule})",
                 fontsize=10)
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
        _relabel_reliability(sub.axes, title)
    for sub in subfigs[len(panels):]:
        sub.set_visible(False)
    return fig


def _relabel_reliability(axes, title: str) -> None:
    """netcal's two panels, relabelled: its histogram is a fraction (0-1), not '% of Samples', and
    its legends sit in the upper left, where an over-confident model's bars are not."""
    hist, rel = axes[:2]
    hist.set_ylabel("fraction of samples")
    hist.set_title(f"{title}: confidence histogram", fontsize=9)
    hist.legend(["mean accuracy", "mean confidence", "fraction of samples"], loc="upper left",
                fontsize=7, framealpha=0.9)
    rel.set_ylabel("accuracy in the bin")
    rel.set_xlabel("confidence (bin)")
    rel.set_title(f"{title}: reliability", fontsize=9)
    rel.legend(["perfect calibration", "accuracy", "gap to confidence"], loc="upper left",
               fontsize=7, framealpha=0.9)


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


def _teacher_points(frame: pd.DataFrame, hue: str, panels: list[tuple], legend: str,
                    title: str, sharey: bool = False):
    """One panel per (column, y label, panel title): teachers on x by size, ``hue`` side by side.

    Every seed is a dot; the mean a larger marker, with its 95% t-interval (clipped at 0, these
    metrics are non-negative) from MIN_SEEDS_FOR_INTERVAL seeds on.
    """
    order = list(frame.sort_values("params")["arch"].unique())
    levels = list(dict.fromkeys(frame[hue]))
    palette = dict(zip(levels, sns.color_palette("colorblind", len(levels))))
    n_seeds = frame["seed"].nunique()
    width = 0.7 / max(len(levels), 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), sharey=sharey,
                             squeeze=False)
    for ax, (col, ylabel, panel_title) in zip(axes[0], panels):
        for j, level in enumerate(levels):
            g = frame[frame[hue] == level]
            x0 = np.array([order.index(a) for a in g["arch"]]) + (j - (len(levels) - 1) / 2) * width
            ax.scatter(x0, g[col], color=palette[level], s=12, alpha=0.5, edgecolor="none")
            for arch, gg in g.groupby("arch"):
                x = order.index(arch) + (j - (len(levels) - 1) / 2) * width
                mean, _, lo, hi, n = t_interval(gg[col])
                if n >= MIN_SEEDS_FOR_INTERVAL and np.isfinite(lo):
                    ax.plot([x, x], [max(lo, 0.0), hi], color=palette[level], lw=1.5)
                ax.scatter([x], [mean], color=palette[level], s=40, marker="D",
                           label=level if arch == g["arch"].iloc[0] else None)
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("teacher (ordered by parameters)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
    axes[0][0].legend(fontsize=8, title=legend)
    note = (f"diamond = mean of {n_seeds} seeds, dots = seeds"
            + (", bar = 95% t-interval" if n_seeds >= MIN_SEEDS_FOR_INTERVAL else ""))
    fig.suptitle(f"{title} ({note})")
    fig.tight_layout()
    return fig


def calibrator_comparison(methods: pd.DataFrame):
    """Test ECE and NLL of every teacher under every calibration method (95% t-intervals)."""
    return _teacher_points(methods, "method", [("ece", "test ECE (15 bins)", ""),
                                               ("nll", "test NLL (nats)", "")], "calibration",
                           "Calibrators fitted on validation logits, scored on test")


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
    n = int(sweep["n"].max())
    what = (f"mean and 95% t-interval over {n} seeds" if n >= MIN_SEEDS_FOR_INTERVAL
            else f"one student per point, mean of {n} seed{'s' if n != 1 else ''}, no interval")
    fig.suptitle(f"Does the student's optimum sit at the calibrated temperature? ({what})")
    fig.tight_layout()
    return fig


def teacher_variants(table: pd.DataFrame):
    """Test ECE before and after temperature scaling of standard teachers and their variants."""
    return _teacher_points(table, "variant", [("ece", "test ECE (15 bins)", "as trained"),
                                              ("ece_cal", "test ECE (15 bins)",
                                               "after temperature scaling")],
                           "trained with", "Calibration by training",
                           sharey=True)


def regime_map(effects: pd.DataFrame, mode: str):
    """One row per regime cell: the paired effect of calibration, then the size correlations.

    Read left to right: does calibrating the teacher move the student (a), does teacher size help
    the student with and without it (b), and is the bigger teacher the less calibrated one in that
    regime (c). Filled markers: a decided verdict (:func:`kdcal.inference.decide`): the effect's
    95% interval over seeds, or the size slope's permutation interval over teachers, excludes 0.
    """
    from matplotlib.lines import Line2D

    e = effects.sort_values("order").reset_index(drop=True)
    y = np.arange(len(e))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.42 * len(e) + 2.6), sharey=True,
                             gridspec_kw={"width_ratios": [1.3, 1, 1]}, layout="constrained")

    def points(ax, col, color, sig, offset=0.0):
        mid = e[col]
        if f"{col}_low" in e:  # correlations carry no interval (teachers are the units)
            err = np.nan_to_num(np.vstack([mid - e[f"{col}_low"], e[f"{col}_high"] - mid]))
            ax.errorbar(mid, y + offset, xerr=err, fmt="none", ecolor=color, capsize=3)
        ax.scatter(mid[sig], (y + offset)[sig], color=color, s=36, zorder=3)
        ax.scatter(mid[~sig], (y + offset)[~sig], facecolor="white", edgecolor=color, s=36, zorder=3)
        ax.axvline(0, color="0.3", lw=1)

    points(axes[0], "effect", mode_color(mode), e["verdict"].isin(DECIDED).to_numpy())
    axes[0].set_xlabel(f"student accuracy (points):\n{mode} minus uncalibrated KD")
    axes[0].set_title("(a) effect of calibrating the teacher", fontsize=10)
    for col, color, offset in (("size_uncal", mode_color("uncalibrated"), 0.15),
                               ("size_cal", mode_color(mode), -0.15)):
        points(axes[1], col, color, e[f"{col}_verdict"].isin(DECIDED).to_numpy(), offset)
    axes[1].set_xlabel("Spearman correlation of teacher means:\nteacher size vs student accuracy")
    axes[1].set_title("(b) does a bigger teacher help?", fontsize=10)
    points(axes[2], "size_ece", MODE_PALETTE["teacher"],
           e["size_ece_verdict"].isin(DECIDED).to_numpy())
    axes[2].set_xlabel("Spearman correlation of teacher means:\nteacher size vs teacher ECE")
    axes[2].set_title("(c) is the bigger teacher less calibrated?", fontsize=10)
    for ax in axes[1:]:
        ax.set_xlim(-1.1, 1.1)
    axes[0].set_yticks(y, e["cell"], fontsize=8)
    for ax in axes:  # separate the factors
        for boundary in np.flatnonzero(e["factor"].to_numpy()[1:] != e["factor"].to_numpy()[:-1]):
            ax.axhline(y[boundary] - 0.5, color="0.8", lw=0.8)
    handles = [Line2D([], [], ls="none", marker="o", color=mode_color("uncalibrated"),
                      label="uncalibrated KD"),
               Line2D([], [], ls="none", marker="o", color=mode_color(mode), label=f"{mode} KD"),
               Line2D([], [], ls="none", marker="o", color="0.3",
                      label="filled: verdict supported or contradicted"),
               Line2D([], [], ls="none", marker="o", markerfacecolor="white", color="0.3",
                      label="hollow: equivalent or underpowered")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    fig.suptitle("When does teacher calibration matter? One factor changed per row; (a) mean over "
                 "seeds with 95% t-interval over seeds, (b, c) teachers as units (exact "
                 "permutation over teachers)", fontsize=11)
    return fig
