"""Reliability diagrams of teachers before and after calibration: netcal's own, and the
binned figure for readers. Apart because they draw predictions, not tables of results."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .analysis import teacher_family
from .metrics import ece
from .plot_style import FAMILY_STYLE, REFERENCE, arch_sizes, mode_color


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


def reliability_teachers(sizes: dict, families: dict | None = None) -> list[str]:
    """The teachers a reliability figure compares, smallest first: the smallest and the largest
    of one ladder, the one with the most teachers (depth first on a tie).

    Within one ladder only size changes (depth in resnetN, width in resnetNxK), so its two ends
    show the size effect; the largest teacher of all may sit on another ladder (resnet8x4 beside
    resnet8..56) and compare an architecture as much as a size. ``sizes``: teacher ->
    parameters; ``families``: teacher -> ``depth``/``width`` (else the name rule,
    :func:`kdcal.analysis.teacher_family`). Two teachers or fewer: all of them.
    """
    names = sorted(sizes, key=lambda t: sizes[t])
    if len(names) <= 2:
        return names
    family = {t: (families or {}).get(t) or teacher_family(t) for t in names}
    ladders = {f: [t for t in names if family[t] == f] for f in dict.fromkeys(
        [*FAMILY_STYLE, *family.values()])}
    ladder = max(ladders.values(), key=len)  # the first of the longest: depth on a tie
    return [ladder[0], ladder[-1]] if len(ladder) >= 2 else [names[0], names[-1]]


def _which_teachers(shown: list[str], teachers: list[str], families: dict | None) -> str:
    """What the title says about the teachers shown, and why those."""
    if len(teachers) == 1:
        return "one teacher"
    if len(teachers) <= 2:
        return "both teachers"
    family = {t: (families or {}).get(t) or teacher_family(t) for t in teachers}
    ladder = family[shown[0]]
    if family[shown[-1]] != ladder:
        return f"smallest and largest teacher ({shown[0]}, {shown[-1]})"
    others = sorted({family[t] for t in teachers} - {ladder})
    left = f"; the {' and '.join(others)} ladder not shown" if others else ""
    changes = "depth" if ladder == "depth" else "width" if ladder == "width" else "size"
    return (f"the {ladder} ladder's smallest and largest teacher ({shown[0]}, {shown[-1]}): "
            f"within one ladder only {changes} changes{left}")


def reliability_compare(panels: list[tuple], n_bins: int = 15, sizes: dict | None = None,
                        seed: int | None = None, columns: int = 4, families: dict | None = None):
    """What a reader compares: the two ends of a teacher ladder, before and after calibration.

    ``panels`` holds (probs, labels, title) as :func:`kdcal.study.reliability_panels` (titles
    "<arch> raw", "<arch> T=...") or :func:`kdcal.study.calibrator_panels` ("<arch> <method>")
    return them. With more than two teachers only those :func:`reliability_teachers` picks are
    kept (by ``sizes``, arch -> parameters, else the registry's counts, and ``families``): one
    row each, one column per calibration; one teacher's calibrators wrap after ``columns``
    panels. Under each panel, the number of test predictions in every bin; the caption says what
    bars and diagonal are.
    """
    if not panels:
        raise ValueError("reliability_compare needs at least one (probs, labels, title) panel")
    states = [(*_panel_state(title), probs, labels) for probs, labels, title in panels]
    teachers = list(dict.fromkeys(s[0] for s in states))
    size = sizes or arch_sizes(teachers)
    missing = [t for t in teachers if t not in size]
    if missing:
        raise ValueError(f"no size for teacher {missing[0]!r} in sizes")
    shown = reliability_teachers({t: size[t] for t in teachers}, families)
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
    which = _which_teachers(shown, teachers, families)
    title = (f"Reliability before and after calibration: {which} "
             f"({'seed ' + str(seed) if seed is not None else 'one seed'}, "
             f"n = {n_test} test images; one seed: no interval)")
    fig.suptitle(textwrap.fill(title, int(15 * fig.get_figwidth())), fontsize=10)
    caption = (f"Bars: accuracy of the test predictions in each of {n_bins} equal-width bins of "
               "confidence (top-class probability), in the colour of the calibration. Dashed "
               "diagonal: perfect calibration (accuracy = confidence); a bar below it is "
               "over-confident, above it under-confident. Under each panel: the number of "
               "predictions per bin (log scale). ECE as in the tables (kdcal.metrics.ece).")
    fig.text(0.5, 0.0, textwrap.fill(caption, int(17 * fig.get_figwidth())), ha="center",
             va="top", fontsize=8)
    return fig
