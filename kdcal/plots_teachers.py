"""Teacher figures: calibration and fitted temperature against size, training curves,
calibrators and training variants side by side, and a first look at the images. Apart from the
students' and regimes' figures, which read other tables."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .analysis import seed_summary, t_interval
from .plot_style import (FAMILY_STYLE, INTERVAL, INTERVAL_GID, MIN_SEEDS_FOR_INTERVAL, REFERENCE,
                         arch_sizes, family_handles, family_lines, legend_below, legend_right,
                         mode_color, seed_counts, seed_dots, seed_note, size_axis,
                         stagger_ticks, teacher_families)


# ---------------------------------------------------------------- teachers against size
def teacher_calibration_vs_size(teachers: pd.DataFrame):
    """Teacher test ECE and NLL against parameter count, before and after temperature scaling,
    and test accuracy (which temperature scaling leaves as it is: one line, the teacher's)."""
    fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.4))
    before_after = (("uncalibrated", ""), ("cal-temperature", "_cal"))
    panels = (("ece", "test ECE (15 bins)", tuple((p, f"ece{s}") for p, s in before_after)),
              ("nll", "test NLL (nats)", tuple((p, f"nll{s}") for p, s in before_after)),
              ("acc", "test accuracy", (("teacher", "acc"),)))
    labels = {"uncalibrated": "uncalibrated",
              "cal-temperature": "temperature-scaled (cal-temperature)",
              "teacher": "accuracy (the same after temperature scaling)"}
    for ax, (metric, ylabel, phases) in zip(axes, panels):
        for phase, col in phases:
            if col not in teachers:
                continue
            family_lines(ax, teachers, "params", col, "arch", mode_color(phase), labels[phase],
                         floor=None if metric == "acc" else 0.0)
            ax.scatter(teachers["params"], teachers[col], color=mode_color(phase), s=10, alpha=0.4)
        size_axis(ax, teachers, "params", "arch")
        ax.set_xlabel("teacher parameters (log scale)")
        ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=mode_color(phase), marker="o", label=labels[phase])
               for phase in ("uncalibrated", "cal-temperature", "teacher")]
    fig.suptitle(f"Teachers: calibration against size ({seed_note(teachers, 'arch')})",
                 fontsize=11)
    stagger_ticks(fig, axes)
    legend_below(fig, handles + family_handles(teacher_families(teachers, "arch")), ncols=3)
    return fig


def distill_calibration_vs_size(teachers: pd.DataFrame):
    """The mechanism: each teacher's ECE and NLL on the images its students learn from
    (``distill_*``: its own training images, or the transfer split), before and after temperature
    scaling, beside the same on the test set; every seed a small dot, jittered sideways.
    Calibration can only help a student where the targets it sees are over-confident."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4))
    series = (("uncalibrated", "", "o", "test, uncalibrated"),
              ("cal-temperature", "_cal", "o", "test, temperature-scaled"),
              ("uncalibrated", "distill_", "^", "students' images, uncalibrated"),
              ("cal-temperature", "distill_cal", "^", "students' images, temperature-scaled"))
    handles, few = [], teachers["seed"].nunique() < MIN_SEEDS_FOR_INTERVAL
    for ax, (metric, ylabel) in zip(axes, (("ece", "ECE (15 bins)"), ("nll", "NLL (nats)"))):
        for phase, kind, marker, label in series:
            col = (f"{metric}{kind}" if not kind.startswith("distill")
                   else f"distill_{metric}{'_cal' if kind == 'distill_cal' else ''}")
            if col not in teachers or teachers[col].isna().all():
                continue
            family_lines(ax, teachers, "params", col, "arch", mode_color(phase), label,
                         floor=0.0, marker=marker)
            seed_dots(ax, teachers["params"], teachers[col], mode_color(phase), marker, few)
            if ax is axes[0]:
                handles.append(Line2D([], [], color=mode_color(phase), marker=marker, label=label))
        size_axis(ax, teachers, "params", "arch")
        ax.set_xlabel("teacher parameters (log scale)")
        ax.set_ylabel(ylabel)
    fig.suptitle("Teachers' calibration where the students learn (triangles) and on the test set "
                 f"(circles)\n({seed_note(teachers, 'arch')})", fontsize=11)
    stagger_ticks(fig, axes)
    legend_below(fig, handles + family_handles(teacher_families(teachers, "arch")), ncols=3)
    return fig


def temperature_vs_size(teachers: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    color = mode_color("teacher")
    family_lines(ax, teachers, "params", "temperature", "arch", color, "fitted T (mean)",
                 floor=0.0)
    ax.scatter(teachers["params"], teachers["temperature"], color=color, s=10, alpha=0.4,
               label="fitted T (one seed)")
    ax.axhline(1.0, color=REFERENCE, lw=1, ls=":", label="T = 1 (no change)")
    size_axis(ax, teachers, "params", "arch")
    ax.set_xlabel("teacher parameters (log scale)")
    ax.set_ylabel("fitted temperature T")
    ax.set_title("Temperature fitted on validation NLL (unitless)\n"
                 f"({seed_note(teachers, 'arch')})", fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    stagger_ticks(fig, [ax])
    legend_below(fig, handles + family_handles(teacher_families(teachers, "arch")), ncols=2)
    return fig


# ---------------------------------------------------------------- training, images
TRAINING_COLUMNS = 4  # teachers per row of the training curves' small multiples


def training_curves(curves: pd.DataFrame, sizes: dict | None = None):
    """Loss and training accuracy per epoch, one small panel per teacher (smallest first: by
    ``sizes``, arch -> parameters, else the curves' ``params``, else the registry's counts; the
    title gives the count of the first two): the teacher's mean over seeds in
    the teacher colour (dashed for the width family), its 95% t-interval as a band from 3 seeds
    on, and every other teacher's mean as a thin grey line to compare against. Whole epochs."""
    archs = list(dict.fromkeys(curves["arch"]))
    if sizes is None and "params" in curves and curves["params"].notna().all():
        sizes = dict(zip(curves["arch"], curves["params"].astype(float)))
    size = sizes or arch_sizes(archs)  # the registry's counts: an order, not a label
    order = sorted(archs, key=lambda a: size[a])
    fams = dict(zip(curves["arch"], teacher_families(curves, "arch")))
    means = {(a, col): seed_summary(curves[curves["arch"] == a], ["epoch"], col)
             for a in order for col in ("loss", "train_acc")}
    few = curves["seed"].nunique() < MIN_SEEDS_FOR_INTERVAL
    columns = min(len(order), TRAINING_COLUMNS)
    rows = -(-len(order) // columns)
    fig = plt.figure(figsize=(1.2 + 2.5 * columns, 1.4 + 2 * 1.75 * rows), layout="constrained")
    color = mode_color("teacher")
    for sub, (col, ylabel, what) in zip(
            fig.subfigures(2, 1),
            (("loss", "loss (nats)", "training loss (cross-entropy)"),
             ("train_acc", "accuracy", "training accuracy"))):
        axes = sub.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        for ax, arch in zip(axes.ravel(), order):
            for other in order:
                if other != arch:
                    m = means[(other, col)]
                    ax.plot(m["epoch"], m["mean"], color=REFERENCE, alpha=0.3, lw=0.7)
            summ = means[(arch, col)]
            ax.plot(summ["epoch"], summ["mean"], color=color, lw=1.8, ls=FAMILY_STYLE[fams[arch]])
            if few:  # no interval: every seed's curve instead
                for _, g in curves[curves["arch"] == arch].groupby("seed"):
                    ax.plot(g["epoch"], g[col], color=color, lw=0.8, alpha=0.5,
                            ls=FAMILY_STYLE[fams[arch]])
            ok = summ["n"] >= MIN_SEEDS_FOR_INTERVAL
            if ok.any():
                ax.fill_between(summ["epoch"][ok], summ["ci_low"][ok], summ["ci_high"][ok],
                                color=color, alpha=0.2, lw=0, gid=INTERVAL_GID)
            ax.set_title(f"{arch} ({size[arch] / 1e3:.0f}k)" if sizes else arch, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=8)
        for ax in axes.ravel()[len(order):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel, fontsize=9)
        for i, ax in enumerate(axes.ravel()[:len(order)]):
            if i + columns >= len(order):  # the lowest panel of its column
                ax.set_xlabel("epoch", fontsize=9)
                ax.tick_params(labelbottom=True)
        sub.suptitle(what, fontsize=10)
    handles = [Line2D([], [], color=color, lw=1.8, label="the panel's teacher: mean over seeds"),
               Line2D([], [], color=REFERENCE, alpha=0.3, lw=0.7,
                      label="the other teachers' means")]
    if few:
        handles.insert(1, Line2D([], [], color=color, lw=0.8, alpha=0.5,
                                 label="the panel's teacher: one seed"))
    handles += family_handles(fams.values())
    n = curves["seed"].nunique()
    what = ("line = mean, band = 95% t-interval over seeds" if n >= MIN_SEEDS_FOR_INTERVAL
            else "thick line = mean, thin = seeds; n < 3: no interval")
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle(f"Teacher training, one panel per teacher, smallest first\n"
                 f"({seed_counts(curves, 'arch')}; {what})", fontsize=10)
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


# ---------------------------------------------------------------- teachers side by side
_VARIANT_MARKERS = ["o", "s", "^", "v", "P", "X", "D", "*"]


def _category_ticks(ax, names: list[str]) -> None:
    """One tick per teacher; names turned when there are many, so they never overlap."""
    many = len(names) > 5
    ax.set_xticks(range(len(names)), names, rotation=30 if many else 0,
                  ha="right" if many else "center", fontsize=9)


def _teacher_points(frame: pd.DataFrame, hue: str, panels: list[tuple], legend: str,
                    title: str, sharey: bool = False, colors: dict | None = None,
                    markers: dict | None = None):
    """One panel per (column, y label, panel title): teachers on x by size, ``hue`` side by side.

    Every seed is a dot; the mean a larger marker, with its 95% t-interval (clipped at 0, these
    metrics are non-negative) from MIN_SEEDS_FOR_INTERVAL seeds on. ``colors``/``markers``:
    level -> colour / marker (default: the level's mode colour, diamonds).
    """
    order = list(frame.sort_values("params")["arch"].unique())
    levels = list(dict.fromkeys(frame[hue]))
    colors = colors or {level: mode_color(level) for level in levels}
    markers = markers or {}
    n_seeds = frame["seed"].nunique()
    width = 0.7 / max(len(levels), 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), sharey=sharey,
                             squeeze=False)
    for ax, (col, ylabel, panel_title) in zip(axes[0], panels):
        for j, level in enumerate(levels):
            g = frame[frame[hue] == level]
            marker = markers.get(level, "o")
            x0 = np.array([order.index(a) for a in g["arch"]]) + (j - (len(levels) - 1) / 2) * width
            ax.scatter(x0, g[col], color=colors[level], s=12, alpha=0.5, edgecolor="none",
                       marker=marker)
            for arch, gg in g.groupby("arch"):
                x = order.index(arch) + (j - (len(levels) - 1) / 2) * width
                mean, _, lo, hi, n = t_interval(gg[col])
                if n >= MIN_SEEDS_FOR_INTERVAL and np.isfinite(lo):
                    ax.plot([x, x], [max(lo, 0.0), hi], color=colors[level], lw=1.5,
                            gid=INTERVAL_GID)
                ax.scatter([x], [mean], color=colors[level], s=40,
                           marker=markers.get(level, "D"),
                           label=level if arch == g["arch"].iloc[0] else None)
        _category_ticks(ax, order)
        ax.set_xlabel("teacher (ordered by parameters)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
    legend_right(axes[0][-1], title=legend, title_fontsize=8)
    note = (f"n = {n_seeds} seed{'s' if n_seeds != 1 else ''}, {len(order)} teachers; "
            f"large marker = mean, dots = seeds"
            + (f", bar = {INTERVAL}" if n_seeds >= MIN_SEEDS_FOR_INTERVAL
               else "; n < 3: no interval"))
    fig.suptitle(f"{title} ({note})", fontsize=11)
    fig.tight_layout()
    return fig


def calibrator_comparison(methods: pd.DataFrame):
    """Test ECE and NLL of every teacher under every calibration method (95% t-intervals); each
    calibrator in the colour of its cal-<method> mode."""
    return _teacher_points(methods, "method", [("ece", "test ECE (15 bins)", ""),
                                               ("nll", "test NLL (nats)", "")], "calibration",
                           "Calibrators fitted on validation logits, scored on test")


def teacher_variants(table: pd.DataFrame):
    """Test ECE before and after temperature scaling of standard teachers and their variants:
    every variant is a teacher (the teacher colour), told apart by its marker."""
    levels = list(dict.fromkeys(table["variant"]))
    colors = {v: mode_color("teacher") for v in levels}
    markers = {v: _VARIANT_MARKERS[i % len(_VARIANT_MARKERS)] for i, v in enumerate(levels)}
    return _teacher_points(table, "variant", [("ece", "test ECE (15 bins)", "as trained"),
                                              ("ece_cal", "test ECE (15 bins)",
                                               "after temperature scaling")],
                           "trained with", "Calibration by training",
                           sharey=True, colors=colors, markers=markers)
