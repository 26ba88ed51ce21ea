"""A study folder with two small executed notebooks written by hand (no training): everything the
report must handle, each part with a marker word the tests look for."""
from __future__ import annotations

import json

import nbformat
import pandas as pd

from kdcal.tables import table

NOTEBOOKS = ["01_first.ipynb", "02_second.ipynb"]
CLAIMS = pd.DataFrame([
    {"claim": "1. larger teachers have higher ECE", "statistic": "slope", "estimate": 0.004,
     "ci_low": 0.001, "ci_high": 0.007, "unit": "teachers", "n": 7, "verdict": "supported", "note": ""},
    {"claim": "3. without calibration, student accuracy does not increase with teacher size",
     "statistic": "slope", "estimate": 0.0006, "ci_low": -0.0007, "ci_high": 0.0019, "unit": "teachers",
     "n": 7, "verdict": "equivalent", "note": ""},
    {"claim": "4. with calibration (compose), student accuracy increases with teacher size",
     "statistic": "slope", "estimate": -5.53e-05, "ci_low": -0.0007, "ci_high": 0.0007, "unit": "teachers",
     "n": 7, "verdict": "equivalent", "note": ""},
    {"claim": "5. calibrated (compose) beats uncalibrated distillation for the same teacher",
     "statistic": "diff", "estimate": -0.004, "ci_low": -0.011, "ci_high": 0.003, "unit": "seeds",
     "n": 5, "verdict": "underpowered", "note": "about 12 seeds would detect the margin (80% power)"},
])


def _html(frame: pd.DataFrame) -> dict:
    t = table(frame)
    return {"text/html": t._repr_html_(), "text/plain": repr(t)}


def _code(outputs: list, tags=()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("x = 1", metadata={"tags": list(tags)} if tags else {})
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def _display(data: dict) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": {}}


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
        _md("## Why $\\tau^2$? (the derivation)\n\nThe gradient scales as $1/\\tau^2$."),
        _md("## EMPTYSECTIONMARKER heading with nothing under it"),
        _code([{"output_type": "stream", "name": "stdout", "text": "[abc123] epoch 1/3 loss 2.3\n"}]),
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
        _md("## Try this\n\n1. Something with $R^2$."),
    ]
    for name, nb in zip(NOTEBOOKS, (first, second)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / name)
    return root


if __name__ == "__main__":  # pragma: no cover - build one by hand: python tests/report_study.py DIR
    import sys
    from pathlib import Path

    from kdcal.report import build_report

    print(build_report(make_report_study(Path(sys.argv[1])), NOTEBOOKS, "handmade"))
