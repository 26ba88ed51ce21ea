"""A study folder with two small executed notebooks written by hand (no training): everything the
report must handle, each part with a marker word the tests look for."""
from __future__ import annotations

import json

import nbformat
import pandas as pd

from kdcal.tables import table

NOTEBOOKS = ["01_first.ipynb", "02_second.ipynb"]
SIZE_SLOPE = "slope of student acc per doubling of teacher parameters, {} KD, across families, with a family term"
CLAIMS = pd.DataFrame([
    {"claim": "1. larger teachers have higher ECE", "family": "all",
     "statistic": "slope of teacher ECE per doubling of parameters (teacher means), across families, with a family term",
     "estimate": 0.004, "ci_low": 0.001, "ci_high": 0.007, "unit": "teachers", "n": 7,
     "p_value": 0.0014, "p_holm": 0.014, "verdict": "supported", "verdict_holm": "supported", "note": ""},
    {"claim": "3. without calibration, student accuracy does not increase with teacher size", "family": "all",
     "statistic": SIZE_SLOPE.format("uncalibrated"), "estimate": 0.0006, "ci_low": -0.0007,
     "ci_high": 0.0019, "unit": "teachers", "n": 7, "p_value": 0.5, "p_holm": 1.0,
     "verdict": "equivalent", "verdict_holm": "equivalent", "note": ""},
    {"claim": "4. with calibration (compose), student accuracy increases with teacher size", "family": "all",
     "statistic": SIZE_SLOPE.format("compose"), "estimate": -5.53e-05, "ci_low": -0.0007,
     "ci_high": 0.0007, "unit": "teachers", "n": 7, "p_value": 0.9, "p_holm": 1.0,
     "verdict": "equivalent", "verdict_holm": "equivalent", "note": ""},
    # decided alone (its interval excludes zero), not after Holm: the box must say so
    {"claim": "4. with calibration (replace), student accuracy increases with teacher size", "family": "all",
     "statistic": SIZE_SLOPE.format("replace"), "estimate": 0.0022, "ci_low": 0.00045,
     "ci_high": 0.0037, "unit": "teachers", "n": 7, "p_value": 0.029, "p_holm": 0.23,
     "verdict": "supported", "verdict_holm": "underpowered", "note": ""},
    {"claim": "5. calibrated (compose) beats uncalibrated distillation for the same teacher", "family": "all",
     "statistic": "student acc, compose - uncalibrated, mean over teachers per seed",
     "estimate": -0.004, "ci_low": -0.011, "ci_high": 0.003, "unit": "seeds", "n": 5,
     "p_value": 5.8e-12, "p_holm": 1.1e-10, "verdict": "underpowered", "verdict_holm": "underpowered",
     "note": "about 12 seeds would detect the margin (80% power)"},
])
RAN_IN = "/elsewhere/runs/handmade-1201"  # where the study ran (papermill's study_dir) before it moved
# a 1x1 PNG: what a figure output holds, as far as the report is concerned
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _html(frame: pd.DataFrame) -> dict:
    t = table(frame)
    return {"text/html": t._repr_html_(), "text/plain": repr(t)}


def _code(outputs: list, tags=(), source="x = 1") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def _display(data: dict) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _figure() -> dict:
    return _display({"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"})


def _md(text: str, tags=()) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": list(tags)} if tags else {})


def make_report_study(root):
    """Write the study (claims.csv, study.json, two executed notebooks) under ``root``; return it."""
    root.mkdir(parents=True, exist_ok=True)
    CLAIMS.to_csv(root / "claims.csv", index=False)
    (root / "study.json").write_text(json.dumps({"profile": "handmade", "config": {
        "dataset": "fmnist", "teachers": ["resnet8", "resnet14"], "student": "resnet8", "seeds": [0, 1]}}))
    wide = pd.DataFrame({f"column_number_{i}": [0.123456 * i, 14.0] for i in range(30)})
    per_seed = pd.DataFrame({"arch": ["resnet8"] * 3, "seed": [0, 1, 2], "acc": [0.91, 0.92, 0.90],
                             "marker": ["APPENDIXMARKER"] * 3})
    first = nbformat.v4.new_notebook()
    first.cells = [
        _md("# 1. The first notebook\n\nIntro text with the loss $L = \\alpha\\,\\tau^2\\,\\mathrm{KL}$ "
            "and a price of \\$5, `code with $dollars$ inside`.\n\n"
            "$$\\frac{\\partial\\,\\mathrm{KL}}{\\partial z_{s,i}} = \\frac{1}{\\tau}\\,(q_i - p_i)$$"),
        _md("**Run alone.** NOTEBOOKONLYMARKER: this notebook reads the reference run.",
            tags=["notebook-only"]),
        _code([], tags=["parameters"]),
        # what notebooks print: where the study ran (moved since), and log lines among the facts
        _code([{"output_type": "stream", "name": "stdout",
                "text": "profile 'handmade' -> study folder runs/handmade-1201\nSTUDYFACTMARKER 798 "
                        "students, 112 teachers\n798 students planned\n"},
               {"output_type": "stream", "name": "stdout",
                "text": "799 log lines written to handmade-1201/log.txt\n"},
               _display({"text/plain": "12 teachers in /elsewhere/runs/handmade-1201/results.csv"})]),
        _md("## Why $\\tau^2$? (the derivation)\n\nThe gradient scales as $1/\\tau^2$."),
        _md("## EMPTYSECTIONMARKER heading with nothing under it"),
        _code([{"output_type": "stream", "name": "stdout", "text": "[abc123] epoch 1/3 loss 2.3\n"}]),
        _md("## Figures"),
        _code([_figure()], source='plots.save(plots.student_accuracy_vs_teacher_size(students), figures, '
                                  '"student_accuracy_vs_teacher_size");'),
        _code([_figure()], source="fig, ax = plt.subplots()"),
        _code([_display(_html(CLAIMS[["claim", "p_value", "p_holm", "verdict"]]))]),
        _code([{"output_type": "display_data", "data": {"text/plain": "NOTEMARKER: set teacher_variants"},
                 "metadata": {"kdcal_notebook_only": True}}]),
        _md("## A wide table"),
        _code([{"output_type": "stream", "name": "stdout",
                 "text": "- 1. a claim: SUPPORTED (slope = +0.000583, 95% CI [-0.000721, +0.00191]) " * 8}]),
        _code([_display(_html(wide))]),
        _code([_display(_html(per_seed))], tags=["appendix"]),
        _md("## OUTERMARKER section whose content is in a subsection\n\n### Inner\n\nInner text."),
    ]
    second = nbformat.v4.new_notebook()
    second.cells = [
        _md("# 2. The second notebook"),
        _md("## Summary table"),
        _code([_display(_html(pd.DataFrame({"arch": ["resnet8"], "acc": [0.9], "acc_low": [0.8],
                                            "acc_high": [1.0073], "needed": [14.0]})))]),
        # a table a notebook printed before p-values read "< 0.001": the report prints them so
        _code([_display({"text/html": pd.DataFrame({"comparison": ["OLDPTABLEMARKER"], "p_value": ["0.0000000000058"],
                                                    "p_holm": ["0.4279"], "p_floor": ["0.0014"]}).to_html(index=False),
                         "text/plain": "an old table"})]),
        _md("## Try this\n\n1. Something with $R^2$."),
    ]
    for name, nb in zip(NOTEBOOKS, (first, second)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["papermill"] = {"parameters": {"profile": "handmade", "study_dir": RAN_IN}}
        nbformat.write(nb, root / name)
    return root


if __name__ == "__main__":  # pragma: no cover - build one by hand: python tests/report_study.py DIR
    import sys
    from pathlib import Path

    from kdcal.report import build_report

    print(build_report(make_report_study(Path(sys.argv[1])), NOTEBOOKS, "handmade"))
