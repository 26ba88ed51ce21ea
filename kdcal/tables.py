"""Tables for people: numbers as people write them, intervals as [low, high] clipped to what is
possible, teachers by size, no index, nothing cut.

The analysis returns plain frames (some cells hold (low, high) tuples or NaN where too few seeds
give no interval); :func:`show` turns one into a table that reads the same in JupyterLab, in the
report and as text.
"""
from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
SIZE_COLUMNS = ("params", "teacher_params")  # sort keys: parameter counts, not names
NAME_COLUMNS = ("arch", "teacher")
NO_VALUE = "–"  # an interval that does not exist (one seed) or a missing number


def display_path(path) -> str:
    """``path`` relative to the project (or, outside it, its last two parts): no machine paths on a page."""
    path = Path(path).resolve()
    try:
        return path.relative_to(PROJECT).as_posix()
    except ValueError:
        return "/".join(path.parts[-2:])


def format_number(value, digits: int = 4) -> str:
    """A number as a person reads it: no "14.0000", no "-5.53e-05", no "-0.000".

    Whole numbers print without decimals; from 1 up, ``digits`` significant digits; below 1,
    ``digits`` decimals, or two significant digits where those decimals would keep fewer; zero
    (of either sign) as ``0``; NaN and infinities (no value, no interval) as a dash.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    v = float(value)
    if not math.isfinite(v):
        return NO_VALUE
    if v.is_integer():
        return str(int(v))  # -0.0 included: "0"
    magnitude = math.floor(math.log10(abs(v)))
    if magnitude >= 0:
        decimals = max(0, digits - 1 - magnitude)
    else:
        decimals = max(digits, 1 - magnitude)  # at least two significant digits
    return f"{v:.{decimals}f}"  # never rounds to zero: at least one significant digit is kept


P_VALUE_FLOOR = 0.001  # below it a p-value reads "< 0.001": its digits there are noise, not news
# columns that hold p-values: p_value, p_holm, and a regimes table's size_uncal_p (not p_floor, a bound)
P_COLUMN = re.compile(r"^(?:p|p_value|p_holm|p_adj\w*|\w+_p)$")


def format_p(value) -> str:
    """A p-value as a person reads it: "< 0.001" below 0.001, three decimals below 0.1 ("0.014",
    "0.050"), two from 0.1 up ("0.23"), ``1`` for one; a dash where there is none."""
    if value is None or value is pd.NA:
        return NO_VALUE
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return NO_VALUE
    if v < P_VALUE_FLOOR:
        return f"< {P_VALUE_FLOOR:g}"
    text = f"{v:.3f}"
    text = text if float(text) < 0.1 else f"{v:.2f}"
    return "1" if float(text) == 1 else text


def format_interval(low, high, digits: int = 4, bounds: tuple[float, float] | None = None) -> str:
    """``[low, high]``, each end clipped to ``bounds`` (what the quantity can be); a dash without one."""
    if not all(isinstance(v, numbers.Number) and math.isfinite(v) for v in (low, high)):
        return NO_VALUE
    low, high = clip(low, bounds), clip(high, bounds)
    return f"[{format_number(low, digits)}, {format_number(high, digits)}]"


def clip(value, bounds: tuple[float, float] | None):
    """``value`` moved into ``bounds`` (low, high); unchanged without bounds or when not a number."""
    if bounds is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return min(max(value, bounds[0]), bounds[1])


def format_value(value, digits: int = 4, bounds: tuple[float, float] | None = None) -> str:
    """One cell as text: numbers by :func:`format_number`, intervals as [low, high], NaN as a dash,
    dicts unpacked; numbers clipped to ``bounds`` when given."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, numbers.Number) for v in value):
        return format_interval(*value, digits=digits, bounds=bounds)
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v, digits, bounds)}" for k, v in value.items())
    if isinstance(value, numbers.Number):
        return format_number(clip(value, bounds), digits)
    if value is None or value is pd.NA:
        return NO_VALUE
    return str(value)


# What each metric can be: interval ends outside these are an artefact of a t-interval, not data.
METRIC_BOUNDS = {
    **dict.fromkeys(("acc", "ece", "ace", "mce", "classwise_ece", "agreement"), (0.0, 1.0)),
    "brier": (0.0, 2.0),
    **dict.fromkeys(("nll", "kl_teacher", "temperature", "kd_tau"), (0.0, math.inf)),
}
INTERVAL_END = re.compile(r"(?:^|_)(?:low|high|lo|hi|ci)$")
_METRIC_AFFIXES = re.compile(r"^(?:train|val|test|teacher|student)_|_(?:low|high|lo|hi|ci)$|_cal$")


def metric_bounds(column: str) -> tuple[float, float] | None:
    """The possible range of the metric a column holds, read from its name (``train_acc_high``:
    accuracy, [0, 1]; ``nll_cal_low``: NLL, [0, inf)); None for anything else (a difference, a slope)."""
    name = str(column)
    while True:
        stripped = _METRIC_AFFIXES.sub("", name, count=1)
        if stripped == name:
            return METRIC_BOUNDS.get(name)
        name = stripped


def teacher_sizes(frame: pd.DataFrame) -> dict[str, float]:
    """Teacher name -> parameter count, from any table with (arch, params) or (teacher, teacher_params)."""
    sizes = {}
    for name, size in (("arch", "params"), ("teacher", "teacher_params")):
        if {name, size} <= set(frame.columns):
            rows = frame[[name, size]].dropna().drop_duplicates(name)
            sizes.update(dict(zip(rows[name].astype(str), rows[size].astype(float))))
    return sizes


def by_size(frame: pd.DataFrame, sizes: dict[str, float] | None = None) -> pd.DataFrame:
    """Rows ordered by teacher size (a stable sort: the order within one teacher is kept).

    A parameter-count column sorts directly; otherwise a teacher-name column (or index) sorts by
    ``sizes``. Names without a size ("all", the baseline) go last, in their original order.
    A named index (a pivot table's teachers) is made a column first by :func:`table`.
    """
    for col in SIZE_COLUMNS:
        if col in frame.columns:
            return frame.sort_values(col, kind="stable", na_position="last")
    sizes = {**teacher_sizes(frame), **(sizes or {})}
    if not sizes:
        return frame
    for col in NAME_COLUMNS:
        if col in frame.columns:
            key = frame[col].astype(str).map(sizes).fillna(math.inf)
            return frame.iloc[key.reset_index(drop=True).sort_values(kind="stable").index]
    return frame


class Table:
    """A formatted table: HTML in notebooks and the report, aligned text elsewhere."""

    def __init__(self, frame: pd.DataFrame, caption: str | None = None):
        self.frame = frame
        self.caption = caption

    def _repr_html_(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            html = self.frame.to_html(index=False, escape=True, border=0, classes="kdcal-table",
                                      na_rep=NO_VALUE)
        if self.caption:
            html = f"<p><em>{self.caption}</em></p>\n{html}"
        return html

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.max_rows", None,
                               "display.max_columns", None, "display.width", 10_000):
            text = self.frame.to_string(index=False, na_rep=NO_VALUE)
        return f"{self.caption}\n{text}" if self.caption else text


def column_bounds(frame: pd.DataFrame, bounds=None) -> dict:
    """Column -> the range its numbers are clipped to: ``bounds`` as a dict (column -> (low, high)),
    or one (low, high) for every interval column (``ci_low``, ``*_high``, cells holding intervals) of
    a table of one metric; otherwise each column's metric, read from its name (:func:`metric_bounds`)."""
    if bounds is not None and not isinstance(bounds, dict):
        if len(bounds) != 2 or not bounds[0] <= bounds[1]:
            raise ValueError(f"bounds={bounds!r}: give (low, high) with low <= high, or a dict")
        return {c: tuple(bounds) for c in frame.columns if INTERVAL_END.search(str(c))
                or frame[c].map(lambda v: isinstance(v, tuple)).any()}
    inferred = {c: metric_bounds(c) for c in frame.columns}
    return {**{c: b for c, b in inferred.items() if b is not None}, **(bounds or {})}


def table(frame: pd.DataFrame | dict, digits: int = 4, sizes: dict[str, float] | None = None,
          columns: list[str] | None = None, caption: str | None = None, bounds=None,
          intervals: bool = False) -> Table:
    """``frame`` (or one record, a dict) formatted for reading: see the module docstring.

    A named index (a pivot table's teachers, say) becomes the first column. Numbers are clipped to
    what they can be (:func:`column_bounds`): an accuracy interval ends at 1, an NLL interval at 0.
    p-values (:data:`P_COLUMN`) read "< 0.001" below 0.001 (:func:`format_p`). ``intervals``:
    each ``x``, ``x_low``, ``x_high`` as one column (:func:`merge_intervals`).
    """
    if isinstance(frame, dict):
        frame = pd.DataFrame([frame])
    if frame.index.name is not None or isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    frame = by_size(frame, sizes)
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"table: no column(s) {missing}; available: {list(frame.columns)}")
        frame = frame[columns]
    limits = column_bounds(frame, bounds)
    text = frame.apply(lambda col: col.map(format_p) if P_COLUMN.match(str(col.name)) else
                       col.map(lambda v: format_value(v, digits, limits.get(col.name))))
    text.columns = [str(c) for c in frame.columns]
    if intervals:
        text = merge_intervals(text)
    return Table(text.reset_index(drop=True), caption)


def merge_intervals(text: pd.DataFrame) -> pd.DataFrame:
    """Each ``x`` beside its ``x_low`` and ``x_high`` (already text) as one column ``x``:
    "0.8505 [0.8481, 0.8530]", so that a summary of many metrics is a third as wide and can
    wrap to fit the page; a dash where a row has no interval."""
    out = text.copy()
    for col in list(text.columns):
        low, high = f"{col}_low", f"{col}_high"
        if low in text.columns and high in text.columns:
            out[col] = [v if NO_VALUE in (lo, hi) else f"{v} [{lo}, {hi}]"
                        for v, lo, hi in zip(text[col], text[low], text[high])]
            out = out.drop(columns=[low, high])
    return out


def show(frame: pd.DataFrame | dict, digits: int = 4, sizes: dict[str, float] | None = None,
         columns: list[str] | None = None, caption: str | None = None, bounds=None,
         intervals: bool = False) -> None:
    """Display :func:`table` (in a notebook; printed text elsewhere)."""
    from IPython.display import display

    display(table(frame, digits, sizes, columns, caption, bounds, intervals))
