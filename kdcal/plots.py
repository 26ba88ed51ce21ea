"""Figures of the study: one colour per mode everywhere; every seed drawn as a dot.

Colours: :data:`MODE_PALETTE` is the one map from a mode (or a calibrator, drawn in its
``cal-<method>`` colour) to its colour; no figure uses a mode colour for anything else. Greys
(:data:`REFERENCE`, :data:`BAND`) are for references only: zero lines, the diagonal, margin bands.
Lines over teacher size join teachers of one family only (``depth`` solid, ``width`` dashed).
Error bars are 95% t-intervals over seeds, drawn only from 3 seeds on (with 2, a t-interval is
wider than the data and says little; the dots say more). Intervals of non-negative metrics (ECE,
NLL) are clipped at 0. Titles say what the markers are, over how many seeds and teachers;
legends sit outside the data.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .analysis import paired_by_seed, per_seed_means, seed_summary, t_interval
from .inference import DECIDED, MARGINS
from .metrics import ece

MODE_ORDER = ["baseline", "uncalibrated", "compose", "replace"]
# The one colour map of the study (Okabe-Ito and Tol's colour-blind safe hues). A calibrator in a
# calibrator figure takes the colour of its cal-<method> mode; ``teacher`` is the teacher itself.
MODE_PALETTE: dict[str, str] = {
    "teacher": "#222222",
    "baseline": "#8C564B",
    "uncalibrated": "#D55E00",
    "compose": "#0072B2",
    "replace": "#009E73",
    "cal-temperature": "#56B4E9",
    "cal-vector": "#CC79A7",
    "cal-matrix": "#882255",
    "cal-histogram": "#999933",
    "cal-isotonic": "#332288",
    "cal-beta": "#44AA99",
    "tau_sweep": "#E69F00",
    "temp_sweep": "#9467BD",
    "tuned-tau": "#A6761D",
}
# Other names of the same things: a raw teacher is uncalibrated, a temperature-scaled one is
# cal-temperature; analysis labels the tuned-tau control "tuned-tau uncalibrated".
_ALIASES = {"before": "uncalibrated", "raw": "uncalibrated", "after": "cal-temperature",
            "tuned-tau uncalibrated": "tuned-tau"}
REFERENCE = "#4D4D4D"  # zero lines, the diagonal of perfect calibration, legend keys of shapes
BAND = "#DDDDDD"  # the margin band
NEUTRAL_COLORS = (REFERENCE, BAND, "#FFFFFF")  # every colour a figure may use beside the modes'

FAMILY_STYLE = {"depth": "-", "width": "--"}
FAMILY_NAMES = {"depth": "depth ladder (resnetN)", "width": "width ladder (resnetNxK)"}


def mode_color(mode: str) -> str:
    """The colour of a mode (a calibrator method: its cal-<method> mode) in every figure."""
    key = _ALIASES.get(mode, mode)
    if key not in MODE_PALETTE and f"cal-{key}" in MODE_PALETTE:
        key = f"cal-{key}"
    if key not in MODE_PALETTE:
        raise ValueError(f"no colour for mode {mode!r}; known: {', '.join(MODE_PALETTE)}")
    return MODE_PALETTE[key]


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


# ---------------------------------------------------------------- teacher families
def teacher_families(frame: pd.DataFrame, name: str) -> pd.Series:
    """The family (``depth``/``width``) of each row's teacher: the ``family`` column where the
    results carry one, else the study's one name rule, :func:`kdcal.analysis.teacher_family`."""
    given = frame["family"] if "family" in frame else pd.Series(np.nan, index=frame.index)
    missing = given.isna()
    out = given.astype(object).copy()
    if missing.any():
        from .analysis import teacher_family

        out[missing] = [teacher_family(str(a)) for a in frame.loc[missing, name]]
    bad = sorted(set(out) - set(FAMILY_STYLE))
    if bad:
        raise ValueError(f"unknown teacher family {bad[0]!r}; valid: {', '.join(FAMILY_STYLE)}")
    return out


def _family_handles(families) -> list:
    """Legend keys of the line styles, for the families present."""
    return [Line2D([], [], color=REFERENCE, ls=FAMILY_STYLE[f], label=f"{FAMILY_NAMES[f]}: "
                   + ("solid line" if FAMILY_STYLE[f] == "-" else "dashed line"))
            for f in FAMILY_STYLE if f in set(families)]


# ---------------------------------------------------------------- axes and notes
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


def _size_axis(ax, frame: pd.DataFrame, params: str, arch: str, extra=()) -> None:
    """Log x axis with one tick per model, labelled with its name and parameter count; ``extra``
    holds (position, label) ticks left of the models (the no-KD baseline)."""
    ticks = frame[[params, arch]].drop_duplicates().sort_values(params)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    positions = [p for p, _ in extra] + list(ticks[params])
    labels = [t for _, t in extra] + size_tick_labels(ticks[params], ticks[arch])
    ax.set_xticks(positions, labels, fontsize=8)


def _stagger_ticks(fig, axes) -> None:
    """Lay ``fig`` out, then move every x tick label that would touch its neighbour on screen to
    the first line (two text lines apart) where it is clear: :func:`size_tick_labels` guesses from
    the sizes, this measures, so no two labels overlap on a narrow axis either."""
    for ax in axes:  # measure every label on the first line
        ax.set_xticks(ax.get_xticks(), [t.get_text().lstrip("\n") for t in ax.get_xticklabels()])
    fig.tight_layout()
    fig.canvas.draw()  # places the tick labels where the laid-out axes put them
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        labels = ax.get_xticklabels()
        # one em of space between two labels on one line, so that two names never read as one
        pad = labels[0].get_fontsize() * fig.dpi / 72 if labels else 0.0
        boxes = [t.get_window_extent(renderer) for t in labels]
        texts = [t.get_text() for t in labels]
        ends: list[float] = []  # right end of the last label on each line
        for i in sorted(range(len(labels)), key=lambda i: boxes[i].x0 + boxes[i].x1):  # by tick
            if not texts[i].strip():
                continue
            level = next((k for k, end in enumerate(ends) if boxes[i].x0 > end + pad), len(ends))
            ends[level:level + 1] = [boxes[i].x1]
            texts[i] = "\n\n" * level + texts[i]
        ax.set_xticks(ax.get_xticks(), texts)
    fig.tight_layout()


MIN_SEEDS_FOR_INTERVAL = 3  # below this, figures show the seeds' dots and their mean only
INTERVAL = "95% t-interval over seeds"
INTERVAL_GID = "interval"  # every artist that draws an interval carries it (tests find them)


def _tag_intervals(container) -> None:
    for artist in (*container.lines[1], *container.lines[2]):
        artist.set_gid(INTERVAL_GID)


def _counts(frame: pd.DataFrame, teacher: str | None) -> str:
    """"n = 5 seeds, 7 teachers" for a title."""
    seeds = frame["seed"].nunique() if "seed" in frame else int(frame["n"].max())
    text = f"n = {seeds} seed{'s' if seeds != 1 else ''}"
    if teacher is not None and teacher in frame:
        k = frame[teacher].nunique()
        text += f", {k} teacher{'s' if k != 1 else ''}"
    return text


def _seed_note(frame: pd.DataFrame, teacher: str | None = None) -> str:
    """What the markers are, with the number of seeds (and teachers): for a figure's title."""
    n = frame["seed"].nunique() if "seed" in frame else int(frame["n"].max())
    counts = _counts(frame, teacher)
    if n >= MIN_SEEDS_FOR_INTERVAL:
        return f"{counts}; marker and bar = mean and {INTERVAL}, dots = seeds"
    return f"{counts}; marker = mean, dots = seeds; n < 3: no interval"


def _legend_right(ax, handles=None, **kw):
    """A legend to the right of the axes, outside the data."""
    kw = {"fontsize": 8, "loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0,
          **kw}
    return ax.legend(handles=handles, **kw) if handles is not None else ax.legend(**kw)


def _legend_below(fig, handles, ncols: int = 3, **kw):
    """A legend under the whole figure (under the x labels), outside every axes."""
    return fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=ncols,
                      fontsize=8, frameon=False, **kw)


def _errorbars(ax, summary: pd.DataFrame, x: str, color, label: str | None, marker="o",
               floor: float | None = None, ls: str = "-"):
    """Mean line with 95% intervals; intervals dropped below MIN_SEEDS_FOR_INTERVAL, clipped at ``floor``."""
    s = summary.sort_values(x)
    lo, hi = s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float)
    if floor is not None:
        lo = np.maximum(lo, floor)
    if "n" in s:
        few = s["n"].to_numpy() < MIN_SEEDS_FOR_INTERVAL
        lo, hi = np.where(few, np.nan, lo), np.where(few, np.nan, hi)
    yerr = np.nan_to_num(np.vstack([s["mean"] - lo, hi - s["mean"]]))
    if not yerr.any():
        yerr = None  # no interval at all: no zero-length bars either
    bars = ax.errorbar(s[x], s["mean"], yerr=yerr, color=color, marker=marker, capsize=3,
                       label=label, ls=ls)
    _tag_intervals(bars)


def _family_lines(ax, frame: pd.DataFrame, x: str, value: str, teacher: str, color,
                  label: str | None, floor: float | None = None, scale: float = 1.0,
                  marker: str = "o") -> None:
    """Means over seeds with their intervals against ``x``, one line per teacher family."""
    families = teacher_families(frame, teacher)
    for i, fam in enumerate(f for f in FAMILY_STYLE if f in set(families)):
        part = frame[families == fam]
        summ = seed_summary(part, [x], value)
        summ[x] = summ[x] * scale
        _errorbars(ax, summ, x, color, label if i == 0 else None, marker=marker, floor=floor,
                   ls=FAMILY_STYLE[fam])


def significant(frame: pd.DataFrame, low: str = "ci_low", high: str = "ci_high") -> np.ndarray:
    """Filled-marker rule: the analysis's verdict when it has one (the Holm-adjusted one first:
    a table of many tests fills only what survives their number), else 'interval excludes 0'."""
    for column in ("verdict_holm", "verdict"):
        if column in frame:
            return frame[column].isin(DECIDED).to_numpy()
    return ((frame[low] > 0) | (frame[high] < 0)).to_numpy()


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
            _family_lines(ax, teachers, "params", col, "arch", mode_color(phase), labels[phase],
                          floor=None if metric == "acc" else 0.0)
            ax.scatter(teachers["params"], teachers[col], color=mode_color(phase), s=10, alpha=0.4)
        _size_axis(ax, teachers, "params", "arch")
        ax.set_xlabel("teacher parameters (log scale)")
        ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=mode_color(phase), marker="o", label=labels[phase])
               for phase in ("uncalibrated", "cal-temperature", "teacher")]
    fig.suptitle(f"Teachers: calibration against size ({_seed_note(teachers, 'arch')})",
                 fontsize=11)
    _stagger_ticks(fig, axes)
    _legend_below(fig, handles + _family_handles(teacher_families(teachers, "arch")), ncols=3)
    return fig


def distill_calibration_vs_size(teachers: pd.DataFrame):
    """The mechanism: each teacher's ECE and NLL on the images its students learn from
    (``distill_*``: its own training images, or the transfer split), before and after temperature
    scaling, beside the same on the test set. Calibration can only help a student where the
    targets it sees are over-confident."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4))
    series = (("uncalibrated", "", "o", "test, uncalibrated"),
              ("cal-temperature", "_cal", "o", "test, temperature-scaled"),
              ("uncalibrated", "distill_", "^", "students' images, uncalibrated"),
              ("cal-temperature", "distill_cal", "^", "students' images, temperature-scaled"))
    handles = []
    for ax, (metric, ylabel) in zip(axes, (("ece", "ECE (15 bins)"), ("nll", "NLL (nats)"))):
        for phase, kind, marker, label in series:
            col = (f"{metric}{kind}" if not kind.startswith("distill")
                   else f"distill_{metric}{'_cal' if kind == 'distill_cal' else ''}")
            if col not in teachers or teachers[col].isna().all():
                continue
            _family_lines(ax, teachers, "params", col, "arch", mode_color(phase), label,
                          floor=0.0, marker=marker)
            if ax is axes[0]:
                handles.append(Line2D([], [], color=mode_color(phase), marker=marker, label=label))
        _size_axis(ax, teachers, "params", "arch")
        ax.set_xlabel("teacher parameters (log scale)")
        ax.set_ylabel(ylabel)
    fig.suptitle("Teachers' calibration where the students learn (triangles) and on the test set "
                 f"(circles) ({_seed_note(teachers, 'arch')})", fontsize=11)
    _stagger_ticks(fig, axes)
    _legend_below(fig, handles + _family_handles(teacher_families(teachers, "arch")), ncols=3)
    return fig


def temperature_vs_size(teachers: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    color = mode_color("teacher")
    _family_lines(ax, teachers, "params", "temperature", "arch", color, "fitted T (mean)",
                  floor=0.0)
    ax.scatter(teachers["params"], teachers["temperature"], color=color, s=10, alpha=0.4,
               label="fitted T (one seed)")
    ax.axhline(1.0, color=REFERENCE, lw=1, ls=":", label="T = 1 (no change)")
    _size_axis(ax, teachers, "params", "arch")
    ax.set_xlabel("teacher parameters (log scale)")
    ax.set_ylabel("fitted temperature T")
    ax.set_title("Temperature fitted on validation NLL (unitless)\n"
                 f"({_seed_note(teachers, 'arch')})", fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    _stagger_ticks(fig, [ax])
    _legend_below(fig, handles + _family_handles(teacher_families(teachers, "arch")), ncols=2)
    return fig


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
        _family_lines(ax, g, "teacher_params", "acc", "teacher", mode_color(mode), f"KD, {mode}",
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
        _errorbars(ax, summ, "x", color, f"no KD (baseline): mean of {base['seed'].nunique()} "
                   "seeds, dotted across", marker="s")
        ax.scatter(np.full(len(base), x0), base["acc"], color=color, s=18, alpha=0.7,
                   edgecolor="none", zorder=3, label="no KD (baseline): one seed")
        extra_ticks = [(x0, "no KD\n(baseline)")]
    _size_axis(ax, kd, "teacher_params", "teacher", extra=extra_ticks)
    ax.set_xlabel("teacher parameters (log scale; modes offset side by side)")
    ax.set_ylabel("student test accuracy")
    ax.set_title(f"Students: test accuracy against teacher size\n({_seed_note(kd, 'teacher')})",
                 fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    first = sorted(range(len(labels)), key=lambda i: labels[i].startswith("no KD"))  # KD first
    _stagger_ticks(fig, [ax])
    _legend_below(fig, [handles[i] for i in first]
                  + _family_handles(teacher_families(kd, "teacher")), ncols=3)
    return fig


# ---------------------------------------------------------------- forest plots
def _no_interval(n) -> bool:
    return not (np.isfinite(n) and n >= MIN_SEEDS_FOR_INTERVAL)


def _forest_rows(ax, y, mean, low, high, n, colors, sig, seeds=None, margin: float | None = None,
                 below: float = -0.25):
    """Rows of a forest plot: per-seed points just below each row (``below``: the offset in y that
    puts them under the row on screen), the mean (filled when
    decided), its 95% interval from MIN_SEEDS_FOR_INTERVAL seeds on, and the margin band."""
    if margin is not None:
        ax.axvspan(-margin, margin, color=BAND, zorder=0, lw=0)
    ax.axvline(0, color=REFERENCE, lw=1)
    for i in range(len(y)):
        if not _no_interval(n[i]) and np.isfinite(low[i]) and np.isfinite(high[i]):
            ax.plot([low[i], high[i]], [y[i], y[i]], color=colors[i], lw=1.6, zorder=2,
                    gid=INTERVAL_GID)
        if seeds is not None and len(seeds[i]):
            ax.scatter(seeds[i], np.full(len(seeds[i]), y[i] + below), color=colors[i], s=12,
                       alpha=0.8, marker="o", edgecolor="none", zorder=3)
        ax.scatter([mean[i]], [y[i]], s=40, zorder=4, color=colors[i] if sig[i] else "#FFFFFF",
                   edgecolor=colors[i])


def _forest_handles(margin: float | None, unit: str, seeds: bool, decided: str) -> list:
    handles = [Line2D([], [], ls="none", marker="o", color=REFERENCE,
                      label=f"mean, filled: {decided}"),
               Line2D([], [], ls="none", marker="o", markerfacecolor="#FFFFFF", color=REFERENCE,
                      label="mean, hollow: equivalent or underpowered"),
               Line2D([], [], color=REFERENCE, lw=1.6, label=f"{INTERVAL} (n >= 3 only)")]
    if seeds:
        handles.append(Line2D([], [], ls="none", marker="o", markersize=4, color=REFERENCE,
                              label="one seed (below its row)"))
    if margin is not None:
        handles.append(Patch(color=BAND, label=f"margin band ±{margin:g} {unit} (equivalence)"))
    return handles


def _row_label(label: str, n) -> str:
    return f"{label}  (n < 3: no interval)" if _no_interval(n) else label


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
    _forest_rows(ax, y, diffs["mean"].to_numpy() * 100, diffs["ci_low"].to_numpy() * 100,
                 diffs["ci_high"].to_numpy() * 100, n, colors, significant(diffs), seeds,
                 None if margin is None else margin * 100, below=0.25)  # y runs downwards
    labels = diffs["comparison"].str.split(" - ").str[0] + "  |  " + diffs["teacher"].astype(str)
    ax.set_yticks(y, [_row_label(lab, k) for lab, k in zip(labels, n)], fontsize=8)
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
    _legend_below(fig, _forest_handles(None if margin is None else margin * 100, "pt",
                                       students is not None, rule), ncols=3)
    return fig


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
    95% interval over seeds, or the size slope's permutation interval over teachers, excludes 0.
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
    _forest_rows(axes[0], y, e["effect"].to_numpy(), e["effect_low"].to_numpy(),
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
    axes[0].set_yticks(y, [_row_label(c, k) for c, k in zip(e["cell"], n)], fontsize=8)
    axes[0].set_ylim(-0.75, len(e) - 0.5)
    for ax in axes:  # separate the factors
        for boundary in np.flatnonzero(e["factor"].to_numpy()[1:] != e["factor"].to_numpy()[:-1]):
            ax.axhline(y[boundary] - 0.5, color=BAND, lw=0.8)
    handles = [Line2D([], [], ls="none", marker="o", color=mode_color("uncalibrated"),
                      label="(b) uncalibrated KD"),
               Line2D([], [], ls="none", marker="o", color=color, label=f"(a, b) {mode} KD"),
               Line2D([], [], ls="none", marker="o", color=mode_color("teacher"),
                      label="(c) teachers")]
    handles += _forest_handles(None if margin is None else margin * 100, "pt", seeds is not None,
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


# ---------------------------------------------------------------- training, images
def _teacher_alpha(order: list[str]) -> dict[str, float]:
    """Bigger teacher, darker line: opacity of the teacher colour by rank of size."""
    k = len(order)
    return {a: 0.35 + 0.65 * (i / (k - 1) if k > 1 else 1.0) for i, a in enumerate(order)}


def training_curves(curves: pd.DataFrame, sizes: dict | None = None):
    """Loss and training accuracy per epoch of every teacher: the teacher colour, darker for a
    bigger teacher (``sizes``: arch -> parameters; else the registry's counts), dashed for the
    width family; the mean over seeds, with its 95% t-interval as a band from 3 seeds on."""
    archs = list(dict.fromkeys(curves["arch"]))
    size = sizes or _arch_sizes(archs)
    order = sorted(archs, key=lambda a: size[a])
    alpha = _teacher_alpha(order)
    fams = dict(zip(curves["arch"], teacher_families(curves, "arch")))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    color = mode_color("teacher")
    for ax, col, ylabel in zip(axes, ("loss", "train_acc"),
                               ("training loss (cross-entropy, nats)", "training accuracy")):
        for arch in order:
            summ = seed_summary(curves[curves["arch"] == arch], ["epoch"], col)
            ax.plot(summ["epoch"], summ["mean"], color=color, alpha=alpha[arch],
                    ls=FAMILY_STYLE[fams[arch]], label=arch)
            ok = summ["n"] >= MIN_SEEDS_FOR_INTERVAL
            if ok.any():
                ax.fill_between(summ["epoch"][ok], summ["ci_low"][ok], summ["ci_high"][ok],
                                color=color, alpha=0.12 * alpha[arch], lw=0, gid=INTERVAL_GID)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    handles, _ = axes[1].get_legend_handles_labels()
    _legend_right(axes[1], handles + _family_handles(fams.values()),
                  title="teacher (darker = bigger)", title_fontsize=8)
    n = curves["seed"].nunique()
    what = ("line = mean, band = 95% t-interval over seeds" if n >= MIN_SEEDS_FOR_INTERVAL
            else "line = mean over seeds; n < 3: no interval")
    fig.suptitle(f"Teacher training ({_counts(curves, 'arch')}; {what})", fontsize=10)
    fig.tight_layout()
    return fig


def _arch_sizes(archs) -> dict[str, float]:
    from .models import ARCHS, count_params

    return {a: float(count_params(a)) if a in ARCHS else float(i) for i, a in enumerate(archs)}


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


# ---------------------------------------------------------------- reliability
def reliability_grid(panels: list[tuple], n_bins: int = 15, columns: int = 2):
    """netcal reliability diagrams side by side; ``panels`` holds (probs, labels, title).

    Every panel, drawn as netcal draws it; :func:`reliability_compare` is the figure for readers.
    """
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


def _panel_state(title: str) -> tuple[str, str, str]:
    """(teacher, state label, mode) of a panel title of :func:`kdcal.study.reliability_panels`
    ("resnet8 raw", "resnet8 T=1.47") or :func:`kdcal.study.calibrator_panels`
    ("resnet8 vector")."""
    parts = str(title).split(maxsplit=1)
    if len(parts) != 2:
        raise ValueError(f"reliability panel title {title!r} is not '<teacher> <calibration>'")
    teacher, state = parts
    if state.startswith("T="):
        return teacher, f"temperature-scaled ({state})", "cal-temperature"
    mode = "uncalibrated" if state in ("raw", "uncalibrated") else state
    mode_color(mode)  # an unknown calibration names itself here
    label = "uncalibrated" if mode == "uncalibrated" else state
    return teacher, label, mode


def reliability_bins(probs, labels, n_bins: int = 15) -> pd.DataFrame:
    """Per equal-width confidence bin (top-class probability): predictions, accuracy, confidence.

    Bins are closed on the left, the last one also on the right, as :func:`kdcal.metrics.ece`
    bins them."""
    p, y = np.asarray(probs, dtype=float), np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"probs [n, classes] and labels [n] must have the same n > 0, got "
                         f"{p.shape} and {y.shape}")
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "count": count, "accuracy": acc,
                         "confidence": mean_conf})


def _reliability_cell(fig, spec, probs, labels, n_bins: int, color, title: str,
                      first_column: bool):
    """One panel: accuracy per confidence bin against the diagonal; under it, the bin counts."""
    inner = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    rel = fig.add_subplot(inner[0])
    hist = fig.add_subplot(inner[1], sharex=rel)
    b = reliability_bins(probs, labels, n_bins)
    width = 1.0 / n_bins
    full = b["count"] > 0
    rel.bar(b["low"][full], b["accuracy"][full], width=width, align="edge", color=color,
            edgecolor="#FFFFFF", lw=0.5)
    rel.plot([0, 1], [0, 1], color=REFERENCE, ls="--", lw=1)
    rel.set_title(f"{title}\nECE {ece(probs, labels, n_bins):.3f}", fontsize=9)
    rel.set_xlim(0, 1)
    rel.set_ylim(0, 1)
    rel.tick_params(labelbottom=False, labelsize=8)
    hist.bar(b["low"], b["count"], width=width, align="edge", color=color, edgecolor="#FFFFFF",
             lw=0.5)
    hist.set_yscale("log")
    hist.set_ylim(0.8, max(2.0, b["count"].max() * 2.5))
    hist.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    hist.tick_params(labelsize=8)
    hist.set_xlabel("confidence", fontsize=8)
    if first_column:
        rel.set_ylabel("accuracy in the bin", fontsize=8)
        hist.set_ylabel("count\n(log)", fontsize=8)
    else:
        rel.tick_params(labelleft=False)
        hist.tick_params(labelleft=False)


def reliability_compare(panels: list[tuple], n_bins: int = 15, sizes: dict | None = None,
                        seed: int | None = None, columns: int = 4):
    """What a reader compares: the smallest and the largest teacher, before and after calibration.

    ``panels`` holds (probs, labels, title) as :func:`kdcal.study.reliability_panels` (titles
    "<arch> raw", "<arch> T=...") or :func:`kdcal.study.calibrator_panels` ("<arch> <method>")
    return them. With more than two teachers only the smallest and the largest are kept (by
    ``sizes``, arch -> parameters, else the registry's counts): one row each, one column per
    calibration; one teacher's calibrators wrap after ``columns`` panels. Under each panel, the
    number of test predictions in every bin; the caption says what bars and diagonal are.
    """
    if not panels:
        raise ValueError("reliability_compare needs at least one (probs, labels, title) panel")
    states = [(*_panel_state(title), probs, labels) for probs, labels, title in panels]
    teachers = list(dict.fromkeys(s[0] for s in states))
    size = sizes or _arch_sizes(teachers)
    missing = [t for t in teachers if t not in size]
    if missing:
        raise ValueError(f"no size for teacher {missing[0]!r} in sizes")
    by_size = sorted(teachers, key=lambda t: size[t])
    shown = by_size if len(by_size) <= 2 else [by_size[0], by_size[-1]]
    rows = [[s for s in states if s[0] == t] for t in shown]
    if len(rows) == 1 and len(rows[0]) > columns:
        rows = [rows[0][i:i + columns] for i in range(0, len(rows[0]), columns)]
    ncols = max(len(r) for r in rows)
    fig = plt.figure(figsize=(3.1 * ncols + 0.6, 3.9 * len(rows) + 1.2), layout="constrained")
    grid = fig.add_gridspec(len(rows), ncols)
    for i, row in enumerate(rows):
        for j, (teacher, label, mode, probs, labels) in enumerate(row):
            _reliability_cell(fig, grid[i, j], probs, labels, n_bins, mode_color(mode),
                              f"{teacher}: {label}", j == 0)
    n_test = len(states[0][4])
    which = ("smallest and largest teacher" if len(shown) == 2 and len(teachers) > 2
             else "teachers" if len(shown) > 1 else "one teacher")
    fig.suptitle(f"Reliability before and after calibration: {which} "
                 f"({'seed ' + str(seed) if seed is not None else 'one seed'}, "
                 f"n = {n_test} test images; one seed: no interval)", fontsize=10)
    caption = (f"Bars: accuracy of the test predictions in each of {n_bins} equal-width bins of "
               "confidence (top-class probability), in the colour of the calibration. Dashed "
               "diagonal: perfect calibration (accuracy = confidence); a bar below it is "
               "over-confident, above it under-confident. Under each panel: the number of "
               "predictions per bin (log scale). ECE as in the tables (kdcal.metrics.ece).")
    fig.text(0.5, 0.0, textwrap.fill(caption, int(17 * fig.get_figwidth())), ha="center",
             va="top", fontsize=8)
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
    _legend_right(axes[0][-1], title=legend, title_fontsize=8)
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


def temperature_sweep(sweep: pd.DataFrame):
    """Per teacher: student accuracy against the teacher's temperature; the fitted T as a star."""
    teachers = list(dict.fromkeys(sweep.sort_values("teacher_params")["teacher"]))
    fig, axes = plt.subplots(1, len(teachers), figsize=(3.6 * len(teachers), 3.6), sharey=True,
                             squeeze=False)
    for ax, teacher in zip(axes[0], teachers):
        g = sweep[sweep["teacher"] == teacher]
        line = g[g["point"] == "sweep"].sort_values("teacher_temperature")
        _errorbars(ax, line, "teacher_temperature", mode_color("temp_sweep"),
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
            _tag_intervals(ax.errorbar(fitted["teacher_temperature"], fitted["mean"],
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
    _legend_below(fig, handles, ncols=3)
    n = int(sweep["n"].max())
    what = (f"mean and {INTERVAL}" if n >= MIN_SEEDS_FOR_INTERVAL
            else "one student per point; n < 3: no interval" if n == 1
            else "mean over seeds; n < 3: no interval")
    fig.suptitle("Does the student's optimum sit at the calibrated temperature?\n"
                 f"(n = {n} seed{'s' if n != 1 else ''} per point, {len(teachers)} teachers; "
                 f"{what})", fontsize=10)
    fig.tight_layout()
    return fig


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
