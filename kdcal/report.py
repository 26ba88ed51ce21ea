"""One readable page from the executed notebooks: a title block with the verdicts, contents, then
the notebooks' narrative, tables and figures, with code, logs and progress bars left out."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

from .store import atomic_write_bytes
from .tables import display_path, table

PAPER = ("Lehan Yang and Jincen Song, <em>Rethinking the Knowledge Distillation From the Perspective "
         "of Model Calibration</em>, arXiv:2111.01684 (2021)")
QUESTION = ("Are bigger, more accurate teachers worse teachers because they are over-confident? The "
            "paper claims that larger teachers are less calibrated, that without calibration a bigger "
            "teacher does not give a better student, and that once each teacher is calibrated "
            "(temperature scaling) teacher size and student accuracy go together. This report "
            "re-runs that experiment and tests each claim with a rule fixed in advance.")
CONTENTS_MARK = '<div class="kdcal-contents-here"></div>'
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"  # progress bars; text fallback "0%|"
# lines the study's `log` writes (`[run id] epoch 3/10 ...`, `[run id] done, skipped`): log.txt's, not the page's
LOG_LINE = re.compile(r"^\s*\[[^\]]+\] .*$|^== .*$")


def _clean_outputs(outputs: list, study_root: Path) -> list:
    """Drop stderr, widgets and log lines; replace the study folder's absolute path by its short name."""
    kept = []
    short = display_path(study_root)
    for out in outputs:
        if out.get("name") == "stderr" or WIDGET_MIME in out.get("data", {}):
            continue
        if out.get("output_type") == "stream":
            lines = [ln for ln in out["text"].splitlines(keepends=True) if not LOG_LINE.match(ln)]
            if not "".join(lines).strip():
                continue
            out["text"] = "".join(lines)
        _replace_path(out, str(study_root), short)
        kept.append(out)
    return kept


def _replace_path(out: dict, path: str, short: str) -> None:
    if "text" in out:
        out["text"] = out["text"].replace(path, short)
    for mime, value in out.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            out["data"][mime] = value.replace(path, short)


def _title_block(study_root: Path, title: str) -> str:
    """Markdown (with HTML) for the top of the page: paper, question, verdicts, run, contents."""
    parts = [f"# {html.escape(title)}", f"**Paper.** {PAPER}.", f"**The question.** {QUESTION}"]
    claims_csv = study_root / "claims.csv"
    if claims_csv.exists():
        import pandas as pd

        claims = pd.read_csv(claims_csv)
        first = [c for c in ("claim", "verdict") if c in claims.columns]
        claims = claims[first + [c for c in claims.columns if c not in first]]
        parts += ["## Verdicts", "Each claim as one statistic with a 95% interval over seeds; the "
                  "verdict is computed by the rule stated in the analysis section, not typed.",
                  table(claims)._repr_html_()]
    study_json = study_root / "study.json"
    if study_json.exists():
        info = json.loads(study_json.read_text())
        cfg = info.get("config", {})
        facts = [f"profile `{info.get('profile')}`"]
        for key in ("dataset", "teachers", "student", "seeds"):
            if key in cfg:
                value = cfg[key]
                facts.append(f"{key} {', '.join(map(str, value)) if isinstance(value, list) else value}")
        parts.append("**This run.** " + "; ".join(facts) + ". Training logs are in `log.txt` in the "
                     "study folder, not on this page.")
    parts += ["## Contents", CONTENTS_MARK]
    return "\n\n".join(parts)


def _contents(body: str) -> str:
    """A nested list of the notebooks' headings (h1, h2) after the contents mark, linked to them."""
    groups: list[tuple[str, list[str]]] = []
    after = body[body.index(CONTENTS_MARK):]
    for level, anchor, inner in re.findall(r'<h([12]) id="([^"]+)"[^>]*>(.*?)</h\1>', after, re.S):
        text = html.escape(html.unescape(re.sub(r"<[^>]+>|¶", "", inner)).strip())
        link = f'<a href="#{anchor}">{text}</a>'
        if level == "1":
            groups.append((link, []))
        elif groups:
            groups[-1][1].append(link)
    items = "".join(f"<li>{top}<ul>{''.join(f'<li>{s}</li>' for s in subs)}</ul></li>"
                    for top, subs in groups)
    return f'<nav class="kdcal-contents"><ul>{items}</ul></nav>'


def build_report(study_dir, notebooks: list[str], title: str = "kdcal study report") -> Path:
    """Concatenate the executed notebooks under a title block; render with nbconvert, inputs left out."""
    import nbformat
    from nbconvert import HTMLExporter

    study_root = Path(study_dir).resolve()
    cells = [nbformat.v4.new_markdown_cell(_title_block(study_root, title))]
    merged = None
    for name in notebooks:
        nb = nbformat.read(study_root / name, as_version=4)
        merged = merged or nb
        for c in nb.cells:
            if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", [])):
                continue
            if c.cell_type == "code":
                c.outputs = _clean_outputs(c.get("outputs", []), study_root)
            cells.append(c)
    merged.cells = cells
    merged.metadata["title"] = title
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(merged)
    body = body.replace(CONTENTS_MARK, _contents(body), 1)
    body = body.replace(str(study_root), display_path(study_root))
    out = study_root / "report.html"
    atomic_write_bytes(body.encode(), out)
    return out
