"""The report page, its tables for people, the answer box and the formulas: fast checks on a study
written by hand (tests/report_study.py), no training and no browser."""
import html
import json
import math
import re
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest

from kdcal import answer, references, texmath
from kdcal.report import APPENDIX_TITLE, build_report, demote, drop_empty_sections, scope_note
from kdcal.report_cells import FIGURE_ALT, LOG_LINE, rename_study
from kdcal.tables import (NO_VALUE, P_COLUMN, PROJECT, format_interval, format_number, format_p,
                          format_value,
                          metric_bounds, table)
from report_study import CLAIMS, NOTEBOOKS, RAN_IN, make_report_study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = make_report_study(tmp_path_factory.mktemp("report") / "study")
    return build_report(root, NOTEBOOKS, "A handmade study").read_text()


def visible_text(page: str) -> str:
    body = page[page.index("<body"):]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"<[^>]+>", " ", body)


# ---------------------------------------------------------------- the page
def test_page_loads_nothing_from_the_network(report):
    for tag in re.findall(r"<(?:script|link|img|iframe|source|embed|object)\b[^>]*>", report):
        assert not re.search(r"""(?:src|href|data)\s*=\s*["']?(?:https?:)?//""", tag), tag
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", report), "a stylesheet from the network"
    assert "mathjax" not in report.lower() and "require.js" not in report.lower()


def test_formulas_are_mathml_not_tex(report):
    text = visible_text(report)
    assert "\\tau" not in text and "\\frac" not in text and "$$" not in text
    assert not re.search(r"\$[^$\s][^$]*\$", text.replace("$dollars$", "")), "raw $...$ on the page"
    assert report.count("<math") >= 5 and 'display="block"' in report
    # what is not a formula stays as it was: an escaped dollar, a code span
    assert "a price of $5" in text and "<code>code with $dollars$ inside</code>" in report
    # a heading with a formula: MathML in the heading and in the contents, plain text in the id
    heading = re.search(r'<h2 id="Why-([^"]*)\?-\(the-derivation\)">(.*?)</h2>', report, re.S)
    assert heading and "<math" in heading.group(2) and "<" not in heading.group(1)
    assert re.search(r'<a href="#Why-[^"]*">Why <math', report)


def test_every_table_sits_in_a_box_that_scrolls(report):
    tables = re.findall(r"(.{0,40})<table\b", report, re.S)
    assert len(tables) >= 4
    for before in tables:
        assert before.endswith('<div class="kdcal-scroll">'), before
    css = re.search(r"\.kdcal-scroll\s*\{([^}]*)\}", report).group(1)
    assert "overflow-x: auto" in css


def test_appendix_is_folded_at_the_end_and_notebook_only_cells_are_dropped(report):
    details = re.search(r'<details class="kdcal-appendix" id="Appendix">(.*?)</details>', report, re.S)
    assert details, "no appendix"
    assert f"<summary>{APPENDIX_TITLE}</summary>" in details.group(1)
    assert "APPENDIXMARKER" in details.group(1) and report.count("APPENDIXMARKER") == 3  # 3 rows, once
    # where it came from: its notebook (h3), then its section (h4)
    assert re.search(r"<h3[^>]*>From 1\. The first notebook.*?<h4[^>]*>A wide table.*?APPENDIXMARKER",
                     details.group(1), re.S)
    assert "<details open" not in report
    assert report.index("<details") > report.index('id="References"')
    assert "NOTEBOOKONLYMARKER" not in report and "Run alone" not in report
    assert "NOTEMARKER" not in report  # an output marked by report.notebook_note


def test_notebook_note_marks_its_output_for_the_notebook_only(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from kdcal.report import NOTE_METADATA, notebook_note

    seen = []
    monkeypatch.setattr(InteractiveShell.instance().display_pub, "publish",
                        lambda data, metadata=None, **kw: seen.append((data, metadata)))
    notebook_note("no variants in this profile")
    assert seen == [({"text/plain": "no variants in this profile"}, {NOTE_METADATA: True})]


def test_empty_sections_and_log_lines_are_dropped(report):
    assert "EMPTYSECTIONMARKER" not in report
    assert "OUTERMARKER" in report  # its content is in a subsection
    assert "epoch 1/3" not in report


def test_title_block_answer_first_then_question_contents_and_references_last(report):
    title = report.index('id="kdcal-title"')
    box = report.index('class="kdcal-answer"')
    question = report.index("The question.")
    contents = report.index('class="kdcal-contents"')
    first = report.index('id="1.-The-first-notebook"')
    refs = report.index('id="References"')
    assert title < box < question < contents < first < refs
    head = report[title:box]
    commit = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    assert re.search(r"Built \d{4}-\d{2}-\d{2} from kdcal commit <code>" + commit, head)
    box_html = report[box:question]
    for claim in CLAIMS["claim"]:
        assert claim in box_html
    assert box_html.count('class="kdcal-holds"') == 2 and 'class="kdcal-not-reproduced"' in box_html
    for ref in references.REFERENCES.values():
        assert ref.title in report[refs:] and ref.authors in report[refs:]


def test_tables_on_the_page_have_numbers_for_people(report):
    text = visible_text(report)
    assert "14.0000" not in text and "e-05" not in text
    assert not re.search(r"-0(?:\.0+)?(?![\d.])", text), "a negative zero"
    assert "1.0073" not in text  # the accuracy interval ends at 1


def test_empty_section_rule_keeps_text_and_code_and_drops_bare_headings():
    cells = [nbformat.v4.new_markdown_cell("# Top\n## Empty\n## Full\ntext"),
             nbformat.v4.new_markdown_cell("## Bare"),
             nbformat.v4.new_markdown_cell("## With code"),
             nbformat.v4.new_code_cell("x"),
             nbformat.v4.new_markdown_cell("```\n# a comment in code, not a heading\n```")]
    out = drop_empty_sections(cells)
    sources = [c.source for c in out]
    assert sources[0] == "# Top\n## Full\ntext"
    assert "## Bare" not in sources and "## With code" in sources
    assert "# a comment in code" in sources[-1]


# ---------------------------------------------------------------- formulas
def test_protect_keeps_code_and_escaped_dollars_and_restore_puts_mathml_back():
    f = texmath.Formulas()
    md = "a $x^2$ b \\$3 `$not$` c $$\\frac{1}{2}$$\n```\n$fenced$\n```\n$5 and $6"
    out = texmath.protect(md, f)
    assert out.count("kdcalmath") == 2 and "`$not$`" in out and "\\$3" in out and "$fenced$" in out
    assert "$5 and $6" in out  # money, not a formula
    page = texmath.restore(f'<h2 id="{out[2:14]}">{out}</h2>', f)
    assert page.count("<math") == 2 and "<msup>" in page and "<mfrac>" in page


def test_every_formula_in_the_notebooks_converts():
    f = texmath.Formulas()
    for path in sorted((PROJECT / "notebooks").glob("*.py")):
        comments = "\n".join(line[2:] for line in path.read_text().splitlines() if line.startswith("# "))
        texmath.protect(comments, f)
    assert len(f.mathml) > 20 and f.failed == []


# ---------------------------------------------------------------- numbers for people
@pytest.mark.parametrize("value,text", [
    (14.0, "14"), (-5.53e-05, "-0.000055"), (-0.0, "0"), (0.0, "0"), (-4e-05, "-0.000040"),
    (0.9123456, "0.9123"), (0.0528864, "0.0529"), (1.70234, "1.702"), (123.456, "123.5"),
    (272474.0, "272474"), (12345.6, "12346"), (0.000396825, "0.00040"), (3, "3"), (True, "True"),
    (math.nan, NO_VALUE), (math.inf, NO_VALUE), (-math.inf, NO_VALUE),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_number_never_scientific_or_negative_zero():
    for v in (1e-9, -3.2e-7, 5.53e-05, -0.00049, 1e6 + 0.5, -1e-12):
        s = format_number(v)
        assert "e" not in s and s not in ("-0", "-0.0", "-0.000") and float(s) != 0


def test_intervals_are_clipped_to_what_is_possible():
    assert format_interval(0.99, 1.0073, bounds=(0, 1)) == "[0.9900, 1]"
    assert format_interval(-0.0046, 0.01, bounds=(0, 1)) == "[0, 0.0100]"
    assert format_interval(-0.3, 0.2) == "[-0.3000, 0.2000]"  # a difference: no bounds
    assert format_interval(-math.inf, math.inf) == NO_VALUE
    assert format_value((0.95, 1.02), bounds=(0, 1)) == "[0.9500, 1]"
    assert metric_bounds("train_acc_high") == (0, 1) and metric_bounds("ece_cal_low") == (0, 1)
    assert metric_bounds("nll_low") == (0, math.inf) and metric_bounds("val_acc") == (0, 1)
    for name in ("ci_low", "kd_gain", "teacher_params", "estimate", "student_acc_uncal"):
        assert metric_bounds(name) is None, name


def test_table_clips_by_column_name_and_by_bounds_given():
    frame = pd.DataFrame({"arch": ["a"], "acc_high": [1.0073], "ece_low": [-0.0046], "nll_low": [-0.2],
                          "ci_low": [-0.2], "needed": [14.0]})
    row = table(frame).frame.iloc[0]
    assert (row["acc_high"], row["ece_low"], row["nll_low"], row["ci_low"], row["needed"]) == \
        ("1", "0", "0", "-0.2000", "14")
    seeds = pd.DataFrame({"mode": ["x"], "mean": [0.99], "ci_low": [0.97], "ci_high": [1.0073]})
    assert table(seeds, bounds=(0, 1)).frame.iloc[0]["ci_high"] == "1"
    with pytest.raises(ValueError, match="bounds"):
        table(seeds, bounds=(1, 0))


# ---------------------------------------------------------------- the answer box
def _claims(rows):
    return pd.DataFrame(rows)


@pytest.mark.parametrize("claim,verdict,low,high,expected", [
    # a claim that predicts an effect
    ("1. larger teachers have higher ECE", "supported", 0.001, 0.01, "holds"),
    ("1. larger teachers have higher ECE", "contradicted", -0.01, -0.001, "not reproduced"),
    ("1. larger teachers have higher ECE", "equivalent", -0.001, 0.001, "not reproduced"),
    ("1. larger teachers have higher ECE", "underpowered", -0.01, 0.01, "open"),
    ("2. temperature scaling lowers ECE and NLL for every teacher", "supported", -0.06, -0.04, "holds"),
    ("4. with calibration (replace), student accuracy increases with teacher size", "supported",
     0.001, 0.002, "holds"),
    ("4. with calibration (replace), student accuracy increases with teacher size", "equivalent",
     -0.001, 0.001, "not reproduced"),
    ("4. calibration and teacher size: interaction slope", "supported", 0.001, 0.002, "holds"),
    ("4. calibration and teacher size: interaction slope", "contradicted", -0.002, -0.001,
     "not reproduced"),
    ("5. calibrated (compose) beats uncalibrated distillation for the same teacher", "equivalent",
     -0.003, 0.003, "not reproduced"),
    # negligible: an effect shown but inside the margin, on either side: not one worth the name
    ("5. calibrated (compose) beats uncalibrated distillation for the same teacher", "negligible",
     0.001, 0.003, "not reproduced"),
    ("5. calibrated (compose) beats uncalibrated distillation for the same teacher", "negligible",
     -0.003, -0.001, "not reproduced"),
    # claim 3 predicts that accuracy does NOT increase
    ("3. without calibration, student accuracy does not increase with teacher size", "equivalent",
     -0.0007, 0.0019, "holds"),
    ("3. without calibration, student accuracy does not increase with teacher size", "supported",
     -0.003, -0.001, "holds"),      # a decrease is not an increase
    ("3. without calibration, student accuracy does not increase with teacher size", "contradicted",
     0.001, 0.003, "not reproduced"),
    ("3. without calibration, student accuracy does not increase with teacher size", "underpowered",
     -0.01, 0.01, "open"),
    ("3. without calibration, student accuracy does not increase with teacher size", "negligible",
     0.0002, 0.0009, "holds"),      # an increase smaller than the margin is no increase to speak of
    ("3. without calibration, student accuracy does not increase with teacher size", "negligible",
     -0.0009, -0.0002, "holds"),
    # unknown claims and verdicts
    ("9. a claim nobody wrote down", "supported", 0.1, 0.2, "open"),
    ("no number at all", "supported", 0.1, 0.2, "open"),
    ("1. larger teachers have higher ECE", "bewildered", 0.1, 0.2, "open"),
])
def test_answer_box_maps_each_verdict_by_the_claims_direction(claim, verdict, low, high, expected):
    box = answer.answer_box(_claims([{"claim": claim, "verdict": verdict, "estimate": (low + high) / 2,
                                      "ci_low": low, "ci_high": high, "n": 5, "unit": "seeds"}]))
    assert list(box.columns) == ["claim", "the paper says", "this study finds", "answer"]
    assert box.loc[0, "answer"] == expected
    assert box.loc[0, "claim"] == claim and verdict in box.loc[0, "this study finds"]


def test_answer_box_prefers_the_holm_verdict_where_the_table_has_one():
    rows = [{"claim": "1. larger teachers have higher ECE", "verdict": "supported", "ci_low": 0.001,
             "ci_high": 0.01, "family": "all", "p_holm": 0.2, "verdict_holm": "underpowered"},
            {"claim": "2. temperature scaling lowers ECE and NLL for every teacher",
             "verdict": "supported", "ci_low": -0.01, "ci_high": -0.001, "family": "all",
             "p_holm": 0.01, "verdict_holm": None}]
    assert list(answer.answer_box(_claims(rows))["answer"]) == ["open", "holds"]


def test_answer_box_shows_a_size_claim_once_across_families():
    rows = [{"claim": "1. larger teachers have higher ECE", "family": fam, "verdict": v,
             "estimate": est, "ci_low": lo, "ci_high": hi, "n": n, "unit": "teachers"}
            for fam, v, est, lo, hi, n in (("depth", "underpowered", 0.009, -np.inf, np.inf, 4),
                                           ("width", "underpowered", 0.001, -np.inf, np.inf, 3),
                                           ("all", "supported", 0.005, 0.001, 0.01, 7))]
    box = answer.answer_box(_claims(rows))
    assert len(box) == 1 and box.loc[0, "answer"] == "holds"
    assert box.loc[0, "this study finds"] == (
        "supported: +0.50 [+0.10, +1.00] ECE points; 7 teachers (both ladders, with a family term)")
    # without a test across families, the claim's first row (the depth ladder here)
    box = answer.answer_box(_claims(rows[:2]))
    assert len(box) == 1 and "(depth ladder)" in box.loc[0, "this study finds"]


def test_answer_box_says_what_the_paper_says_in_its_own_words():
    for key, says in answer.PAPER_SAYS.items():
        for quote in re.findall(r'"([^"]+)"', says):
            assert quote in references.PAPER_ABSTRACT, (key, quote)
    box = answer.answer_box(CLAIMS)
    assert box.loc[0, "the paper says"].startswith('"the larger teacher model may be too over-confident"')
    assert box.loc[0, "this study finds"].startswith(
        "supported: +0.40 [+0.10, +0.70] ECE points per doubling (p = 0.001, after Holm 0.014); 7 teachers")
    assert "-0.01 [-0.07, +0.07] accuracy points per doubling" in box.loc[2, "this study finds"]
    assert "e-05" not in box.to_string()
    assert box.loc[3, "the paper says"] == "as above"  # the same claim as the row before
    assert "about 12 seeds" in box.loc[4, "this study finds"]
    with pytest.raises(KeyError, match="no column"):
        answer.answer_box(pd.DataFrame({"claim": ["1. x"]}))


def test_references_are_complete_and_cite_names_the_known_ones():
    for key, ref in references.REFERENCES.items():
        assert ref.authors and ref.title and ref.year and ref.venue and ref.url.startswith("https://")
        assert str(ref.year) in ref.text() and ref.title in ref.markdown()
    assert references.cite(references.PAPER).venue == "arXiv:2111.01684"
    listing = references.references_markdown().splitlines()
    assert len(listing) == len(references.REFERENCES)
    assert listing[0].startswith("1. Lehan Yang and Jincen Song")
    with pytest.raises(KeyError, match="known: yang2021"):
        references.cite("nobody2099")


def test_the_first_lines_say_what_the_run_can_decide_and_where_the_answer_is(tmp_path):
    """A quick (or tutorial) report that reads `open` everywhere says first that this is
    expected, and points to the study the answer comes from."""
    root = make_report_study(tmp_path / "study")
    info = json.loads((root / "study.json").read_text()) if (root / "study.json").exists() else {}
    (root / "study.json").write_text(json.dumps({**info, "profile": "quick"}))
    page = build_report(root, NOTEBOOKS, "quick").read_text()
    scope = page.index('class="kdcal-scope"')
    assert scope < page.index('class="kdcal-answer"') < page.index("The question.")
    said = re.sub(r"<[^>]+>", " ", page[scope:page.index('class="kdcal-answer"')])
    assert "cannot decide" in said and "expected to read open" in said
    assert "outputs/evidence-transfer/report.html" in said and "README.md" in said


@pytest.mark.parametrize("profile", ["smoke", "tutorial", "quick", "evidence-transfer", "other"])
def test_every_scope_note_names_the_profile_and_the_answer_elsewhere(profile):
    note = scope_note(profile)
    assert note.startswith(f"Profile {profile}: ")
    assert ("outputs/evidence-transfer/report.html" in note) == (profile != "evidence-transfer")


# ---------------------------------------------------------------- issue 39: what a reader of the page meets
def test_every_image_has_alt_text_that_says_what_it_shows(report):
    """nbconvert's placeholder never reaches the page: a saved figure is described by its name's
    caption, a figure drawn without a name by the section it sits in."""
    images = re.findall(r"<img\b[^>]*>", report)
    assert len(images) == 2
    assert "No description has been provided" not in report
    alts = [html.unescape(re.search(r'\balt="([^"]*)"', tag).group(1)) for tag in images]
    assert alts[0] == FIGURE_ALT["student_accuracy_vs_teacher_size"]
    assert alts[1] == "A figure of the section Figures."
    assert all(len(alt) > 15 for alt in alts)


@pytest.mark.parametrize("value,text", [
    (5.8e-12, "< 0.001"), (0.000999, "< 0.001"), (0.001, "0.001"), (0.00139, "0.001"),
    (0.0139, "0.014"), (0.05, "0.050"), (0.0999, "0.10"), (0.2333, "0.23"), (0.999, "1"), (1.0, "1"),
    (math.nan, NO_VALUE), (None, NO_VALUE),
])
def test_format_p(value, text):
    assert format_p(value) == text


def test_p_values_below_0001_read_less_than_0001(report):
    """In every table (p_value, p_holm, a regimes table's *_p) and in the answer box."""
    text = html.unescape(visible_text(report))
    assert "0.0000000000058" not in report and "0.00000000011" not in report and "e-1" not in text
    assert "< 0.001" in text
    frame = table(pd.DataFrame({"p_value": [5.8e-12], "p_holm": [0.0139], "size_cal_p": [0.5],
                                "p_floor": [0.0014]})).frame.iloc[0]
    assert list(frame) == ["< 0.001", "0.014", "0.50", "0.0014"]  # p_floor is a bound, not a p-value


def test_answer_box_effects_are_in_points_as_in_the_readme(report):
    """Accuracy and ECE differences and slopes x100, with their units; NLL as it is."""
    box = html.unescape(re.sub(r"<[^>]+>", " ", report[report.index('class="kdcal-answer"'):
                                                       report.index("The question.")]))
    assert "+0.40 [+0.10, +0.70] ECE points per doubling" in box
    assert "-0.40 [-1.10, +0.30] accuracy points" in box
    assert "0.0040" not in box and "estimate" not in box
    nll = {"claim": "2. temperature scaling lowers ECE and NLL for every teacher", "verdict": "supported",
           "statistic": "least favourable of 14 (teacher, metric) pairs: NLL after - before, resnet8",
           "estimate": -0.06023, "ci_low": -0.07072, "ci_high": -0.049741, "n": 5, "unit": "seeds"}
    assert answer.finding(pd.Series(nll)).startswith("supported: -0.060 [-0.071, -0.050] NLL; 5 seeds")
    assert [answer.signed(v) for v in (0.0066 * 100, -5.61, -0.0017, 0.0, 1e-9)] == \
        ["+0.66", "-5.61", "-0.0017", "0", "+0.0000000010"]
    points = answer.in_points(CLAIMS)
    assert points.loc[0, ["estimate", "ci_low", "ci_high"]].tolist() == pytest.approx([0.4, 0.1, 0.7])
    assert points.loc[0, "units"] == "ECE points per doubling" and points.loc[4, "units"] == "accuracy points"


def test_a_row_decided_before_holm_but_not_after_says_so(report):
    """Its interval excludes zero (supported alone), Holm's adjusted p does not reach 5%: the box
    says both, and the claims table's verdict_holm column too."""
    row = CLAIMS.iloc[3]
    assert row["ci_low"] > 0 and row["verdict_holm"] == "underpowered"
    finds = answer.finding(row)
    assert finds.startswith("underpowered (decided before Holm, not after: supported alone): +0.22")
    assert "(p = 0.029, after Holm 0.23)" in finds
    assert "decided before Holm, not after" in visible_text(report)
    column = answer.holm_column(CLAIMS)
    assert column[3] == "underpowered (decided before Holm, not after: supported alone)"
    assert column[0] == "supported" and column[4] == "underpowered"  # undecided alone: nothing to add
    secondary = CLAIMS.assign(verdict_holm=[None, "x", "x", "x", "x"])  # a row Holm does not adjust
    assert answer.holm_column(secondary)[0] == ""


def test_no_log_lines_on_the_page_and_the_facts_beside_them_kept(report):
    text = visible_text(report)
    for log in ("students planned", "log lines written", "epoch 1/3", "[abc123]"):
        assert log not in text, log
    assert "STUDYFACTMARKER 798 students, 112 teachers" in text
    for line in ("799 log lines written to outputs/evidence-transfer/log.txt", "798 students planned",
                 "1 log line written to x/log.txt", "[3f2a] epoch 3/10 loss 0.2", "== 01_train_teachers"):
        assert LOG_LINE.match(line), line
    for line in ("798 students, planned by budget", "112 teachers and 798 students in results.csv"):
        assert not LOG_LINE.match(line), line


def test_the_study_folder_is_named_as_it_is_now_not_where_it_ran(report, tmp_path):
    """A study run in runs/handmade-1201 and moved since: the page names the folder it is in."""
    text = visible_text(report)
    assert "handmade-1201" not in report and "/elsewhere" not in report
    assert re.search(r"study folder \S*study\b", text) and re.search(r"\S*study/results\.csv", text)
    short = "outputs/quick"
    assert rename_study("study folder runs/quick-1201; 9 lines in quick-1201/log.txt; "
                        "/work/runs/quick-1201/results.csv", "/work/runs/quick-1201", short) == \
        "study folder outputs/quick; 9 lines in outputs/quick/log.txt; outputs/quick/results.csv"
    # the name as a word, not a path, is left alone; no folder, no change
    assert rename_study("the quick-1201 run", "/work/runs/quick-1201", short) == "the quick-1201 run"
    assert rename_study("runs/quick-1201", None, short) == "runs/quick-1201"
    assert RAN_IN.endswith("handmade-1201")


def test_cells_go_where_the_repository_notebook_puts_them(tmp_path):
    """A study executed before a cell was retagged or reworded (notebooks 01-03 of a committed study,
    which `kdcal analyse` does not re-run) renders with the repository notebook's tags and prose."""
    root = make_report_study(tmp_path / "study")
    repo = tmp_path / "repo-notebooks"
    repo.mkdir()
    nb = nbformat.read(root / NOTEBOOKS[1], as_version=4)
    summary = next(c for c in nb.cells if c.cell_type == "code")
    heading = next(c for c in nb.cells if c.source == "## Summary table")
    try_this = next(c for c in nb.cells if c.source.startswith("## Try this"))
    summary.metadata["tags"] = ["appendix"]
    heading.metadata["tags"] = ["appendix"]
    heading.source = "## Summary table\n\nREWORDEDMARKER: the repository's sentence."
    try_this.metadata["tags"] = ["notebook-only"]
    nbformat.write(nb, repo / NOTEBOOKS[1])
    page = build_report(root, NOTEBOOKS, "retagged", source_dir=repo).read_text()
    appendix = page[page.index('id="Appendix"'):]
    assert "REWORDEDMARKER" in appendix and "1.0073" not in page
    assert re.search(r"<h3[^>]*>From 2\. The second notebook.*?<h4[^>]*>Summary table", appendix, re.S)
    assert "Something with" not in page  # now notebook-only
    assert 'id="Try-this"' not in page
    # the first notebook has no copy in repo/: its own tags hold
    assert page.count("APPENDIXMARKER") == 3 and "NOTEBOOKONLYMARKER" not in page


def test_the_contents_list_the_page_and_not_the_appendix(report):
    nav = re.search(r'<nav class="kdcal-contents">(.*?)</nav>', report, re.S).group(1)
    assert 'href="#1.-The-first-notebook"' in nav and 'href="#Appendix"' in nav
    assert "From 1. The first notebook" not in nav


def test_demote_lowers_headings_and_leaves_code_alone():
    assert demote("## A\ntext\n### B\n```\n## not a heading\n```") == \
        "#### A\ntext\n##### B\n```\n## not a heading\n```"
    assert demote("##### deep") == "###### deep"


def test_wide_summaries_merge_each_value_with_its_interval():
    frame = pd.DataFrame({"arch": ["resnet8", "resnet14"], "params": [77754, 174970], "acc": [0.85, 0.86],
                          "acc_low": [0.84, math.nan], "acc_high": [0.86, math.nan], "ece": [0.068, 0.07],
                          "ece_low": [0.065, 0.066], "ece_high": [0.0707, 0.074]})
    merged = table(frame, intervals=True).frame
    assert list(merged.columns) == ["arch", "params", "acc", "ece"]
    assert merged.loc[0, "acc"] == "0.8500 [0.8400, 0.8600]" and merged.loc[1, "acc"] == "0.8600"
    assert merged.loc[1, "ece"] == "0.0700 [0.0660, 0.0740]"


@pytest.mark.parametrize("profile", ["evidence-transfer", "quick", "tutorial"])
def test_what_a_run_can_settle_is_read_off_its_own_claims(profile):
    claims_csv = PROJECT / "outputs" / profile / "claims.csv"
    if not claims_csv.exists():
        pytest.skip(f"no committed {profile} run")
    note = answer.settle_note(pd.read_csv(claims_csv))
    assert note.startswith("**What this run can settle.**")
    expected = {"evidence-transfer": ("8 teachers", "0.0014", "can reach 5%", "14 seeds"),
                "quick": ("4 teachers", "0.083", "cannot reach 5%", "3 seeds"),
                "tutorial": ("2 teachers", "no interval and no p-value", "2 seeds")}[profile]
    for words in expected:
        assert words in note, (words, note)
    assert not re.search(r"tutorial|quick|evidence", note)  # about this run, by its numbers


# Text that describes one profile's run, which another profile's report must not carry.
OTHER_RUN = re.compile(r"\b(?:tutorial|quick|evidence(?:-\w+)?|regimes-quick)(?:'s\b| run\b| profile\b)"
                       r"|outputs/(?:tutorial|quick|evidence|regimes)", re.I)


def test_notebook_text_that_reaches_the_report_names_no_other_profiles_run():
    """A cell the report shows (not notebook-only) says nothing about a named profile's run ("the
    tutorial's 2 teachers give no interval" in a 14-seed report): such text is notebook-only (the
    exercises), or derived from the run's own data (answer.settle_note)."""
    found = []
    for path in sorted((PROJECT / "notebooks").glob("0*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            tags = set(cell.metadata.get("tags", []))
            if cell.cell_type != "markdown" or tags & {"notebook-only", "parameters"}:
                continue
            found += [f"{path.name}: {m.group(0)!r}" for m in OTHER_RUN.finditer(cell.source)]
    assert not found, found
    assert OTHER_RUN.search("the tutorial's 2 teachers give no interval")
    assert OTHER_RUN.search("in the evidence run, about 1.8 ECE points lower")


COMMITTED = sorted((PROJECT / "outputs").glob("*/report.html"))
P_CELL = re.compile(r"^(?:&lt;|<) 0\.001$|^0\.\d{2,3}$|^1$|^" + NO_VALUE + "$")


def p_value_cells(page: str) -> list[str]:
    """Every cell of every p-value column (tables.P_COLUMN) of the page's tables, as printed."""
    cells = []
    for tab in re.findall(r"<table\b.*?</table>", page, re.S):
        heads = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th\b[^>]*>(.*?)</th>", tab, re.S)]
        columns = [i for i, h in enumerate(heads) if P_COLUMN.match(h)]
        for row in re.findall(r"<tr\b[^>]*>(.*?)</tr>", tab, re.S):
            tds = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td\b[^>]*>(.*?)</td>", row, re.S)]
            cells += [tds[i] for i in columns if len(tds) == len(heads) and i < len(tds)]
    return cells


def test_p_value_cells_are_read_off_the_page_even_from_a_table_printed_before_the_rule(report):
    cells = p_value_cells(report)
    assert "&lt; 0.001" in cells and all(P_CELL.match(c) for c in cells), cells
    old = report[report.index("OLDPTABLEMARKER"):]
    assert re.search(r"<td>&lt; 0\.001</td>\s*<td>0\.43</td>\s*<td>0\.0014</td>", old)  # p_floor: a bound


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_report_follows_the_page_rules(path):
    """outputs/<profile>/report.html as committed (rendered by kdcal analyse or run): the answer box
    in points, p-values as "< 0.001", no log lines, the study folder named as it is, every image
    described. Fails until a report is rendered again with this code."""
    page = path.read_text()
    problems = []
    box = page[page.index('class="kdcal-answer"'):page.index("The question.")]
    if "points" not in box or re.search(r"estimate -?0\.0", box):
        problems.append("the answer box gives fractions, not points")
    bad_p = [c for c in p_value_cells(page) if not P_CELL.match(c)]
    if bad_p:
        problems.append(f"p-values printed as {bad_p[:3]}")
    text = visible_text(page)
    problems += [f"a log line: {log!r}" for log in ("students planned", "log lines written") if log in text]
    if "No description has been provided" in page:
        problems.append("an image with nbconvert's placeholder for an alt text")
    ran_in = nbformat.read(path.parent / "01_train_teachers.ipynb", as_version=4).metadata.get(
        "papermill", {}).get("parameters", {}).get("study_dir", "")
    name = ran_in.rstrip("/").rsplit("/", 1)[-1]
    if name and name != path.parent.name and re.search(rf"/{re.escape(name)}\b|\b{re.escape(name)}/", text):
        problems.append(f"names the folder it ran in, {name}, not {path.parent.name}")
    assert not problems, f"{path.parent.name}: " + "; ".join(problems)
