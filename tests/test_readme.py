"""The README and docs/ stay true to the repository: the answer box carries the committed
evidence study's numbers (evidence-transfer, the design where calibration can act), every profile is listed, the test command is the one CI runs, and every
link between the pages resolves (the README is short because the rest moved to docs/)."""
import re
from pathlib import Path

import pandas as pd
import pytest

from kdcal import analysis, config
from kdcal.answer import headline_rows

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
EVIDENCE_CLAIMS = ROOT / "outputs" / "evidence-transfer" / "claims.csv"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def _relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, broken


@pytest.mark.skipif(not EVIDENCE_CLAIMS.exists(), reason="no committed evidence run")
def test_answer_box_carries_every_claim_of_the_evidence_run():
    """Each claims.csv row's estimate and 95% interval, in points, and for an undecided claim the
    seeds or teachers it needs: a re-analysis that moves a number must move the README too."""
    text = README.read_text()
    assert "<!-- answer-box: from outputs/evidence-transfer/claims.csv" in text
    missing = []
    # the box shows each claim once: a size claim by its test across families (answer.headline_rows)
    for _, row in headline_rows(pd.read_csv(EVIDENCE_CLAIMS)).iterrows():
        est, lo, hi = (100 * float(row[k]) for k in ("estimate", "ci_low", "ci_high"))
        shown = f"{est:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        if shown not in text:
            missing.append(f"{row['claim']}: {shown}")
        if row["verdict_holm"] == "underpowered" and f"about {float(row['needed']):.0f}" not in text:
            missing.append(f"{row['claim']}: about {float(row['needed']):.0f} needed")
    assert not missing, missing


def test_readme_lists_every_profile():
    text = README.read_text()
    assert [p for p in config.PROFILES if f"`{p}`" not in text] == []


def test_readme_test_command_is_the_one_ci_runs():
    """.ci/run runs `make test`; the README states what that runs and how long it took."""
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text()
    recipe = re.search(r"^test: .*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe == "$(PY) -m pytest -q -n 2"
    assert "make test    # same install, then: .venv/bin/python -m pytest -q -n 2 " in README.read_text()


@pytest.mark.skipif(not EVIDENCE_CLAIMS.exists(), reason="no committed evidence run")
def test_findings_table_carries_every_claim_with_its_verdict_after_holm():
    """docs/findings.md's table of the evidence run: each headline claim's estimate and interval,
    in points, on a line that ends on its committed ``verdict_holm``."""
    text = (ROOT / "docs" / "findings.md").read_text()
    section = text.split("**What `claims.csv` says**", 1)[1].split("\n\n", 2)[1]
    lines = section.splitlines()
    wrong = []
    for _, row in headline_rows(pd.read_csv(EVIDENCE_CLAIMS)).iterrows():
        est, lo, hi = (100 * float(row[k]) for k in ("estimate", "ci_low", "ci_high"))
        shown = f"{est:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        line = next((ln for ln in lines if shown in ln), None)
        if line is None:
            wrong.append(f"{row['claim']}: {shown} missing")
        elif f"`{row['verdict_holm']}`" not in line.rsplit("|", 2)[-2]:
            wrong.append(f"{row['claim']}: not `{row['verdict_holm']}` in {line[-60:]}")
    assert not wrong, wrong


@pytest.mark.skipif(not EVIDENCE_CLAIMS.exists(), reason="no committed evidence run")
def test_findings_size_or_accuracy_table_and_its_prose_are_the_analysis():
    """docs/findings.md's size-or-accuracy table of evidence-transfer: every cell is what
    analysis.size_or_accuracy computes from the committed results.csv; the ranges in the prose
    after it are those of the table."""
    results = pd.read_csv(EVIDENCE_CLAIMS.parent / "results.csv")
    table = analysis.size_or_accuracy(results[results["role"] == "student"])
    text = (ROOT / "docs" / "findings.md").read_text()
    section = text.split("<!-- size-or-accuracy: from outputs/evidence-transfer/results.csv", 1)[1]
    rows = [line for line in section.split("\n\n", 1)[0].splitlines() if line.startswith("| ")][2:]

    def get(mode, model, term):
        return table[(table["mode"] == mode) & (table["model"] == model)
                     & (table["term"] == term)].iloc[0]

    def cell(row):
        return f"{row['estimate']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"

    modes = list(dict.fromkeys(table["mode"]))
    assert [r.split("|")[1].strip() for r in rows] == modes
    r2 = {}
    for line, mode in zip(rows, modes):
        fits = {m: get(mode, m, t) for m, t in (("size", "log2_params"),
                                                 ("teacher accuracy", "teacher_acc"),
                                                 ("teacher ECE", "teacher_ece"))}
        r2[mode] = {m: f["r2_within"] for m, f in fits.items()}
        want = [mode, cell(fits["size"]), cell(get(mode, "size and accuracy", "log2_params")),
                cell(get(mode, "size and accuracy", "teacher_acc")),
                cell(get(mode, "size and ECE", "log2_params")),
                " / ".join(f"{r2[mode][m]:.2f}" for m in ("size", "teacher accuracy", "teacher ECE"))]
        assert [c.strip() for c in line.strip("|").split("|")] == want
    prose = " ".join(section.split("\n\n", 2)[1].split())
    for label, model in (("Teacher accuracy alone explains", "teacher accuracy"),
                         ("size alone", "size"), ("teacher ECE", "teacher ECE")):
        values = [r2[m][model] * 100 for m in modes]
        assert f"{label} {min(values):.0f}-{max(values):.0f}%" in prose, label
    beside = table[(table["model"] == "size and accuracy") & (table["term"] == "log2_params")]
    assert (f"between {beside['estimate'].min():+.2f} and {beside['estimate'].max():+.2f} points "
            "per doubling") in prose
