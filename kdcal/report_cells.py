"""What one executed notebook cell puts on the report page, and where.

- **Where it goes, and its prose**: a cell's tags (``notebook-only``, ``appendix``), and a markdown
  cell's text, are read from the repository's notebook with the same cell id when there is one,
  so that a study executed before a cell was retagged or reworded (a committed study, whose
  notebooks 01-03 ``kdcal analyse`` does not re-run) renders with today's layout and prose around
  the outputs it computed.
- **Outputs**: no stderr, progress bars, log lines ("[run] epoch 3/10", "12 log lines written to
  ...", "798 students planned") or notebook notes; the study folder as it is named now, not as it
  was named where it ran (``runs/quick-1201`` for a study since moved to ``outputs/quick``).
- **p-values**: a table's p-value columns as :func:`kdcal.tables.format_p` prints them ("< 0.001"),
  also in a table a notebook printed before that rule.
- **Figures**: every image gets an alt text that says what it shows (from the name it is saved
  under, else from the section it sits in), never nbconvert's placeholder.
"""
from __future__ import annotations

import re
from pathlib import Path

from .tables import P_COLUMN, PROJECT, display_path, format_p

NOTEBOOK_DIR = PROJECT / "notebooks"  # the repository's notebooks: where each cell goes
NOTEBOOK_ONLY, APPENDIX = "notebook-only", "appendix"  # cell tags
NOTE_METADATA = "kdcal_notebook_only"  # an output's metadata key: shown in the notebook, not in the report
ALT_METADATA = "kdcal_alt"  # an image output's metadata key: its alt text on the page
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"  # progress bars; text fallback "0%|"
# Lines that say what the program did, not what the study found: log.txt's, not the page's.
LOG_LINES = (
    r"\s*\[[^\]]+\] .*",                     # the study's log: "[run id] epoch 3/10 ...", "... done, skipped"
    r"== .*",                                # a stage's banner
    r"\d+ log lines? written to \S+\s*",     # repr of logfile.StudyLog, printed by older notebooks
    r"\d+ students planned\s*",              # notebook 03's count before training, older notebooks
)
LOG_LINE = re.compile("|".join(f"^(?:{p})$" for p in LOG_LINES))
IMAGE_MIMES = ("image/png", "image/jpeg")
SAVED_FIGURE = re.compile(r"""figures,\s*["']([\w.-]+)["']""")  # plots.save(fig, figures, "name")
# What each saved figure shows, by the name notebooks save it under (the figures/ folder's names).
FIGURE_ALT = {
    "teacher_training_curves": "Teacher training: training loss and accuracy per epoch for each teacher, "
                               "mean and 95% interval over seeds.",
    "teacher_calibration_vs_size": "Teachers: test ECE, test NLL and accuracy against parameter count, "
                                   "before and after temperature scaling.",
    "teacher_temperature_vs_size": "The temperature fitted on validation NLL for each teacher against its "
                                   "parameter count; above 1, the raw teacher was over-confident.",
    "teacher_calibration_where_students_learn": "Teachers' ECE and NLL on the images the students learn "
                                                "from (triangles) and on the test set (circles), before "
                                                "and after temperature scaling, against teacher size.",
    "teacher_reliability": "Reliability diagrams of the smallest and the largest teacher (first seed), "
                           "before and after temperature scaling, with the predictions per confidence bin.",
    "calibrators_by_teacher": "Calibration metrics of every teacher under each calibrator.",
    "calibrators_reliability": "Reliability diagrams of the largest teacher (first seed) under each "
                               "calibrator.",
    "teacher_variants": "Teachers trained with label smoothing, mixup or early stopping beside the "
                        "standard ones, before and after temperature scaling.",
    "teacher_temperature_sweep": "Student accuracy against the multiplier of the teacher's temperature, "
                                 "per teacher; the star marks the temperature fitted on validation NLL.",
    "student_accuracy_vs_teacher_size": "Student test accuracy against teacher size for each distillation "
                                        "mode and the no-KD baseline: seeds as dots, means joined by "
                                        "lines, with 95% intervals.",
    "student_accuracy_size_or_accuracy": "Student accuracy against teacher size, teacher accuracy and "
                                         "teacher ECE for each mode: every student as a dot, teacher "
                                         "means as markers, the fit over teacher means per family.",
    "paired_mode_differences": "Paired differences in student accuracy between modes, per teacher and "
                               "pooled over teachers, with 95% intervals over seeds and the margin.",
    "regimes": "The regime map: per cell, the effect of calibrating the teacher on the student, whether "
               "a bigger teacher helps without and with calibration, and whether the bigger teacher is "
               "the less calibrated one.",
}
# Figures a notebook draws without saving them, known by a call in the cell's code.
DRAWN_ALT = {
    r"plots\.image_grid\(": "Sixteen training images with their class names.",
    r"validation NLL": "Validation NLL against the temperature T for one teacher, with the fitted T marked.",
}


def source_cells(name: str, source_dir=NOTEBOOK_DIR) -> dict:
    """Cell id -> cell, of the repository's notebook ``name`` (empty when there is none)."""
    import nbformat

    path = Path(source_dir) / name
    if not path.exists():
        return {}
    return {c["id"]: c for c in nbformat.read(path, as_version=4).cells if c.get("id")}


def as_written(cell, source: dict) -> set[str]:
    """Place ``cell`` as the repository's notebook (``source``, :func:`source_cells`) has the cell
    of the same id: its tags, and for a markdown cell its text (prose, not a result: a study run
    before a sentence was fixed shows the fixed sentence). Returns the tags; without such a cell,
    the cell's own."""
    written = source.get(cell.get("id"))
    if written is None or written.cell_type != cell.cell_type:
        return set(cell.metadata.get("tags", []))
    if cell.cell_type == "markdown":
        cell.source = written.source
    return set(written.metadata.get("tags", []))


def clean_outputs(outputs: list, study_root: Path, ran_in: str | None = None) -> list:
    """Drop stderr, widgets, log lines and notebook notes; name the study folder by its short
    name, the folder it ran in (``ran_in``, papermill's ``study_dir``) included."""
    kept = []
    short = display_path(study_root)
    for out in outputs:
        if (out.get("name") == "stderr" or WIDGET_MIME in out.get("data", {})
                or out.get("metadata", {}).get(NOTE_METADATA)):
            continue
        if out.get("output_type") == "stream":
            lines = [ln for ln in out["text"].splitlines(keepends=True)
                     if not LOG_LINE.match(ln.rstrip("\n"))]
            if not "".join(lines).strip():
                continue
            out["text"] = "".join(lines)
        _edit_text(out, lambda text: rename_study(text.replace(str(study_root), short), ran_in, short))
        if isinstance(out.get("data", {}).get("text/html"), str):
            out["data"]["text/html"] = p_values_as_printed(out["data"]["text/html"])
        kept.append(out)
    return kept


TABLE = re.compile(r"<table\b.*?</table>", re.S)
CELL = re.compile(r"(<t[hd]\b[^>]*>)(.*?)(</t[hd]>)", re.S)


def p_values_as_printed(page: str) -> str:
    """Every table of ``page`` with the cells of its p-value columns (:data:`kdcal.tables.P_COLUMN`,
    named in its header row) printed by :func:`kdcal.tables.format_p`: "0.0000000000058" as
    "< 0.001", "0.4279" as "0.43"; cells that are not numbers are left alone."""
    def one_table(m: re.Match) -> str:
        rows = re.split(r"(?=<tr\b)", m.group(0))
        head = next((r for r in rows if re.search(r"<th\b", r)), "")
        names = [re.sub(r"<[^>]+>", "", c.group(2)).strip() for c in CELL.finditer(head)]
        columns = {i for i, n in enumerate(names) if P_COLUMN.match(n)}
        if not columns:
            return m.group(0)

        def row(text: str) -> str:
            if not re.search(r"<td\b", text):
                return text
            k = iter(range(len(names)))

            def cell(c: re.Match) -> str:
                i = next(k, -1)
                try:
                    value = float(c.group(2).strip())
                except ValueError:
                    return c.group(0)
                if i not in columns:
                    return c.group(0)
                return c.group(1) + format_p(value).replace("<", "&lt;") + c.group(3)

            return CELL.sub(cell, text)

        return "".join(row(r) for r in rows)

    return TABLE.sub(one_table, page)


def _edit_text(out: dict, edit) -> None:
    if isinstance(out.get("text"), str):
        out["text"] = edit(out["text"])
    for mime, value in out.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            out["data"][mime] = edit(value)


def rename_study(text: str, ran_in: str | None, short: str) -> str:
    """``text`` with every path to the folder the study ran in (``/work/runs/quick-1201``,
    ``runs/quick-1201``, ``quick-1201/log.txt``: its name with a slash before or after it) written
    as the study folder's short name now (``outputs/quick``); a bare word is left alone."""
    name = Path(str(ran_in)).name if ran_in else ""
    if not name or name in (".", ".."):
        return text
    pattern = re.compile(rf"(?<![\w.~/-])((?:[\w.~-]*/)*){re.escape(name)}(?![\w.-])")

    def replace(m: re.Match) -> str:
        followed = m.string[m.end():m.end() + 1] == "/"
        return short if m.group(1) or followed else m.group(0)

    return pattern.sub(replace, text)


def figure_alts(cell, section: str) -> None:
    """Set each image output's alt text (``ALT_METADATA``): the k-th image of a cell is the k-th
    figure its code saves (:data:`FIGURE_ALT` by name), else a figure its code draws
    (:data:`DRAWN_ALT`), else "A figure of the section <section>"."""
    names = SAVED_FIGURE.findall(cell.get("source", ""))
    drawn = [alt for pattern, alt in DRAWN_ALT.items() if re.search(pattern, cell.get("source", ""))]
    k = 0
    for out in cell.get("outputs", []):
        if not any(m in out.get("data", {}) for m in IMAGE_MIMES):
            continue
        meta = out.setdefault("metadata", {})
        given = meta.get(ALT_METADATA) or meta.get("alt")
        if k < len(names):
            name = names[k]
            alt = FIGURE_ALT.get(name) or f"Figure {name.replace('_', ' ')}."
        elif drawn:
            alt = drawn[0]
        else:
            alt = f"A figure of the section {section}." if section else "A figure of the study."
        meta[ALT_METADATA] = given or alt
        k += 1
