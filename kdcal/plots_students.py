"""Student figures: accuracy against teacher size per mode, against teacher accuracy and ECE
(does size act through them), and the paired mode differences as forest plots. Apart from the
teachers' figures: these read the students' results."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .analysis import paired_by_seed, per_seed_means, seed_summary, size_or_accuracy
from .inference import MARGINS
from .plot_style import (BAND, FAMILY_STYLE, INTERVAL, MIN_SEEDS_FOR_INTERVAL, MODE_ORDER,
                         REFERENCE, arch_sizes, errorbars, family_handles, family_lines,
                         forest_handles, forest_rows, legend_below, mode_color, row_label,
                         seed_note, significant, size_axis, stagger_ticks, teacher_families)


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


# ---------------------------------------------------------------- size, or what size brings
_PATH_PANELS = (("log2_params", "size", "teacher parameters (log2)"),
                ("teacher_acc", "teacher accuracy", "teacher test accuracy (%)"),
                ("teacher_ece", "teacher ECE", "teacher test ECE, before calibration (%)"))
_FAMILY_MARKERS = {"depth": "o", "width": "s"}


def student_accuracy_size_or_accuracy(students: pd.DataFrame):
    """One row per distillation mode: student accuracy against teacher size, teacher accuracy
    and teacher ECE. Dots: every (teacher, seed) student at its own teacher's value; large
    markers: each teacher's means over seeds (circle depth, square width); line: the fit over the
    teacher means with one intercept per family, its slope in the panel (analysis.size_or_accuracy).
    A reader compares the rows' fits: a size slope that the teacher-accuracy panel explains as
    well (the table's 'size and accuracy' row) says size acts through accuracy."""
    table = size_or_accuracy(students)
    modes = list(dict.fromkeys(table["mode"]))
    order = [m for m in MODE_ORDER if m in modes] + [m for m in modes if m not in MODE_ORDER]
    fig, axes = plt.subplots(len(order), 3, figsize=(11, 1.2 + 2.1 * len(order)), squeeze=False,
                             sharex="col", sharey="row")  # labels on the outer panels only
    kd = students.assign(log2_params=np.log2(students["teacher_params"].astype(float)),
                         acc_pts=100 * students["acc"], teacher_acc=100 * students["teacher_acc"],
                         teacher_ece=100 * students["teacher_ece"])
    for row, mode in enumerate(order):
        g = kd[kd["mode"] == mode]
        color = mode_color(mode)
        fams = teacher_families(g, "teacher")
        means = g.groupby("teacher")[["log2_params", "teacher_acc", "teacher_ece", "acc_pts"]].mean()
        mean_fams = teacher_families(means.reset_index(), "teacher").to_numpy()
        for col, (x, model, _) in enumerate(_PATH_PANELS):
            ax = axes[row, col]
            ax.scatter(g[x], g["acc_pts"], s=6, alpha=0.3, color=color, edgecolor="none")
            for fam in FAMILY_STYLE:
                pick = mean_fams == fam
                if pick.any():
                    ax.scatter(means[x][pick], means["acc_pts"][pick], s=30, color=color,
                               marker=_FAMILY_MARKERS[fam], edgecolor=REFERENCE, linewidth=0.5,
                               zorder=3)
            fit = table[(table["mode"] == mode) & (table["model"] == model)].iloc[0]
            xs = np.linspace(means[x].min(), means[x].max(), 2)
            if not np.isfinite(fit["estimate"]):
                ax.set_title(f"{mode}: too few teachers for a fit", fontsize=8)
                continue
            for fam in set(fams):
                pick = mean_fams == fam
                if pick.any():  # the family's intercept: its means' centre, the common slope
                    cx, cy = means[x][pick].mean(), means["acc_pts"][pick].mean()
                    ax.plot(xs, cy + fit["estimate"] * (xs - cx), color=color,
                            ls=FAMILY_STYLE[fam], lw=1)
            title = (f"{mode}: {fit['estimate']:+.2f} {fit['unit']}, R\u00b2 within "
                     f"{fit['r2_within']:.2f}")
            beside = table[(table["mode"] == mode) & (table["model"] == f"size and {model[8:]}")
                           & (table["term"] == "log2_params")]
            # what is left of size once this panel's predictor is in the fit
            if col and len(beside) and np.isfinite(beside["estimate"].iloc[0]):
                title += f"\nsize beside it: {beside['estimate'].iloc[0]:+.2f} per doubling"
            ax.set_title(title, fontsize=8)
        for col, (_, _, label) in enumerate(_PATH_PANELS):
            ax = axes[row, col]
            if row == len(order) - 1:
                ax.set_xlabel(label, fontsize=8)
            if col == 0:
                ax.set_ylabel("student acc. (%)", fontsize=8)
            ax.tick_params(labelsize=7)
    n_t, n_s = int(table["teachers"].max()), int(table["seeds"].max())
    fig.suptitle("Does teacher size reach the student through teacher accuracy or calibration? "
                 f"(exploratory; {n_t} teachers x {n_s} seeds)\nsmall dots: one student each; "
                 "large markers: a teacher's mean over seeds (circle depth, square width ladder);\n"
                 "lines: the fit over teacher means with one intercept per family", fontsize=9)
    fig.tight_layout()
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


DIFFERENCE_LABEL = "difference in student test accuracy (points)"
DETAIL_ROWS = 64  # per-teacher rows (teachers x modes) a detail panel holds; more: left out
_KINDS = (("uncalibrated", "calibrated KD minus uncalibrated KD"),
          ("baseline", "KD minus the no-KD student (baseline)"))


def _teacher_order(names: list[str], students: pd.DataFrame | None) -> list[str]:
    """Teachers smallest first: by the students' ``teacher_params``, else the registry's counts."""
    size = arch_sizes(names)
    if students is not None and {"teacher", "teacher_params"} <= set(students.columns):
        known = students.dropna(subset=["teacher", "teacher_params"])
        size.update(dict(zip(known["teacher"].astype(str), known["teacher_params"].astype(float))))
    return sorted(names, key=lambda t: size[t])


def _difference_rows(ax, part: pd.DataFrame, y, students, margin, below: float,
                     mean_size: float = 40, seed_alpha: float = 0.8) -> np.ndarray:
    """Forest rows of ``part`` at ``y`` (points); returns each row's n."""
    n = part["n"].to_numpy(float) if "n" in part else np.full(len(part), np.inf)
    seeds = None
    if students is not None:
        seeds = [_difference_seeds(students, c, t) * 100
                 for c, t in zip(part["comparison"], part["teacher"])]
        if "n" not in part:
            n = np.array([len(s) for s in seeds], float)
    colors = [mode_color(c.split(" - ")[0]) for c in part["comparison"]]
    forest_rows(ax, y, part["mean"].to_numpy() * 100, part["ci_low"].to_numpy() * 100,
                part["ci_high"].to_numpy() * 100, n, colors, significant(part), seeds,
                None if margin is None else margin * 100, below=below, mean_size=mean_size,
                seed_alpha=seed_alpha)
    return n


def _summary_panel(ax, part: pd.DataFrame, students, margin) -> None:
    """One row per mode, pooled over teachers; each seed's value a dot under its row."""
    y = np.arange(len(part), dtype=float)
    n = _difference_rows(ax, part, y, students, margin, below=0.25)  # y runs downwards
    ax.set_yticks(y, [row_label(c.split(" - ")[0], k) for c, k in zip(part["comparison"], n)],
                  fontsize=8)
    ax.set_ylim(len(part) - 0.5, -0.6)
    ax.set_ylabel("KD mode", fontsize=9)


def _detail_panel(ax, part: pd.DataFrame, teachers: list[str], modes: list[str], students,
                  margin) -> None:
    """One block per teacher (smallest on top), a row per mode in it (``modes`` order), the
    seeds on their row."""
    step = 0.8 / len(modes)
    mode_of = part["comparison"].str.split(" - ").str[0]
    t_index = part["teacher"].astype(str).map(teachers.index).to_numpy()
    y = t_index + (mode_of.map(modes.index).to_numpy() - (len(modes) - 1) / 2) * step
    few = "n" in part and part["n"].max() < MIN_SEEDS_FOR_INTERVAL  # the seeds are all there is
    n = _difference_rows(ax, part, y, students, margin, below=0.0, mean_size=24,
                         seed_alpha=0.8 if few else 0.4)
    fewest = [np.min(n[t_index == i], initial=np.inf) for i in range(len(teachers))]
    ax.set_yticks(range(len(teachers)), [row_label(t, k) for t, k in zip(teachers, fewest)],
                  fontsize=8)
    ax.set_ylim(len(teachers) - 0.5, -0.5)
    ax.grid(False, axis="y")
    for boundary in np.arange(len(teachers) - 1) + 0.5:
        ax.axhline(boundary, color=BAND, lw=0.8)
    ax.set_ylabel("teacher", fontsize=9)


def _ordered_modes(comparisons) -> list[str]:
    """The modes compared (the part before " - "), in the study's order: MODE_ORDER, then the
    others as they come."""
    found = list(dict.fromkeys(c.split(" - ")[0] for c in comparisons))
    return [m for m in MODE_ORDER if m in found] + [m for m in found if m not in MODE_ORDER]


def paired_mode_differences(diffs: pd.DataFrame, students: pd.DataFrame | None = None,
                            margin: float | None = MARGINS.acc):
    """Paired student accuracy differences: calibrated KD against uncalibrated KD, and every KD
    mode against the no-KD baseline (one column each), all panels on one x range.

    Top row: one row per mode, pooled over teachers ("all": each seed's mean over teachers), each
    seed a dot under its row. Bottom row, when there are two teachers or more and the rows fit
    (DETAIL_ROWS): the same per teacher, one block per teacher with a row per mode, the seeds on
    their row. ``students`` (the student rows ``diffs`` came from) adds the seeds; ``margin``
    (accuracy, as in :func:`kdcal.analysis.mode_differences`) is drawn as a shaded band around 0,
    so "equivalent" (interval inside it) reads at a glance. The legend sits beside the top row.
    """
    kinds = []
    for ref, title in _KINDS:
        part = diffs[diffs["comparison"].str.endswith(f" - {ref}")]
        if len(part):
            modes = _ordered_modes(part["comparison"])
            order = part["comparison"].str.split(" - ").str[0].map(modes.index)
            kinds.append((part.iloc[np.argsort(order.to_numpy(), kind="stable")]
                          .reset_index(drop=True), title, modes))
    modes = _ordered_modes(diffs["comparison"])
    per_teacher = diffs[diffs["teacher"].astype(str) != "all"]
    teachers = _teacher_order(list(dict.fromkeys(per_teacher["teacher"].astype(str))), students)
    pooled = [p[p["teacher"].astype(str) == "all"].reset_index(drop=True) for p, _, _ in kinds]
    summary = any(len(p) for p in pooled)
    widest = max(len(m) for _, _, m in kinds)
    detail = (len(teachers) > 1 or not summary) and len(teachers) * widest <= DETAIL_ROWS
    rows = ([max(1.4, max(len(p) for p in pooled) * 0.34 + 0.5)] if summary else []) \
        + ([max(1.6, len(teachers) * widest * 0.15 + 0.5)] if detail else [])
    fig = plt.figure(figsize=(3.6 + 4.6 * len(kinds), 1.6 + sum(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(kinds), squeeze=False,
                        gridspec_kw={"height_ratios": rows})
    for j, (part, title, kind_modes) in enumerate(kinds):
        if summary:
            _summary_panel(axes[0, j], pooled[j], students, margin)
            axes[0, j].set_title(f"({'abcd'[j]}) {title},\npooled over teachers", fontsize=10)
        if detail:
            ax = axes[-1, j]
            _detail_panel(ax, part[part["teacher"].astype(str) != "all"].reset_index(drop=True),
                          teachers, kind_modes, students, margin)
            letter = "abcd"[(len(rows) - 1) * len(kinds) + j]
            ax.set_title(f"({letter}) {title},\nper teacher (smallest first)", fontsize=10)
    for ax in axes.ravel():
        ax.sharex(axes[0, 0])  # one x range for every panel
        ax.set_xlabel(DIFFERENCE_LABEL, fontsize=9)
    axes[0, 0].autoscale(axis="x")
    n = int(per_teacher["n"].max()) if "n" in diffs and len(per_teacher) else None
    rule = ("Holm-adjusted verdict supported or contradicted" if "verdict_holm" in diffs
            else "verdict supported or contradicted" if "verdict" in diffs
            else "95% interval excludes 0")
    counts = (f"n = {n} seeds per teacher, {len(teachers)} teachers" if n
              else f"{len(teachers)} teachers")
    interval = (f"mean and {INTERVAL}" if n and n >= MIN_SEEDS_FOR_INTERVAL
                else "mean; n < 3: no interval")
    shown = []
    if summary:
        shown.append("pooled: one value per seed, its mean over teachers")
    if detail:
        shown.append("per teacher: a block per teacher, a row per mode")
    elif len(teachers) > 1:
        shown.append(f"the {len(teachers)} x {widest} per-teacher rows are in the table")
    fig.suptitle(f"Paired differences in student test accuracy, by teacher and seed\n({counts}; "
                 f"{interval}{', dots = seeds' if students is not None else ''})\n"
                 + "; ".join(shown), fontsize=10)
    key = [Line2D([], [], ls="none", marker="o", color=mode_color(m), label=m) for m in modes]
    seeds_label = ("one seed (pooled: below its row; per teacher: on its row)"
                   if detail and summary else "one seed (on its row)" if detail
                   else "one seed (below its row)")
    marks = forest_handles(None if margin is None else margin * 100, "pt",
                           students is not None, rule, seeds_label)
    for h in marks:
        h.set_label(textwrap.fill(h.get_label(), 34))
    fig.legend(handles=key + marks, loc="outside right upper", fontsize=8, frameon=False,
               title="mode (top to bottom)", title_fontsize=8, alignment="left")
    return fig
