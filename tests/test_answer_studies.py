"""answer.side_by_side: two studies' answers in one table (the README's box of the exploratory and
the confirmatory study), each study's answer exactly what its own answer box says."""
from pathlib import Path

import pandas as pd
import pytest

from kdcal import answer

OUTPUTS = Path(__file__).resolve().parents[1] / "outputs"


def claims(name):
    return pd.read_csv(OUTPUTS / name / "claims.csv")


def test_each_studys_columns_are_its_own_answer_box():
    studies = {"no capacity gap": claims("evidence-transfer"), "quick": claims("quick")}
    table = answer.side_by_side(studies)
    for name, c in studies.items():
        box = answer.answer_box(c).set_index("claim")
        for _, row in table.iterrows():
            if row["claim"] in box.index:
                assert row[f"{name}: answer"] == box.at[row["claim"], "answer"]
                assert box.at[row["claim"], "this study finds"].startswith(row[f"{name}: finds"])
            else:
                assert row[f"{name}: answer"] == row[f"{name}: finds"] == answer.NOT_TESTED
    assert set(table["claim"]) == set(answer.answer_box(studies["no capacity gap"])["claim"]) | set(
        answer.answer_box(studies["quick"])["claim"])


def test_brief_is_the_verdict_and_the_interval_in_points():
    row = answer.headline_rows(claims("evidence-transfer")).iloc[0]
    assert answer.brief(row) == "supported: +0.66 [+0.29, +0.85] ECE points per doubling"
    undone = pd.Series({"claim": "3. x", "statistic": "slope of acc per doubling", "estimate": 0.002,
                        "ci_low": 0.001, "ci_high": 0.004, "verdict": "supported",
                        "verdict_holm": "underpowered"})
    assert answer.brief(undone) == ("underpowered (decided before Holm, not after: supported alone): "
                                    "+0.20 [+0.10, +0.40] accuracy points per doubling")
    assert answer.brief(pd.Series({"claim": "9. y", "verdict": "equivalent"})) == "equivalent"


def test_a_claim_only_one_study_tests_reads_not_tested_in_the_other():
    full = claims("evidence-transfer")
    fewer = full[~full["claim"].str.contains("cal-matrix")]
    table = answer.side_by_side({"a": full, "b": fewer}).set_index("claim")
    matrix = [c for c in table.index if "cal-matrix" in c]
    assert matrix and (table.loc[matrix, "b: answer"] == answer.NOT_TESTED).all()
    assert (table.loc[matrix, "a: answer"] != answer.NOT_TESTED).all()
    with pytest.raises(ValueError, match="no study given"):
        answer.side_by_side({})
