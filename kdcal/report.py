"""One readable page from the executed notebooks, complete offline: a title block with the answer
box first (in percentage points, as the README), contents, the notebooks' narrative with their key
figures (code, logs, progress bars and notebook-only cells left out, empty sections dropped), the
references, and a folded appendix with the rest.

Notebook cells say where they go with tags: ``notebook-only`` (instructions and exercises for a
reader of the notebook, "Run alone ...", "Try this") stays out of the report; ``appendix``
(per-seed and per-teacher tables, secondary figures, derivations) goes into the folded appendix
at the end, under the notebook and section it came from. The tags, and the markdown, are those
of the repository's notebooks for the cells they share an id with (:mod:`kdcal.report_cells`),
so a study executed earlier renders with today's layout. Formulas are MathML rendered at build time (:mod:`kdcal.texmath`); the
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
from .report_cells import (ALT_METADATA, APPENDIX, NOTE_METADATA, NOTEBOOK_DIR, NOTEBOOK_ONLY,
                           as_written, clean_outputs, figure_alts, source_cells)
from .store import atomic_write_bytes
from .tables import PROJECT, display_path, table

SKIPPED_TAGS = {"parameters", "injected-parameters", NOTEBOOK_ONLY}
APPENDIX_TITLE = "Appendix: the details (per-seed and per-teacher tables, further figures, derivations)"
QUESTION = ("Are bigger, more accurate teachers worse teachers because they are over-confident, and "
            "does calibrating each teacher first make teacher size pay off for the student, as the "
            "paper's abstract says? The abstract names no data set, calibrator or distillation recipe: "
            "those, the claims' statistics and their margins are this study's reading (section 1). "
            "Each claim is tested with a rule fixed in advance.")
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
               "or teachers would). Accuracy and ECE effects are in percentage points, as in the "
               "README; the full claims table is in the appendix (\"The claims, tested\").")
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
{%- block data_png scoped -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
     alt="{{ output.metadata.get('ALT_KEY', '') | escape_html }}">
</div>
{%- endblock data_png -%}
{%- block data_jpg scoped -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/jpeg;base64,{{ output.data['image/jpeg'] | escape_html }}"
     alt="{{ output.metadata.get('ALT_KEY', '') | escape_html }}">
</div>
{%- endblock data_jpg -%}
""".replace("ALT_KEY", ALT_METADATA)
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
.jp-RenderedHTMLCommon .kdcal-answer th { vertical-align: top; text-align: left; padding: 0.2em 0.5em; }
.kdcal-answer th:nth-child(1), .kdcal-answer th:nth-child(2) { width: 24%; }
.kdcal-answer th:nth-child(3) { width: 42%; }
nav.kdcal-contents ul { list-style: none; padding-left: 0; margin: 0.3em 0 1em; }
nav.kdcal-contents li { display: inline; }
nav.kdcal-contents li + li::before { content: " | "; color: #888; }
.kdcal-answer td.kdcal-holds { color: #1a6b2a; font-weight: bold; }
.kdcal-answer td.kdcal-not-reproduced { color: #a02020; font-weight: bold; }
.kdcal-answer td.kdcal-open { color: #666; font-weight: bold; }
details.kdcal-appendix { margin: 2em 0; }
details.kdcal-appendix > summary { font-size: 1.5em; cursor: pointer;
                                   font-family: var(--jp-content-font-family); }
ol.kdcal-references { font-size: 0.92em; }
ol.kdcal-references li { margin-bottom: 0.2em; }
"""


def notebook_note(text: str) -> None:
    """Show ``text`` to the notebook's reader only ("no variants in this profile: set ..."): an
    output the report leaves out, where a cell also computes something and cannot be tagged."""
    from IPython.display import display

    display({"text/plain": text}, raw=True, metadata={NOTE_METADATA: True})


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
    """One line per notebook (h1) after the contents mark, with its sections (h2) on the same line,
    each linked; then the appendix. Headings inside the appendix are not listed."""
    groups: list[tuple[str, list[str]]] = []
    after = body[body.index(CONTENTS_MARK):]
    appendix = after.find('id="Appendix"')
    main = after if appendix < 0 else after[:appendix]
    for level, anchor, inner in re.findall(r'<h([12]) id="([^"]+)"[^>]*>(.*?)</h\1>', main, re.S):
        text = html.escape(html.unescape(re.sub(r"<[^>]+>|¶", "", inner)).strip())
        link = f'<a href="#{anchor}">{text}</a>'
        if level == "1":
            groups.append((link, []))
        elif groups:
            groups[-1][1].append(link)
    if appendix >= 0:
        groups.append((f'<a href="#Appendix">{APPENDIX_TITLE}</a>', []))
    items = "".join(f"<li>{top}" + (f" – {' · '.join(subs)}" if subs else "") + "</li>"
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


def _headings(cell) -> list[tuple[int, str]]:
    """(level, text) of each heading of a markdown cell, "#" and spaces stripped."""
    if cell.cell_type != "markdown":
        return []
    return [(level, text.lstrip("#").strip()) for level, text in _markdown_items(cell.source) if level]


def demote(source: str, by: int = 2) -> str:
    """A markdown text with every heading ``by`` levels lower (at most h6): a notebook's section
    under the appendix's "From <notebook>" heading."""
    return "\n".join(("#" * min(level + by, 6) + text[level:]) if level else text
                      for level, text in _markdown_items(source))


def _appendix_cells(appendix: list) -> list:
    """The appendix's cells, each notebook's under "From <notebook>" (h3); a code cell whose
    section heading is not in the appendix under that section's name (h4); the notebooks'
    own headings demoted below those."""
    import nbformat

    cells, notebook, section = [], None, None
    for title, where, c in appendix:
        if title != notebook:
            cells.append(nbformat.v4.new_markdown_cell(f"### From {title}" if title else "### More"))
            notebook, section = title, None
        if c.cell_type == "markdown":
            sections = [text for level, text in _headings(c) if level == 2]
            section = sections[-1] if sections else section
            c.source = demote(c.source)
        elif where and where != section:
            cells.append(nbformat.v4.new_markdown_cell(f"#### {where}"))
            section = where
        cells.append(c)
    return cells


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


def build_report(study_dir, notebooks: list[str], title: str = "kdcal study report",
                 source_dir=NOTEBOOK_DIR) -> Path:
    """Concatenate the executed notebooks under a title block; render with nbconvert, inputs left out.

    Each cell goes where its tags say (:func:`kdcal.report_cells.as_written`: those of the notebook
    of the same name in ``source_dir``, the repository's, for a cell it has, whose markdown text it
    shows too): ``notebook-only`` and parameters nowhere, ``appendix`` into the folded appendix,
    the rest on the page."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    study_root = Path(study_dir).resolve()
    main = [_raw_html(_title_block(study_root, title))]
    appendix = []  # (notebook title, section, cell)
    merged = None
    for name in notebooks:
        nb = nbformat.read(study_root / name, as_version=4)
        merged = merged or nb
        source = source_cells(name, source_dir)
        ran_in = nb.metadata.get("papermill", {}).get("parameters", {}).get("study_dir")
        heading = {1: None, 2: None}
        for c in nb.cells:
            tags = as_written(c, source)
            if tags & SKIPPED_TAGS:
                continue
            for level, text in _headings(c):
                if level in (1, 2):
                    heading[level] = text
                    if level == 1:
                        heading[2] = None
            if c.cell_type == "code":
                c.outputs = clean_outputs(c.get("outputs", []), study_root, ran_in)
                if not c.outputs:
                    continue
                figure_alts(c, heading[2] or heading[1] or "")
            if APPENDIX in tags:
                appendix.append((heading[1], heading[2], c))
            else:
                main.append(c)
    cells = drop_empty_sections(main)
    cells.append(_raw_html(f'<h1 id="References">References</h1>{references_html()}'))
    if appendix:
        cells.append(_raw_html(f'<details class="kdcal-appendix" id="Appendix">'
                               f"<summary>{APPENDIX_TITLE}</summary>", styled=False))
        cells += drop_empty_sections(_appendix_cells(appendix))
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
