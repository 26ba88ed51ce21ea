"""One readable page from the executed notebooks, complete offline: a title block with the answer
box first, contents, the notebooks' narrative, tables and figures (code, logs, progress bars and
notebook-only cells left out, empty sections dropped), the references, and a folded appendix.

Notebook cells say where they go with tags: ``notebook-only`` (instructions for a reader of the
notebook, "Run alone ...") stays out of the report; ``appendix`` (per-seed tables) goes into the
folded appendix at the end. Formulas are MathML rendered at build time (:mod:`kdcal.texmath`); the
page loads nothing from the network.
"""
from __future__ import annotations

import datetime
import html
import json
import re
import subprocess
from pathlib import Path

from . import texmath
from .answer import answer_box
from .references import PAPER, cite, references_html
from .store import atomic_write_bytes
from .tables import PROJECT, display_path, table

NOTEBOOK_ONLY, APPENDIX = "notebook-only", "appendix"  # cell tags
NOTE_METADATA = "kdcal_notebook_only"  # an output's metadata key: shown in the notebook, not in the report
SKIPPED_TAGS = {"parameters", "injected-parameters", NOTEBOOK_ONLY}
APPENDIX_TITLE = "Appendix: per-seed tables"
QUESTION = ("Are bigger, more accurate teachers worse teachers because they are over-confident? The "
            "paper's abstract says that larger teachers may be too over-confident for a student to "
            "imitate, and that after \"simple model calibration\" of each teacher, teacher size "
            "correlates positively with student performance. It names no data set, calibration method "
            "or distillation recipe: temperature scaling fitted on a validation split, the claims' "
            "statistics and their margins are this study's reading. This report re-runs that "
            "experiment and tests each claim with a rule fixed in advance.")
ANSWER_STUDY = "outputs/evidence-transfer"  # the study the README's answer comes from
# What each profile can decide, said first (in the report and in `kdcal run`'s output), so that a
# run that ends on `open` everywhere reads as designed, not as a failure.
SCOPES = {
    "smoke": "synthetic images for the tests: its numbers mean nothing.",
    "tutorial": ("a few minutes of teaching: 2 teachers and 2 seeds show the mechanics (over-confident "
                 "teachers, temperature scaling, distillation) and decide no claim; every verdict "
                 "is expected to be open."),
    "quick": ("make study's 15-minute demonstration: 4 teachers and 3 seeds run the whole "
              "pipeline but cannot decide the paper's claims (4 teachers cannot reach the 5% level "
              "as units; 3 seeds cannot bound the paired effects), so every claim is expected to "
              "read open."),
    "evidence-transfer": "the study the README's answer comes from.",
}


def scope_note(profile: str) -> str:
    """One sentence: what a run of ``profile`` can decide, and where the answer is."""
    where = (f"The answer is in README.md and {ANSWER_STUDY}/report.html."
             if profile != "evidence-transfer" else "")
    scope = SCOPES.get(profile, "a study of its own; its verdicts are in claims.csv.")
    return f"Profile {profile}: {scope} {where}".strip()


CONTENTS_MARK = '<div class="kdcal-contents-here"></div>'
ANSWER_HELP = ("<strong>holds</strong>: this run confirms what the paper says; <strong>not "
               "reproduced</strong>: this run finds the opposite, or no effect larger than the margin "
               "where the paper expects one; <strong>open</strong>: this design cannot tell (more seeds "
               "or teachers would; the section \"The claims, tested\" has the full table).")
# Offline page: nbconvert's lab template without its network scripts (require.js, MathJax, mermaid,
# widgets), with the report's own style after JupyterLab's, and raw HTML cells of the report's making
# emitted as they are.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">{{ resources.kdcal_css }}</style>
{%- endblock html_head_css -%}
{%- block rawcell scoped -%}
{%- if cell.metadata.get('kdcal_html') -%}{{ cell.source }}{%- else -%}{{ super() }}{%- endif -%}
{%- endblock rawcell -%}
"""
CSS = """
.kdcal-scroll { overflow-x: auto; max-width: 100%; margin-bottom: 1em; }
.jp-RenderedHTMLCommon .kdcal-scroll > table { table-layout: auto; margin: 0; }
/* program output wraps at spaces, never inside a word or a number; what cannot wrap scrolls */
.jp-OutputArea-output pre { white-space: pre-wrap; word-break: normal; overflow-wrap: normal;
                             overflow-x: auto; }
math[display="block"] { display: block math; margin: 0.6em 0; max-width: 100%; overflow-x: auto;
                        overflow-y: hidden; padding: 0.2em 0; }
.kdcal-meta { color: #555; }
.kdcal-answer { border: 2px solid #3a5a80; border-radius: 6px; padding: 0.2em 1em 0.6em;
                margin: 1em 0; }
.jp-RenderedHTMLCommon .kdcal-answer td,
.jp-RenderedHTMLCommon .kdcal-answer th { vertical-align: top; text-align: left; }
.kdcal-answer td.kdcal-holds { color: #1a6b2a; font-weight: bold; }
.kdcal-answer td.kdcal-not-reproduced { color: #a02020; font-weight: bold; }
.kdcal-answer td.kdcal-open { color: #666; font-weight: bold; }
details.kdcal-appendix { margin: 2em 0; }
details.kdcal-appendix > summary { font-size: 1.5em; cursor: pointer;
                                   font-family: var(--jp-content-font-family); }
ol.kdcal-references li { margin-bottom: 0.4em; }
"""
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"  # progress bars; text fallback "0%|"
# lines the study's `log` writes (`[run id] epoch 3/10 ...`, `[run id] done, skipped`): log.txt's, not the page's
LOG_LINE = re.compile(r"^\s*\[[^\]]+\] .*$|^== .*$")


def _clean_outputs(outputs: list, study_root: Path) -> list:
    """Drop stderr, widgets, log lines and notebook notes; replace the study folder's absolute path
    by its short name."""
    kept = []
    short = display_path(study_root)
    for out in outputs:
        if (out.get("name") == "stderr" or WIDGET_MIME in out.get("data", {})
                or out.get("metadata", {}).get(NOTE_METADATA)):
            continue
        if out.get("output_type") == "stream":
            lines = [ln for ln in out["text"].splitlines(keepends=True) if not LOG_LINE.match(ln)]
            if not "".join(lines).strip():
                continue
            out["text"] = "".join(lines)
        _replace_path(out, str(study_root), short)
        kept.append(out)
    return kept


def notebook_note(text: str) -> None:
    """Show ``text`` to the notebook's reader only ("no variants in this profile: set ..."): an
    output the report leaves out, where a cell also computes something and cannot be tagged."""
    from IPython.display import display

    display({"text/plain": text}, raw=True, metadata={NOTE_METADATA: True})


def _replace_path(out: dict, path: str, short: str) -> None:
    if "text" in out:
        out["text"] = out["text"].replace(path, short)
    for mime, value in out.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            out["data"][mime] = value.replace(path, short)


def _provenance() -> str:
    """Today's date (UTC) and the commit of the code that built the page, marked when it has
    uncommitted changes in kdcal/ or notebooks/; "commit unknown" outside a git checkout."""
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    try:
        commit = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT), "status", "--porcelain",
                                "--untracked-files=no", "--", "kdcal", "notebooks"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        code = f"commit <code>{commit}</code>" + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        code = "commit unknown (not a git checkout)"
    return f"Built {date} from kdcal {code}."


def _answer_section(study_root: Path) -> str:
    """The answer box (:func:`kdcal.answer.answer_box`) from the study's claims.csv, as HTML."""
    claims_csv = study_root / "claims.csv"
    if not claims_csv.exists():
        return ""
    import pandas as pd

    box = table(answer_box(pd.read_csv(claims_csv)))._repr_html_()
    box = re.sub(r"<td>(holds|not reproduced|open)</td>",
                 lambda m: f'<td class="kdcal-{m.group(1).replace(" ", "-")}">{m.group(1)}</td>', box)
    return (f'<section class="kdcal-answer"><h2 id="The-answer">The answer, claim by claim</h2>'
            f"<p>{ANSWER_HELP}</p>{box}</section>")


def _scope_section(study_root: Path) -> str:
    study_json = study_root / "study.json"
    if not study_json.exists():
        return ""
    profile = str(json.loads(study_json.read_text()).get("profile", ""))
    return f'<p class="kdcal-scope"><strong>What this run can decide.</strong> {html.escape(scope_note(profile))}</p>'


def _title_block(study_root: Path, title: str) -> str:
    """HTML for the top of the page: title, date and commit, paper, answer box, question, run, contents."""
    parts = [f'<h1 id="kdcal-title">{html.escape(title)}</h1>',
             f'<p class="kdcal-meta">{_provenance()}</p>',
             f"<p><strong>Paper.</strong> {cite(PAPER).html()}</p>",
             _scope_section(study_root),
             _answer_section(study_root),
             f"<p><strong>The question.</strong> {html.escape(QUESTION)}</p>"]
    study_json = study_root / "study.json"
    if study_json.exists():
        info = json.loads(study_json.read_text())
        cfg = info.get("config", {})
        facts = [f"profile <code>{html.escape(str(info.get('profile')))}</code>"]
        for key in ("dataset", "teachers", "student", "seeds"):
            if key in cfg:
                value = cfg[key]
                text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                facts.append(f"{key} {html.escape(text)}")
        parts.append("<p><strong>This run.</strong> " + "; ".join(facts) + ". Training logs are in "
                     "<code>log.txt</code> in the study folder, not on this page.</p>")
    parts += ['<h2 id="Contents">Contents</h2>', CONTENTS_MARK]
    return "\n".join(p for p in parts if p)


def _contents(body: str) -> str:
    """A nested list of the notebooks' headings (h1, h2) after the contents mark, linked to them,
    then the appendix."""
    groups: list[tuple[str, list[str]]] = []
    after = body[body.index(CONTENTS_MARK):]
    for level, anchor, inner in re.findall(r'<h([12]) id="([^"]+)"[^>]*>(.*?)</h\1>', after, re.S):
        text = html.escape(html.unescape(re.sub(r"<[^>]+>|¶", "", inner)).strip())
        link = f'<a href="#{anchor}">{text}</a>'
        if level == "1":
            groups.append((link, []))
        elif groups:
            groups[-1][1].append(link)
    if 'id="Appendix"' in after:
        groups.append((f'<a href="#Appendix">{APPENDIX_TITLE}</a>', []))
    items = "".join(f"<li>{top}<ul>{''.join(f'<li>{s}</li>' for s in subs)}</ul></li>"
                    for top, subs in groups)
    return f'<nav class="kdcal-contents"><ul>{items}</ul></nav>'


HEADING = re.compile(r"^(#{1,6})\s+\S")
FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,})")


def _markdown_items(source: str) -> list[tuple[int, str]]:
    """A markdown text as (level, text) items: a heading line (level 1-6) or the text between
    headings (level 0); lines inside fenced code are never headings."""
    items, buf, fence = [], [], None
    for line in source.split("\n"):
        opened = FENCE_LINE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0]
        elif fence is not None and opened and opened.group(1)[0] == fence:
            fence = None
        elif fence is None and HEADING.match(line):
            if buf:
                items.append((0, "\n".join(buf)))
            items.append((len(HEADING.match(line).group(1)), line))
            buf = []
            continue
        buf.append(line)
    if buf:
        items.append((0, "\n".join(buf)))
    return items


def drop_empty_sections(cells: list) -> list:
    """``cells`` without the headings that have nothing under them before the next heading of
    the same or a higher level (a code cell with outputs, a raw cell or any text is something)."""
    flat = []  # (cell index, level, text, is content)
    for i, c in enumerate(cells):
        if c.cell_type == "markdown":
            flat += [(i, lvl, text, lvl == 0 and bool(text.strip()))
                     for lvl, text in _markdown_items(c.source)]
        else:
            flat.append((i, 0, None, True))
    keep = []
    for j, (_, level, _, _) in enumerate(flat):
        if level == 0:
            keep.append(True)
            continue
        has = False
        for _, lvl, _, content in flat[j + 1:]:
            if lvl and lvl <= level:
                break
            has = has or content
        keep.append(has)
    out = []
    for i, c in enumerate(cells):
        if c.cell_type != "markdown":
            out.append(c)
            continue
        texts = [text for (ci, _, text, _), k in zip(flat, keep) if ci == i and k]
        source = "\n".join(texts)
        if source.strip():
            c.source = source
            out.append(c)
    return out


def _raw_html(source: str, styled: bool = True):
    """A cell of the report's own HTML; ``styled``: in the boxes that give notebook text its style."""
    import nbformat

    if styled:
        source = (f'<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell"><div class="jp-RenderedHTMLCommon '
                  f'jp-RenderedMarkdown jp-MarkdownOutput">{source}</div></div>')
    return nbformat.v4.new_raw_cell(source, metadata={"kdcal_html": True})


def _section_name(cells: list) -> str:
    """The last h1 and h2 above the end of ``cells``, "1. Train ...: The ladder", for the appendix."""
    names: dict[int, str] = {}
    for c in cells:
        if c.cell_type == "markdown":
            for level, text in _markdown_items(c.source):
                if level in (1, 2):
                    names[level] = text.lstrip("#").strip()
                    if level == 1:
                        names.pop(2, None)
    return ": ".join(names[k] for k in sorted(names))


def _protect_math(cell, formulas: texmath.Formulas) -> None:
    """Formulas in a markdown cell, or in a code cell's markdown outputs, swapped for placeholders."""
    if cell.cell_type == "markdown":
        cell.source = texmath.protect(cell.source, formulas)
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if isinstance(data.get("text/markdown"), str):
            data["text/markdown"] = texmath.protect(data["text/markdown"], formulas)


def wrap_tables(page: str) -> str:
    """Every table in a box of its own that scrolls sideways, so no column is ever cut off."""
    return re.sub(r"<table\b.*?</table>", lambda m: f'<div class="kdcal-scroll">{m.group(0)}</div>',
                  page, flags=re.S)


def build_report(study_dir, notebooks: list[str], title: str = "kdcal study report") -> Path:
    """Concatenate the executed notebooks under a title block; render with nbconvert, inputs left out."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    study_root = Path(study_dir).resolve()
    main = [_raw_html(_title_block(study_root, title))]
    appendix = []
    merged = None
    for name in notebooks:
        nb = nbformat.read(study_root / name, as_version=4)
        merged = merged or nb
        start = len(main)
        for c in nb.cells:
            tags = set(c.metadata.get("tags", []))
            if tags & SKIPPED_TAGS:
                continue
            if c.cell_type == "code":
                c.outputs = _clean_outputs(c.get("outputs", []), study_root)
                if not c.outputs:
                    continue
            if APPENDIX in tags:
                appendix.append((_section_name(main[start:]), c))
            else:
                main.append(c)
    cells = drop_empty_sections(main)
    cells.append(_raw_html(f'<h1 id="References">References</h1>{references_html()}'))
    if appendix:
        cells.append(_raw_html(f'<details class="kdcal-appendix" id="Appendix">'
                               f"<summary>{APPENDIX_TITLE}</summary>", styled=False))
        shown = None
        for section, c in appendix:
            if section and section != shown:
                cells.append(nbformat.v4.new_markdown_cell(f"#### From {section}"))
                shown = section
            cells.append(c)
        cells.append(_raw_html("</details>", styled=False))
    formulas = texmath.Formulas()
    for c in cells:
        _protect_math(c, formulas)
    merged.cells = cells
    merged.metadata["title"] = title
    merged.metadata.pop("widgets", None)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            extra_loaders=[jinja2.DictLoader({"kdcal_report.html.j2": TEMPLATE})],
                            template_file="kdcal_report.html.j2")
    body, _ = exporter.from_notebook_node(merged, resources={"kdcal_css": CSS})
    body = body.replace(CONTENTS_MARK, _contents(body), 1)
    body = wrap_tables(texmath.restore(body, formulas))
    body = body.replace(str(study_root), display_path(study_root))
    out = study_root / "report.html"
    atomic_write_bytes(body.encode(), out)
    return out
