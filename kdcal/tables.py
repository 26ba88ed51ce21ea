"""Tables for people: rounded numbers, intervals as [low, high], teachers by size, no index, nothing cut.

The analysis returns plain frames (some cells hold (low, high) tuples or NaN where too few seeds
give no interval); :func:`show` turns one into a table that reads the same in JupyterLab, in the
report and as text.
"""
from __future__ import annotations

import math
import numbers
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


def format_value(value, digits: int = 4) -> str:
    """One cell as text: numbers rounded, intervals as [low, high], NaN as a dash, dicts unpacked."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, numbers.Number) for v in value):
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return NO_VALUE
        return f"[{format_value(lo, digits)}, {format_value(hi, digits)}]"
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v, digits)}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            return NO_VALUE
        if float(value).is_integer() and abs(value) >= 1000:
            return str(int(value))
        return f"{value:.{digits}g}" if abs(value) >= 10 ** digits else f"{value:.{digits}f}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_VALUE
    return str(value)


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


def table(frame: pd.DataFrame | dict, digits: int = 4, sizes: dict[str, float] | None = None,
          columns: list[str] | None = None, caption: str | None = None) -> Table:
    """``frame`` (or one record, a dict) formatted for reading: see the module docstring.

    A named index (a pivot table's teachers, say) becomes the first column.
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
    text = frame.apply(lambda col: col.map(lambda v: format_value(v, digits)))
    text.columns = [str(c) for c in frame.columns]
    return Table(text.reset_index(drop=True), caption)


def show(frame: pd.DataFrame | dict, digits: int = 4, sizes: dict[str, float] | None = None,
         columns: list[str] | None = None, caption: str | None = None) -> None:
    """Display :func:`table` (in a notebook; printed text elsewhere)."""
    from IPython.display import display

    display(table(frame, digits, sizes, columns, caption))
