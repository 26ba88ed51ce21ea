"""Figure guarantees that decide what a reader can read: one colour per mode, no line across two
teacher families, seeds and margins on forest plots, no interval from fewer than 3 seeds, legends
outside the data, tick labels apart, and every figure saying what it shows."""
import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402

from kdcal import analysis, plots, regimes  # noqa: E402
from kdcal.calibrators import CALIBRATORS  # noqa: E402
from kdcal.distill import KD_MODES  # noqa: E402
from kdcal.plots import size_tick_labels  # noqa: E402

# the evidence ladder: depth (resnetN) and width (resnetNxK) teachers interleaved in size
LADDER = {"resnet8": 77754, "resnet14": 174970, "resnet20": 272186, "resnet8x2": 308074,
          "resnet32": 466618, "resnet8x4": 1226442, "resnet14x3": 1563226}
FAMILY = {a: "width" if "x" in a else "depth" for a in LADDER}
KD = ["uncalibrated", "compose", "replace", "cal-histogram"]


def test_close_sizes_get_their_labels_on_a_lower_line():
    # the evidence ladder: resnet20/resnet8x2 and resnet8x4/resnet14x3 are 1.13x and 1.27x apart
    params = [77754, 174970, 272186, 308074, 466618, 1226442, 1563226]
    names = ["resnet8", "resnet14", "resnet20", "resnet8x2", "resnet32", "resnet8x4", "resnet14x3"]
    labels = size_tick_labels(params, names)
    assert labels[0] == "resnet8\n78k" and labels[2] == "resnet20\n272k"
    lowered = [i for i, label in enumerate(labels) if label.startswith("\n\n")]
    assert lowered == [3, 6]
    assert labels[3] == "\n\nresnet8x2\n308k"


def test_a_run_of_close_sizes_alternates_lines():
    labels = size_tick_labels([100, 120, 150, 180], ["a", "b", "c", "d"])
    assert [label.startswith("\n\n") for label in labels] == [False, True, False, True]


# ---------------------------------------------------------------- synthetic study tables
def teachers_frame(seeds=3, archs=tuple(LADDER)):
    rng = np.random.default_rng(0)
    rows = [{"role": "teacher", "mode": "teacher", "arch": a, "params": LADDER[a], "seed": s,
             "acc": 0.85 + 0.01 * i + rng.normal(0, 0.003), "ece": 0.06 + rng.normal(0, 0.005),
             "nll": 0.45 + rng.normal(0, 0.02), "temperature": 1.5 + 0.05 * i + rng.normal(0, 0.05),
             "acc_cal": 0.85 + 0.01 * i, "ece_cal": 0.015 + rng.normal(0, 0.002),
             "nll_cal": 0.40 + rng.normal(0, 0.01)}
            for s in range(seeds) for i, a in enumerate(archs)]
    return pd.DataFrame(rows)


def students_frame(seeds=3, archs=tuple(LADDER), modes=tuple(KD)):
    rng = np.random.default_rng(1)
    rows = [{"role": "student", "mode": "baseline", "seed": s, "teacher": np.nan,
             "teacher_params": np.nan, "acc": 0.845 + rng.normal(0, 0.003)} for s in range(seeds)]
    for s, (i, a), m in itertools.product(range(seeds), enumerate(archs), modes):
        rows.append({"role": "student", "mode": m, "seed": s, "teacher": a,
                     "teacher_params": LADDER[a], "acc": 0.85 + 0.001 * i + rng.normal(0, 0.004)})
    return pd.DataFrame(rows)


def with_teacher_metrics(students):
    """The students' rows with their own teacher's test accuracy and ECE of the same seed."""
    t = teachers_frame(int(students["seed"].max()) + 1)
    own = t.set_index(["arch", "seed"])[["acc", "ece"]].set_axis(["teacher_acc", "teacher_ece"],
                                                                  axis=1)
    return students.join(own, on=["teacher", "seed"])


def regime_table(seeds=3):
    archs = ["resnet8", "resnet14", "resnet20"]
    frames = []
    for order, (factor, level) in enumerate([("base", ""), ("tau", "1"), ("tau", "8")]):
        cell = "base" if factor == "base" else f"{factor}={level}"
        t = teachers_frame(seeds, archs)
        st = students_frame(seeds, archs, ("uncalibrated", "compose"))
        frames.append(pd.concat([t, st]).assign(order=order, factor=factor, level=level, cell=cell))
    return pd.concat(frames, ignore_index=True)


def sweep_frame(seeds=3):
    rng = np.random.default_rng(2)
    rows = []
    for s, a in itertools.product(range(seeds), ["resnet8", "resnet14"]):
        base = {"role": "student", "seed": s, "teacher": a, "teacher_params": LADDER[a]}
        rows.append({**base, "mode": "uncalibrated", "acc": 0.8 + rng.normal(0, 0.01)})
        rows.append({**base, "mode": "compose", "temperature": 1.6, "acc": 0.81})
        for m in (0.5, 2.0):
            rows.append({**base, "mode": "temp_sweep", "teacher_temperature": m,
                         "acc": 0.79 + rng.normal(0, 0.01)})
    return analysis.temperature_sweep(pd.DataFrame(rows))


def methods_frame(seeds=3):
    t = teachers_frame(seeds, ("resnet8", "resnet14", "resnet20"))
    return pd.concat([t.assign(method=m) for m in ("uncalibrated", "temperature", "histogram")],
                     ignore_index=True)


def variants_frame(seeds=3):
    t = teachers_frame(seeds, ("resnet8", "resnet14"))
    return pd.concat([t.assign(variant=v) for v in ("standard", "label_smoothing", "mixup")],
                     ignore_index=True)


def curves_frame(seeds=3):
    rng = np.random.default_rng(3)
    rows = [{"arch": a, "seed": s, "epoch": e, "loss": 1.0 / e + rng.normal(0, 0.02),
             "train_acc": 1 - 0.5 / e} for a in ("resnet8", "resnet14", "resnet8x2")
            for s in range(seeds) for e in range(1, 6)]
    return pd.DataFrame(rows)


def reliability_panels(states=("raw", "T=1.50"), archs=("resnet14", "resnet8", "resnet20")):
    rng = np.random.default_rng(4)
    panels = []
    for a in archs:
        for state in states:
            probs = rng.dirichlet(np.full(10, 0.3), size=400)
            panels.append((probs, rng.integers(0, 10, 400), f"{a} {state}"))
    return panels


def build(name, seeds=3):
    """The figure ``name`` from synthetic tables with ``seeds`` seeds."""
    if name == "teacher_calibration_vs_size":
        return plots.teacher_calibration_vs_size(teachers_frame(seeds))
    if name == "temperature_vs_size":
        return plots.temperature_vs_size(teachers_frame(seeds))
    if name == "student_accuracy_vs_teacher_size":
        return plots.student_accuracy_vs_teacher_size(students_frame(seeds))
    if name == "student_accuracy_size_or_accuracy":
        return plots.student_accuracy_size_or_accuracy(with_teacher_metrics(students_frame(seeds)))
    if name == "paired_mode_differences":  # three teachers: rows enough, time short
        students = students_frame(seeds, ("resnet8", "resnet14", "resnet8x2"))
        return plots.paired_mode_differences(analysis.mode_differences(students, KD),
                                             students=students)
    if name == "regime_map":
        table = regime_table(seeds)
        return plots.regime_map(regimes.regime_effects(table, "compose"), "compose", table=table)
    if name == "calibrator_comparison":
        return plots.calibrator_comparison(methods_frame(seeds))
    if name == "temperature_sweep":
        return plots.temperature_sweep(sweep_frame(seeds))
    if name == "training_curves":
        return plots.training_curves(curves_frame(seeds))
    if name == "teacher_variants":
        return plots.teacher_variants(variants_frame(seeds))
    if name == "reliability_compare":
        return plots.reliability_compare(reliability_panels(), sizes=LADDER, seed=0)
    if name == "reliability_compare_calibrators":
        panels = reliability_panels(("uncalibrated", "temperature", "histogram"), ("resnet20",))
        return plots.reliability_compare(panels, sizes=LADDER, seed=0)
    raise KeyError(name)


SHOWS = {  # figure -> the modes it draws
    "teacher_calibration_vs_size": {"uncalibrated", "cal-temperature", "teacher"},
    "temperature_vs_size": {"teacher"},
    "student_accuracy_vs_teacher_size": {"baseline", *KD},
    "student_accuracy_size_or_accuracy": set(KD),
    "paired_mode_differences": set(KD),
    "regime_map": {"compose", "uncalibrated", "teacher"},
    "calibrator_comparison": {"uncalibrated", "cal-temperature", "cal-histogram"},
    "temperature_sweep": {"temp_sweep", "uncalibrated", "compose"},
    "training_curves": {"teacher"},
    "teacher_variants": {"teacher"},
    "reliability_compare": {"uncalibrated", "cal-temperature"},
    "reliability_compare_calibrators": {"uncalibrated", "cal-temperature", "cal-histogram"},
}


@pytest.fixture(scope="module")
def figures():
    plots.style()
    made = {name: build(name) for name in SHOWS}
    for fig in made.values():
        fig.canvas.draw()
    yield made
    plt.close("all")


# ---------------------------------------------------------------- helpers that read a figure
def _hex(colors) -> set[str]:
    rgba = np.atleast_2d(np.asarray(to_rgba(colors) if isinstance(colors, str) else colors))
    return {to_hex(c, keep_alpha=False) for c in rgba if len(c) and c[3] > 0}


def _artist_colors(artist) -> set[str]:
    out = set()
    if isinstance(artist, matplotlib.lines.Line2D):
        for c in (artist.get_color(), artist.get_markerfacecolor(), artist.get_markeredgecolor()):
            if isinstance(c, str) and c.lower() == "none":
                continue
            out |= _hex(c)
    elif isinstance(artist, matplotlib.collections.Collection):
        for c in (artist.get_facecolor(), artist.get_edgecolor()):
            if len(c):
                out |= _hex(c)
    elif isinstance(artist, matplotlib.patches.Patch):
        if artist.get_fill():
            out |= _hex(artist.get_facecolor())
        if artist.get_linewidth() > 0:
            out |= _hex(artist.get_edgecolor())
    return out


def figure_colors(fig) -> set[str]:
    """Every colour the figure's data artists and legend keys use."""
    out = set()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections, *ax.patches]:
            out |= _artist_colors(artist)
    for legend in legends:
        for handle in legend.legend_handles:
            out |= _artist_colors(handle)
    return out


def _ink_box(text, renderer):
    """The extent of a label's printed lines (blank leading lines, the stagger, take no ink)."""
    box = text.get_window_extent(renderer)
    lines = text.get_text().split("\n")
    blank = len(lines) - len(text.get_text().lstrip("\n").split("\n"))
    height = box.height * (len(lines) - blank) / len(lines)
    return matplotlib.transforms.Bbox.from_bounds(box.x0, box.y0, box.width, height)


def _overlap(a, b, tol=0.5) -> bool:
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def tick_boxes(ax, axis, renderer):
    lo, hi = sorted(axis.get_view_interval())
    return [(t.label1.get_text(), _ink_box(t.label1, renderer)) for t in axis.get_major_ticks()
            if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text().strip()]


def figure_text(fig) -> str:
    texts = [fig.get_suptitle(), *(t.get_text() for t in fig.texts)]
    texts += [ax.get_title() for ax in fig.axes]
    return " ".join(" ".join(texts).split())  # wrapped captions read as one line


def intervals(fig) -> list:
    """Artists that draw an interval: tagged ones, and any error bar of non-zero length."""
    found = []
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections]:
            if artist.get_gid() == plots.INTERVAL_GID:
                found.append(artist)
            elif isinstance(artist, LineCollection) and any(
                    np.ptp(np.asarray(seg), axis=0).max() > 0 for seg in artist.get_segments()):
                found.append(artist)
    return found


# ---------------------------------------------------------------- the colour map
def test_one_colour_per_mode_covers_every_mode_and_calibrator():
    names = {"baseline", "teacher", "tau_sweep", "temp_sweep", "tuned-tau", *KD_MODES,
             *(f"cal-{m}" for m in CALIBRATORS)}
    assert names <= set(plots.MODE_PALETTE)
    colors = [to_hex(c) for c in plots.MODE_PALETTE.values()]
    assert len(set(colors)) == len(colors), "two modes share a colour"
    assert not set(colors) & {to_hex(c) for c in plots.NEUTRAL_COLORS}
    for method in CALIBRATORS:  # a calibrator is drawn in its cal-<method> mode's colour
        assert plots.mode_color(method) == plots.MODE_PALETTE[f"cal-{method}"]
    assert plots.mode_color("tuned-tau uncalibrated") == plots.MODE_PALETTE["tuned-tau"]
    with pytest.raises(ValueError, match="no colour for mode 'cal-nonsense'"):
        plots.mode_color("cal-nonsense")


@pytest.mark.parametrize("name", sorted(SHOWS))
def test_every_figure_draws_each_mode_in_its_colour_and_no_other(figures, name):
    used = figure_colors(figures[name]) - {to_hex(c) for c in plots.NEUTRAL_COLORS}
    assert used == {to_hex(plots.mode_color(m)) for m in SHOWS[name]}


# ---------------------------------------------------------------- teacher families
def _line_teachers(line, params: dict, shifts=(1.0,)) -> list[str] | None:
    """The teachers a drawn line joins (x divided by the mode's side-by-side offset)."""
    x = np.asarray(line.get_xdata(), float)
    by_size = {v: k for k, v in params.items()}
    for s in shifts:
        hit = [next((a for p, a in by_size.items() if np.isclose(v / s, p)), None) for v in x]
        if all(hit):
            return hit
    return None


def _joined(fig, params, shifts=(1.0,)) -> list[set]:
    """Per drawn line of 2+ points in ``fig``: the set of teachers it joins."""
    out = []
    for ax in fig.axes:
        for line in ax.lines:
            if line.get_linestyle() in ("None", "none", "", " ") or len(line.get_xdata()) < 2:
                continue
            teachers = _line_teachers(line, params, shifts)
            if teachers is not None:
                out.append(set(teachers))
    return out


@pytest.mark.parametrize("name", ["teacher_calibration_vs_size", "temperature_vs_size",
                                  "student_accuracy_vs_teacher_size"])
def test_no_line_joins_a_depth_and_a_width_teacher(figures, name):
    shifts = [1.0] + [1.06 ** (i - (len(KD) - 1) / 2) for i in range(len(KD))]
    joined = _joined(figures[name], LADDER, shifts)
    assert len(joined) >= 2  # the lines are found (one per family at least)
    for teachers in joined:
        assert len({FAMILY[a] for a in teachers}) == 1, f"a line joins {sorted(teachers)}"
    families = {frozenset(FAMILY[a] for a in t) for t in joined}
    assert families == {frozenset({"depth"}), frozenset({"width"})}


def test_a_family_column_overrides_the_name_rule():
    teachers = teachers_frame()
    teachers["family"] = teachers["arch"].map(lambda a: "depth" if a != "resnet14x3" else "width")
    fig = plots.temperature_vs_size(teachers)
    joined = _joined(fig, LADDER)
    assert any({"resnet32", "resnet8x2", "resnet8x4"} <= t for t in joined)  # one line now
    assert all("resnet14x3" not in t for t in joined)  # alone in its family: no line
    plt.close(fig)
    teachers["family"] = "bushy"
    with pytest.raises(ValueError, match="unknown teacher family 'bushy'"):
        plots.temperature_vs_size(teachers)


# ---------------------------------------------------------------- forest plots
def _margin_bands(ax) -> list[tuple[float, float]]:
    band = to_hex(plots.BAND)
    return [tuple(np.round(p.get_extents().transformed(ax.transData.inverted()).intervalx, 6))
            for p in ax.patches if to_hex(p.get_facecolor(), keep_alpha=False) == band]


def _seed_dots(ax) -> dict[float, np.ndarray]:
    """Small scatter dots per y position (the seeds of a row), x sorted."""
    out = {}
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets) and np.all(coll.get_sizes() < 20):
            out.setdefault(round(float(offsets[0, 1]), 3), []).extend(offsets[:, 0])
    return {y: np.sort(v) for y, v in out.items()}


def test_paired_differences_draw_every_seed_and_the_margin_band():
    students = students_frame(seeds=4, archs=("resnet8", "resnet14", "resnet8x2"))
    diffs = analysis.mode_differences(students, KD)
    fig = plots.paired_mode_differences(diffs, students=students, margin=0.005)
    panels = {ax.get_title()[:3]: ax for ax in fig.axes if ax.get_yticks().size}
    assert sorted(panels) == ["(a)", "(b)", "(c)", "(d)"]  # pooled and per teacher, two columns
    for ax in panels.values():
        assert _margin_bands(ax) == [(-0.5, 0.5)]
    # (a): calibrated KD minus uncalibrated, pooled: a row per mode, its per-seed values under it
    dots = _seed_dots(panels["(a)"])
    modes = [t.get_text() for t in panels["(a)"].get_yticklabels()]
    assert modes == ["compose", "replace", "cal-histogram"]
    for i, mode in enumerate(modes):
        d = analysis.paired_by_seed(students, mode, "uncalibrated")
        np.testing.assert_allclose(dots[round(i + 0.25, 3)],
                                   np.sort(analysis.per_seed_means(d).to_numpy() * 100))
    # (c): the same per teacher, smallest on top: a block per teacher, a row per mode, seeds on it
    dots = _seed_dots(panels["(c)"])
    teachers = [t.get_text() for t in panels["(c)"].get_yticklabels()]
    assert teachers == ["resnet8", "resnet14", "resnet8x2"]
    step = 0.8 / len(modes)
    for (ti, teacher), (mi, mode) in itertools.product(enumerate(teachers), enumerate(modes)):
        d = analysis.paired_by_seed(students, mode, "uncalibrated")
        expected = d.loc[d["teacher"] == teacher, "diff"].to_numpy() * 100
        y = ti + (mi - (len(modes) - 1) / 2) * step
        np.testing.assert_allclose(dots[round(y, 3)], np.sort(expected))
    plt.close(fig)


def test_a_holm_adjusted_verdict_decides_which_markers_are_filled():
    students = students_frame(seeds=3, archs=("resnet8",))
    diffs = analysis.mode_differences(students, ["uncalibrated", "compose"])
    diffs = diffs.assign(verdict="supported", verdict_holm="underpowered")
    first = diffs.index[(diffs["comparison"] == "compose - uncalibrated")
                        & (diffs["teacher"] == "all")][0]  # panel (a), its one row
    diffs.loc[first, "verdict_holm"] = "contradicted"
    fig = plots.paired_mode_differences(diffs)  # one teacher: the pooled rows only
    means = [c for ax in fig.axes for c in ax.collections if np.all(c.get_sizes() == 40)]
    white = to_hex("#FFFFFF")
    filled = [_hex(c.get_facecolor()) != {white} for c in means]
    assert filled == [True] + [False] * ((diffs["teacher"] == "all").sum() - 1)
    legend = " ".join(t.get_text() for t in fig.legends[0].texts)
    assert "Holm-adjusted verdict" in " ".join(legend.split())  # labels wrap
    plt.close(fig)


def test_regime_map_draws_every_seed_and_the_margin_band():
    table = regime_table(seeds=4)
    effects = regimes.regime_effects(table, "compose")
    fig = plots.regime_map(effects, "compose", table=table, margin=0.005)
    ax = fig.axes[0]
    assert _margin_bands(ax) == [(-0.5, 0.5)]
    dots = _seed_dots(ax)
    e = effects.sort_values("order").reset_index(drop=True)
    for i, cell in enumerate(e["cell"]):
        g = table[(table["cell"] == cell) & (table["role"] == "student")]
        per_seed = analysis.per_seed_means(analysis.paired_by_seed(g, "compose", "uncalibrated"))
        y = len(e) - 1 - i - 0.25
        np.testing.assert_allclose(dots[round(y, 3)], np.sort(per_seed.to_numpy() * 100))
    plt.close(fig)


# ---------------------------------------------------------------- no interval from n < 3
NO_SEED_INTERVALS = {"reliability_compare", "reliability_compare_calibrators",
                     "student_accuracy_size_or_accuracy"}  # seeds drawn as dots, no interval


@pytest.mark.parametrize("name", sorted(set(SHOWS) - NO_SEED_INTERVALS))
def test_no_interval_is_drawn_from_two_seeds(figures, name):
    assert intervals(figures[name]), "with 3 seeds the figure draws intervals"
    fig = build(name, seeds=2)
    assert intervals(fig) == []
    assert "n < 3: no interval" in figure_text(fig) + "\n".join(
        t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
    plt.close(fig)


def test_forest_rows_from_two_seeds_say_so_in_their_label():
    students = students_frame(seeds=2, archs=("resnet8", "resnet14"))
    fig = plots.paired_mode_differences(analysis.mode_differences(students, KD), students=students)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert labels and all(label.endswith("(n < 3: no interval)") for label in labels)
    plt.close(fig)


# ---------------------------------------------------------------- legends and ticks
@pytest.mark.parametrize("name", sorted(SHOWS))
def test_legends_sit_outside_every_axes(figures, name):
    fig = figures[name]
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not _overlap(box, ax.get_window_extent(renderer)), \
                f"a legend covers an axes of {name}"


@pytest.mark.parametrize("name", sorted(SHOWS))
def test_tick_labels_never_overlap(figures, name):
    fig = figures[name]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = tick_boxes(ax, axis, renderer)
            for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
                assert not _overlap(a, b), f"{name}: tick labels {ta!r} and {tb!r} overlap"


def test_every_size_axis_is_labelled_by_size_tick_labels(figures):
    for name in ("teacher_calibration_vs_size", "temperature_vs_size",
                 "student_accuracy_vs_teacher_size"):
        ax = figures[name].axes[0]
        texts = [t.get_text().lstrip("\n") for t in ax.get_xticklabels()]
        assert [t for t in size_tick_labels(LADDER.values(), LADDER) if t.lstrip("\n") in texts] \
            and set(s.lstrip("\n") for s in size_tick_labels(LADDER.values(), LADDER)) <= set(texts)


# ---------------------------------------------------------------- what each figure says
@pytest.mark.parametrize("name", sorted(SHOWS))
def test_every_figure_says_how_many_seeds_and_what_the_markers_are(figures, name):
    text = figure_text(figures[name])
    if name.startswith("reliability"):
        assert "seed 0" in text and "n = 400 test images" in text
        assert "Bars: accuracy" in text and "diagonal: perfect calibration" in text
        return
    if name == "student_accuracy_size_or_accuracy":  # no interval over seeds: every seed a dot
        assert "7 teachers x 3 seeds" in text and "one student each" in text
        assert "a teacher's mean over seeds" in text and "exploratory" in text
        return
    assert "n = 3 seeds" in text
    assert "teachers" in text
    assert "95% t-interval over seeds" in text


def test_baseline_seeds_are_dots_in_the_baseline_colour_not_grey_lines(figures):
    ax = figures["student_accuracy_vs_teacher_size"].axes[0]
    base = to_hex(plots.mode_color("baseline"))
    dots = [c for c in ax.collections if _artist_colors(c) == {base}
            and len(c.get_offsets()) == 3]
    assert dots, "the baseline's three seeds are drawn as dots"
    horizontal = [ln for ln in ax.lines if len(set(np.asarray(ln.get_ydata(), float))) == 1
                  and len(ln.get_ydata()) == 2]
    assert len(horizontal) <= 1  # the baseline mean, no line per seed
    labels = [t.get_text() for t in figures["student_accuracy_vs_teacher_size"].legends[0].texts]
    assert any(label.startswith("no KD (baseline)") for label in labels)


# ---------------------------------------------------------------- reliability
def test_reliability_bins_count_every_prediction_and_average_correctly():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 0])
    b = plots.reliability_bins(probs, labels, n_bins=5)
    assert b["count"].tolist() == [0, 0, 1, 1, 2]  # 0.8 opens the last bin: closed on the left
    assert b.loc[4, "accuracy"] == 1.0 and np.isclose(b.loc[4, "confidence"], 0.85)
    assert b.loc[2, "accuracy"] == 0.0 and b.loc[3, "accuracy"] == 0.0


def test_reliability_compare_shows_smallest_and_largest_teacher_before_and_after(figures):
    fig = figures["reliability_compare"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == [
        "resnet8: uncalibrated", "resnet8: temperature-scaled (T=1.50)",
        "resnet20: uncalibrated", "resnet20: temperature-scaled (T=1.50)"]
    counts = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(counts) == 4  # a bin-count histogram under every panel
    for ax in counts:
        assert sum(p.get_height() for p in ax.patches) == 400
    assert "smallest and largest teacher" in fig.get_suptitle()


def test_reliability_compare_names_a_bad_panel_title():
    with pytest.raises(ValueError, match="'resnet8' is not '<teacher> <calibration>'"):
        plots.reliability_compare([(np.eye(2), np.array([0, 1]), "resnet8")])


def test_the_netcal_grid_still_draws():
    fig = plots.reliability_grid(reliability_panels(archs=("resnet8",)), n_bins=5)
    assert len([s for s in fig.subfigs if s.get_visible()]) == 2
    plt.close(fig)


def test_distill_calibration_figure_shows_both_image_sets_before_and_after():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(3):
        for arch, params in (("resnet8", 78_000), ("resnet20", 272_000), ("resnet56", 855_000),
                             ("resnet8x2", 300_000), ("resnet8x4", 1_200_000)):
            v = dict(ece=0.07, ece_cal=0.01, nll=0.5, nll_cal=0.4, distill_ece=0.01,
                     distill_ece_cal=0.04, distill_nll=0.05, distill_nll_cal=0.2)
            rows.append({"arch": arch, "params": params, "seed": seed,
                         **{k: x + 0.002 * rng.normal() for k, x in v.items()}})
    fig = plots.distill_calibration_vs_size(pd.DataFrame(rows))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:4] == ["test, uncalibrated", "test, temperature-scaled",
                          "students' images, uncalibrated", "students' images, temperature-scaled"]
    # each series on each panel: one line per family, never one line through both
    for ax in fig.axes[:2]:
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("-", "--")]
        assert len(lines) == 8
        for ln in lines:
            xs = set(np.round(np.asarray(ln.get_xdata(), float)))
            assert xs <= {78_000, 272_000, 855_000} or xs <= {300_000, 1_200_000}
    plt.close(fig)
