"""The figures' shared vocabulary: one colour per mode, reference greys, family line styles,
seed notes, size axes, legends, error bars and forest rows. Every topic module draws with these,
so that a mode looks the same in every figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .analysis import seed_summary, teacher_family
from .inference import DECIDED
from .models import ARCHS, count_params

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
    # the arms at tau 1 (kdcal.distill.split_mode), lighter hues of their modes'
    "uncalibrated@1": "#CC6677",
    "compose@1": "#88CCEE",
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


SAVE_DPI = 130  # the PNG's resolution: a figure is at most 2000 px a side at it (tests)


def save(fig, figures_dir, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.svg into the study's figures folder."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=SAVE_DPI, bbox_inches="tight")
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
        out[missing] = [teacher_family(str(a)) for a in frame.loc[missing, name]]
    bad = sorted(set(out) - set(FAMILY_STYLE))
    if bad:
        raise ValueError(f"unknown teacher family {bad[0]!r}; valid: {', '.join(FAMILY_STYLE)}")
    return out


def family_handles(families) -> list:
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


def size_axis(ax, frame: pd.DataFrame, params: str, arch: str, extra=()) -> None:
    """Log x axis with one tick per model, labelled with its name and parameter count; ``extra``
    holds (position, label) ticks left of the models (the no-KD baseline)."""
    ticks = frame[[params, arch]].drop_duplicates().sort_values(params)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    positions = [p for p, _ in extra] + list(ticks[params])
    labels = [t for _, t in extra] + size_tick_labels(ticks[params], ticks[arch])
    ax.set_xticks(positions, labels, fontsize=8)


def stagger_ticks(fig, axes) -> None:
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


def tag_intervals(container) -> None:
    for artist in (*container.lines[1], *container.lines[2]):
        artist.set_gid(INTERVAL_GID)


def seed_counts(frame: pd.DataFrame, teacher: str | None) -> str:
    """"n = 5 seeds, 7 teachers" for a title."""
    seeds = frame["seed"].nunique() if "seed" in frame else int(frame["n"].max())
    text = f"n = {seeds} seed{'s' if seeds != 1 else ''}"
    if teacher is not None and teacher in frame:
        k = frame[teacher].nunique()
        text += f", {k} teacher{'s' if k != 1 else ''}"
    return text


def seed_note(frame: pd.DataFrame, teacher: str | None = None) -> str:
    """What the markers are, with the number of seeds (and teachers): for a figure's title."""
    n = frame["seed"].nunique() if "seed" in frame else int(frame["n"].max())
    counts = seed_counts(frame, teacher)
    if n >= MIN_SEEDS_FOR_INTERVAL:
        return f"{counts}; marker and bar = mean and {INTERVAL}, dots = seeds"
    return f"{counts}; marker = mean, dots = seeds; n < 3: no interval"


def legend_right(ax, handles=None, **kw):
    """A legend to the right of the axes, outside the data."""
    kw = {"fontsize": 8, "loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0,
          **kw}
    return ax.legend(handles=handles, **kw) if handles is not None else ax.legend(**kw)


def legend_below(fig, handles, ncols: int = 3, **kw):
    """A legend under the whole figure (under the x labels), outside every axes."""
    return fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=ncols,
                      fontsize=8, frameon=False, **kw)


def errorbars(ax, summary: pd.DataFrame, x: str, color, label: str | None, marker="o",
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
    tag_intervals(bars)


def family_lines(ax, frame: pd.DataFrame, x: str, value: str, teacher: str, color,
                 label: str | None, floor: float | None = None, scale: float = 1.0,
                 marker: str = "o") -> None:
    """Means over seeds with their intervals against ``x``, one line per teacher family."""
    families = teacher_families(frame, teacher)
    for i, fam in enumerate(f for f in FAMILY_STYLE if f in set(families)):
        part = frame[families == fam]
        summ = seed_summary(part, [x], value)
        summ[x] = summ[x] * scale
        errorbars(ax, summ, x, color, label if i == 0 else None, marker=marker, floor=floor,
                  ls=FAMILY_STYLE[fam])


def seed_dots(ax, x, y, color, marker: str = "o", few: bool = False, spread: float = 0.04,
              seed: int = 0) -> None:
    """Every seed's value as a small translucent dot, jittered sideways on a log x axis (by up to
    ``spread`` of a factor, fixed by ``seed``), so that many seeds at one teacher stay apart;
    ``few`` (no interval drawn): larger and darker, the seeds being all there is to see."""
    x = np.asarray(x, dtype=float)
    jitter = np.exp(np.random.default_rng(seed).uniform(-spread, spread, len(x)))
    ax.scatter(x * jitter, np.asarray(y, dtype=float), color=color, s=16 if few else 8,
               alpha=0.75 if few else 0.35, marker=marker, edgecolor="none", zorder=1)


def significant(frame: pd.DataFrame, low: str = "ci_low", high: str = "ci_high") -> np.ndarray:
    """Filled-marker rule: the analysis's verdict when it has one (the Holm-adjusted one first:
    a table of many tests fills only what survives their number), else 'interval excludes 0'."""
    for column in ("verdict_holm", "verdict"):
        if column in frame:
            return frame[column].isin(DECIDED).to_numpy()
    return ((frame[low] > 0) | (frame[high] < 0)).to_numpy()


# ---------------------------------------------------------------- forest plots
def _no_interval(n) -> bool:
    return not (np.isfinite(n) and n >= MIN_SEEDS_FOR_INTERVAL)


def forest_rows(ax, y, mean, low, high, n, colors, sig, seeds=None, margin: float | None = None,
                below: float = -0.25, mean_size: float = 40, seed_alpha: float = 0.8):
    """Rows of a forest plot: per-seed points just below each row (``below``: the offset in y that
    puts them under the row on screen; 0 puts them on it, under the mean), the mean (filled when
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
                       alpha=seed_alpha, marker="o", edgecolor="none", zorder=3)
        ax.scatter([mean[i]], [y[i]], s=mean_size, zorder=4,
                   color=colors[i] if sig[i] else "#FFFFFF", edgecolor=colors[i])


def forest_handles(margin: float | None, unit: str, seeds: bool, decided: str,
                   seed_label: str = "one seed (below its row)") -> list:
    handles = [Line2D([], [], ls="none", marker="o", color=REFERENCE,
                      label=f"mean, filled: {decided}"),
               Line2D([], [], ls="none", marker="o", markerfacecolor="#FFFFFF", color=REFERENCE,
                      label="mean, hollow: negligible, equivalent or underpowered"),
               Line2D([], [], color=REFERENCE, lw=1.6, label=f"{INTERVAL} (n >= 3 only)")]
    if seeds:
        handles.append(Line2D([], [], ls="none", marker="o", markersize=4, color=REFERENCE,
                              label=seed_label))
    if margin is not None:
        handles.append(Patch(color=BAND, label=f"margin band ±{margin:g} {unit} (equivalence)"))
    return handles


def row_label(label: str, n) -> str:
    return f"{label}  (n < 3: no interval)" if _no_interval(n) else label


# ---------------------------------------------------------------- teacher sizes
def arch_sizes(archs) -> dict[str, float]:
    """arch -> parameters from the model registry; a name it does not know keeps its place."""
    return {a: float(count_params(a)) if a in ARCHS else float(i) for i, a in enumerate(archs)}
