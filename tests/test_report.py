"""The report page, its tables for people, the answer box and the formulas: fast checks on a study
written by hand (tests/report_study.py), no training and no browser."""
import json
import math
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from kdcal import answer, references, texmath
from kdcal.report import build_report, drop_empty_sections, scope_note
from kdcal.tables import (NO_VALUE, PROJECT, format_interval, format_number, format_value,
                          metric_bounds, table)
from report_study import CLAIMS, NOTEBOOKS, make_report_study


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
    assert "<summary>Appendix: per-seed tables</summary>" in details.group(1)
    assert "APPENDIXMARKER" in details.group(1) and report.count("APPENDIXMARKER") == 3  # 3 rows, once
    assert "From 1. The first notebook: A wide table" in details.group(1)  # where it came from
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
    import nbformat

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
        "supported; estimate 0.0050, 95% CI [0.0010, 0.010]; 7 teachers (depth and width ladders, "
        "with a family term)")
    # without a test across families, the claim's first row (the depth ladder here)
    box = answer.answer_box(_claims(rows[:2]))
    assert len(box) == 1 and "(depth ladder)" in box.loc[0, "this study finds"]


def test_answer_box_says_what_the_paper_says_in_its_own_words():
    for key, says in answer.PAPER_SAYS.items():
        for quote in re.findall(r'"([^"]+)"', says):
            assert quote in references.PAPER_ABSTRACT, (key, quote)
    box = answer.answer_box(CLAIMS)
    assert box.loc[0, "the paper says"].startswith('"the larger teacher model may be too over-confident"')
    assert "estimate 0.0040, 95% CI [0.0010, 0.0070]; 7 teachers" in box.loc[0, "this study finds"]
    assert "-0.000055" in box.loc[2, "this study finds"] and "e-05" not in box.to_string()
    assert "about 12 seeds" in box.loc[3, "this study finds"]
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
