"""Every figure function, drawn on small synthetic tables and on the committed studies' results
(outputs/evidence-transfer: 14 seeds, 8 teachers, 5 modes; outputs/tutorial: 2 teachers, 2 seeds;
the regimes of outputs/tutorial and outputs/regimes-quick), passes the checks a reader relies on:

- no empty panel: every visible Axes draws data (a line with a point, a collection with a finite
  offset or path, a bar, an image); reference lines and bands (zero line, margin band: drawn in
  axes coordinates across the panel) are not data;
- every axis that prints tick labels has a label saying what it measures (an axis whose tick
  labels are hidden reads its neighbour's, as in a row of panels sharing y); the one exception is
  an image grid, whose axes are switched off;
- the saved PNG (at the dpi of :func:`kdcal.plots.save`, tight box) is at most MAX_PX a side.

Beside them, the defects of issue 39 that these checks do not name: panels of the paired
differences on one x range with the legend at the top, integer epochs on the training curves,
seeds drawn where a title promises them, and the reliability figure's teachers chosen within one
ladder.
"""
import io
import itertools
from functools import cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import Collection, PathCollection  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402
from test_plots import (KD, build, regime_table, reliability_panels,  # noqa: E402
                        students_frame, teachers_frame)

from kdcal import analysis, bundle, plots, plots_students, regimes, study, tables  # noqa: E402

OUTPUTS = Path(__file__).resolve().parents[1] / "outputs"
MAX_PX = 2000


# ---------------------------------------------------------------- reading a figure
def _in_data_coords(artist, ax, transform=None) -> bool:
    """Drawn in data coordinates: not a reference line or band spanning the axes."""
    t = transform if transform is not None else artist.get_transform()
    return t.contains_branch(ax.transData)


def _finite_rows(xy) -> bool:
    xy = np.asarray(xy, dtype=float)
    return xy.size > 0 and bool(np.isfinite(xy.reshape(len(xy), -1)).all(axis=1).any())


def data_artists(ax) -> list:
    """The artists of ``ax`` that draw data (see the module docstring)."""
    found = []
    for artist in ax.get_children():
        if not artist.get_visible():
            continue
        if isinstance(artist, Line2D):
            xy = np.column_stack([np.asarray(artist.get_xdata(), float),
                                  np.asarray(artist.get_ydata(), float)])
            if _in_data_coords(artist, ax) and _finite_rows(xy):
                found.append(artist)
        elif isinstance(artist, Collection):
            offsets = artist.get_offsets()
            if len(offsets) and _in_data_coords(artist, ax, artist.get_offset_transform()):
                if _finite_rows(offsets):
                    found.append(artist)
            elif _in_data_coords(artist, ax) and any(_finite_rows(p.vertices)
                                                     for p in artist.get_paths()):
                found.append(artist)
        elif isinstance(artist, Patch) and artist is not ax.patch:
            if _in_data_coords(artist, ax) and _finite_rows(artist.get_path().vertices):
                found.append(artist)
        elif isinstance(artist, AxesImage):
            found.append(artist)
    return found


def visible_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


def empty_axes(fig) -> list[str]:
    return [ax.get_title() or f"axes {i}" for i, ax in enumerate(visible_axes(fig))
            if not data_artists(ax)]


def _prints_ticks(axis) -> bool:
    lo, hi = sorted(axis.get_view_interval())
    return any(lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text().strip()
               for t in axis.get_major_ticks())


def unlabelled_axes(fig) -> list[str]:
    """'<panel>: x' for every axis that prints tick labels and no label (after a draw)."""
    fig.canvas.draw()
    out = []
    for i, ax in enumerate(visible_axes(fig)):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if _prints_ticks(axis) and not axis.get_label_text().strip():
                out.append(f"{ax.get_title() or f'axes {i}'}: {name}")
    return out


def saved_size(fig) -> tuple[int, int]:
    """Width and height in pixels of the PNG :func:`kdcal.plots.save` writes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=plots.SAVE_DPI, bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).size


# ---------------------------------------------------------------- synthetic figures
def distill_frame(seeds=3):
    """Teachers with the ``distill_*`` columns (ECE, NLL on the students' images)."""
    t = teachers_frame(seeds)
    return t.assign(distill_ece=t["ece"] * 0.9, distill_ece_cal=t["ece_cal"] * 1.1,
                    distill_nll=t["nll"] * 0.9, distill_nll_cal=t["nll_cal"] * 1.1)


def regime_table_two_teachers(seeds=2):
    """A regimes table of two teachers per cell (the tutorial's): no size correlation exists."""
    table = regime_table(seeds)
    return table[~table["arch"].eq("resnet20") & ~table["teacher"].eq("resnet20")]


FIVE_MODES = ["uncalibrated", "compose", "replace", "cal-vector", "cal-matrix"]


def students_like_evidence():
    """The evidence-transfer design's size: 14 seeds, 7 teachers, 5 KD modes and a baseline."""
    return students_frame(seeds=14, modes=tuple(FIVE_MODES))


def synthetic(name: str):
    if name == "distill_calibration_vs_size":
        return plots.distill_calibration_vs_size(distill_frame())
    if name == "image_grid":
        images = torch.randint(0, 255, (6, 1, 8, 8), dtype=torch.uint8)
        return plots.image_grid(images, [f"class {i}" for i in range(6)], columns=3)
    if name == "reliability_grid":
        return plots.reliability_grid(reliability_panels(archs=("resnet8",)), n_bins=5)
    if name == "regime_map_two_teachers":
        table = regime_table_two_teachers()
        return plots.regime_map(regimes.regime_effects(table, "compose"), "compose", table=table)
    if name == "paired_mode_differences_14_seeds":
        students = students_like_evidence()
        return plots.paired_mode_differences(analysis.mode_differences(students, FIVE_MODES),
                                             students=students)
    if name == "training_curves_two_epochs":
        rows = [{"arch": a, "seed": s, "epoch": e, "loss": 1.0 / e, "train_acc": 1 - 0.5 / e}
                for a in ("resnet8", "resnet14") for s in range(2) for e in (1, 2)]
        return plots.training_curves(pd.DataFrame(rows))
    return build(name)


SYNTHETIC = ["teacher_calibration_vs_size", "temperature_vs_size", "distill_calibration_vs_size",
             "training_curves", "training_curves_two_epochs", "image_grid",
             "calibrator_comparison", "teacher_variants", "reliability_grid",
             "reliability_compare", "reliability_compare_calibrators",
             "student_accuracy_vs_teacher_size", "student_accuracy_size_or_accuracy",
             "paired_mode_differences", "paired_mode_differences_14_seeds", "regime_map",
             "regime_map_two_teachers", "temperature_sweep"]


# ---------------------------------------------------------------- the committed studies
@cache
def results(name: str) -> pd.DataFrame:
    return pd.read_csv(OUTPUTS / name / "results.csv")


def _teachers(name):
    r = results(name)
    return r[(r["role"] == "teacher") & (r["mode"] == "teacher")]


def _students(name):
    r = results(name)
    return r[r["role"] == "student"]


def _bundle(name):
    path = OUTPUTS / name / "bundle"
    return bundle.bundle_config(path), path


def committed(key: str):
    """The figure of a committed study as its notebook draws it (study/figure)."""
    name, figure = key.split("/")
    if figure == "regimes":
        table = pd.read_csv(OUTPUTS / name / "regimes_results.csv")
        table = bundle.with_cell_order(table)
        return plots.regime_map(regimes.regime_effects(table, "compose"), "compose", table=table)
    if figure == "teacher_temperature_sweep":
        return plots.temperature_sweep(analysis.temperature_sweep(_students(name)))
    if figure == "teacher_calibration_vs_size":
        return plots.teacher_calibration_vs_size(_teachers(name))
    if figure == "teacher_temperature_vs_size":
        return plots.temperature_vs_size(_teachers(name))
    if figure == "teacher_calibration_where_students_learn":
        return plots.distill_calibration_vs_size(_teachers(name))
    if figure == "student_accuracy_vs_teacher_size":
        return plots.student_accuracy_vs_teacher_size(_students(name))
    if figure == "student_accuracy_size_or_accuracy":
        return plots.student_accuracy_size_or_accuracy(_students(name))
    cfg, path = _bundle(name)
    if figure == "paired_mode_differences":
        students = _students(name)
        return plots.paired_mode_differences(analysis.mode_differences(students, cfg.modes),
                                             students=students)
    if figure == "teacher_training_curves":
        return plots.training_curves(study.training_curves(cfg, path))
    teachers = _teachers(name)
    if figure == "teacher_reliability":
        panels = study.reliability_panels(cfg, path, seed=cfg.seeds[0])
        return plots.reliability_compare(panels, cfg.ece_bins, sizes=tables.teacher_sizes(teachers),
                                         seed=cfg.seeds[0], families=analysis.families(teachers))
    if figure == "calibrators_by_teacher":
        return plots.calibrator_comparison(study.calibrator_table(cfg, path))
    if figure == "calibrators_reliability":
        arch = plots.reliability_teachers(tables.teacher_sizes(teachers),
                                          analysis.families(teachers))[-1]
        panels = study.calibrator_panels(cfg, path, arch, cfg.seeds[0])
        return plots.reliability_compare(panels, cfg.ece_bins, seed=cfg.seeds[0])
    raise KeyError(key)


STUDY_FIGURES = ["teacher_calibration_vs_size", "teacher_temperature_vs_size",
                 "teacher_calibration_where_students_learn", "student_accuracy_vs_teacher_size",
                 "student_accuracy_size_or_accuracy", "paired_mode_differences",
                 "teacher_training_curves", "teacher_reliability",
                 "calibrators_by_teacher", "calibrators_reliability"]
COMMITTED = ([f"{s}/{f}" for s, f in itertools.product(("evidence-transfer", "tutorial"),
                                                        STUDY_FIGURES)]
             + ["tutorial/regimes", "regimes-quick/regimes", "quick/teacher_temperature_sweep"])


# ---------------------------------------------------------------- the checks
_made: dict = {}


def figure(key: str):
    """Each figure drawn once for all its checks (closed at the end of the module)."""
    if key not in _made:
        plots.style()
        _made[key] = committed(key) if "/" in key else synthetic(key)
    return _made[key]


@pytest.fixture(scope="module", autouse=True)
def _close_figures():
    with plt.rc_context({"figure.max_open_warning": 0}):  # all of them are open till the end
        yield
    _made.clear()
    plt.close("all")


ALL = SYNTHETIC + COMMITTED


@pytest.mark.parametrize("key", ALL)
def test_no_panel_is_empty(key):
    assert empty_axes(figure(key)) == [], f"{key} draws an empty panel"


@pytest.mark.parametrize("key", ALL)
def test_every_axis_with_tick_labels_has_a_label(key):
    assert unlabelled_axes(figure(key)) == [], f"{key}: axes without a label"


@pytest.mark.parametrize("key", ALL)
def test_the_saved_figure_fits_a_screen(key):
    width, height = saved_size(figure(key))
    assert width <= MAX_PX and height <= MAX_PX, f"{key} is {width} x {height} px"


# ---------------------------------------------------------------- the checks themselves
def test_the_checks_catch_an_empty_panel_and_a_missing_label():
    fig, axes = plt.subplots(1, 3)
    axes[0].plot([0, 1], [0, 1])
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[1].axvline(0)  # a reference line alone: no data
    axes[1].axvspan(-1, 1)
    axes[2].scatter([np.nan], [np.nan])  # a point that is not there
    assert len(empty_axes(fig)) == 2
    assert len(unlabelled_axes(fig)) == 4
    axes[1].tick_params(labelbottom=False, labelleft=False)  # hidden ticks need no label
    assert len(unlabelled_axes(fig)) == 2
    plt.close(fig)


# ---------------------------------------------------------------- issue 39's other defects
def _forest_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_yticks().size]


@pytest.mark.parametrize("key", ["paired_mode_differences_14_seeds",
                                 "evidence-transfer/paired_mode_differences",
                                 "tutorial/paired_mode_differences"])
def test_paired_differences_share_one_x_range_and_the_legend_sits_at_the_top(key):
    fig = figure(key)
    panels = _forest_axes(fig)
    assert len(panels) >= 2
    assert len({tuple(np.round(ax.get_xlim(), 9)) for ax in panels}) == 1
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    boxes = [ax.get_window_extent(renderer) for ax in panels]
    top = max(b.y1 for b in boxes)
    assert legend.y1 >= top - 1  # level with the top row's panels, or above them
    assert not any(legend.overlaps(b) for b in boxes)


def test_paired_differences_pool_per_mode_with_every_seed():
    """The summary rows: one per mode and comparison, each seed's paired difference a dot."""
    fig = figure("paired_mode_differences_14_seeds")
    summary = [ax for ax in _forest_axes(fig) if "pooled" in ax.get_title()]
    assert len(summary) == 2
    rows = sum(len(ax.get_yticks()) for ax in summary)
    assert rows == len(FIVE_MODES) + len(FIVE_MODES) - 1  # vs baseline, vs uncalibrated
    for ax in summary:
        dots = [c for c in ax.collections if len(c.get_offsets()) == 14]
        assert len(dots) == len(ax.get_yticks())


@pytest.mark.parametrize("key", ["training_curves", "training_curves_two_epochs",
                                 "evidence-transfer/teacher_training_curves",
                                 "tutorial/teacher_training_curves"])
def test_training_curves_tick_whole_epochs_and_tell_teachers_apart(key):
    fig = figure(key)
    fig.canvas.draw()
    for ax in visible_axes(fig):
        lo, hi = sorted(ax.get_xlim())
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    # one panel per teacher, titled with its name: never two teachers in one grey
    titles = [ax.get_title() for ax in visible_axes(fig)]
    archs = {t.split()[0] for t in titles if t}
    assert len(archs) == len(titles) // 2  # a loss and an accuracy panel per teacher


def test_where_students_learn_draws_every_seed():
    frame = distill_frame(seeds=3)
    fig = plots.distill_calibration_vs_size(frame)
    assert "dots = seeds" in fig.get_suptitle()
    for ax in fig.axes[:2]:
        dots = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
        assert dots == 4 * len(frame)  # four series, one dot per teacher and seed each
    plt.close(fig)


def test_reliability_shows_the_ends_of_the_largest_ladder_and_says_so():
    """resnet8x4 (the width ladder) is the biggest teacher but not the depth ladder's end: the
    figure compares the depth ladder's smallest and largest, where only size changes."""
    sizes = {"resnet8": 77754, "resnet14": 174970, "resnet20": 272186, "resnet32": 466618,
             "resnet44": 661338, "resnet56": 855770, "resnet8x2": 308074, "resnet8x4": 1226442}
    assert plots.reliability_teachers(sizes) == ["resnet8", "resnet56"]
    fig = figure("evidence-transfer/teacher_reliability")
    rows = {ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title()}
    assert rows == {"resnet8", "resnet56"}
    assert "depth ladder" in fig.get_suptitle() and "resnet8x4" not in fig.get_suptitle()


def test_reliability_teachers_rule():
    sizes = {"resnet8": 1, "resnet14": 2, "resnet8x2": 3, "resnet8x4": 4}
    assert plots.reliability_teachers(sizes) == ["resnet8", "resnet14"]  # a tie: depth first
    sizes["resnet8x3"] = 3.5
    assert plots.reliability_teachers(sizes) == ["resnet8x2", "resnet8x4"]  # the longer ladder
    every = {t: "depth" for t in sizes}  # a family column overrides the name rule
    assert plots.reliability_teachers(sizes, every) == ["resnet8", "resnet8x4"]
    assert plots.reliability_teachers({"resnet14": 2, "resnet8x4": 4}) == ["resnet14", "resnet8x4"]
    assert plots.reliability_teachers({"resnet14": 2}) == ["resnet14"]


def test_a_regime_map_without_size_correlations_draws_no_panel_for_them_and_says_why():
    fig = figure("regime_map_two_teachers")
    assert [ax.get_title() for ax in visible_axes(fig)] == ["(a) effect of calibrating the teacher"]
    assert "size correlations need 3 teachers in a cell: not drawn (here 2 per cell)" in \
        " ".join(fig.get_suptitle().split())
    fig = figure("regime_map")  # three teachers a cell: all three panels
    assert len(visible_axes(fig)) == 3


def test_paired_differences_without_room_for_teachers_or_without_uncalibrated_kd(monkeypatch):
    """Too many per-teacher rows: the pooled rows alone, and the title says where the rest are;
    no uncalibrated KD: the one column against the baseline. Neither draws an empty panel."""
    students = students_frame(seeds=3, archs=("resnet8", "resnet14", "resnet20"))
    diffs = analysis.mode_differences(students, KD)
    monkeypatch.setattr(plots_students, "DETAIL_ROWS", 4)
    fig = plots.paired_mode_differences(diffs, students=students)
    assert [ax.get_title().split(",")[0] for ax in visible_axes(fig)] == [
        "(a) calibrated KD minus uncalibrated KD", "(b) KD minus the no-KD student (baseline)"]
    assert "the 3 x 4 per-teacher rows are in the table" in fig.get_suptitle()
    assert empty_axes(fig) == [] and unlabelled_axes(fig) == []
    plt.close(fig)
    monkeypatch.undo()
    only = analysis.mode_differences(students, ["compose", "replace"])  # no uncalibrated KD
    fig = plots.paired_mode_differences(only, students=students)
    assert [ax.get_title()[:3] for ax in visible_axes(fig)] == ["(a)", "(b)"]  # pooled, per teacher
    assert all("baseline" in ax.get_title() for ax in visible_axes(fig))
    assert empty_axes(fig) == [] and unlabelled_axes(fig) == []
    plt.close(fig)
