"""The answer box: per claim, what the paper says, what this study finds, and one word for the reader.

The claims table's verdicts (supported, contradicted, negligible, equivalent, underpowered) say where
an interval lies relative to what a claim predicts and to its margin; whether that *confirms* the
paper depends on the claim. Claim 3 predicts that something does **not** happen, so `equivalent`
(and `negligible`: an effect shown, smaller than the margin) confirms it while it refutes claim 4.
This module does that translation once, by rule, so that no reader has to.
"""
from __future__ import annotations

import math
import numbers
import re

import pandas as pd

from .tables import format_interval, format_number

HOLDS, NOT_REPRODUCED, OPEN = "holds", "not reproduced", "open"
ANSWERS = (HOLDS, NOT_REPRODUCED, OPEN)
COLUMNS = ["claim", "the paper says", "this study finds", "answer"]

# What the paper says, per claim number: its abstract's words where it has them (quoted, from
# references.PAPER_ABSTRACT), and where a claim is this study's reading of them, that reading said as such.
PAPER_SAYS = {
    "1": '"the larger teacher model may be too over-confident"',
    "2": ('"simple model calibration of the teacher model" (this study reads it as temperature '
          "scaling, which should lower ECE and NLL)"),
    "3": ('"more accurate teachers do not necessary make for better teachers" (earlier studies, '
          "which the paper cites)"),
    "4": ('"after the simple model calibration of the teacher model, the size of the teacher model '
          'has a positive correlation with the performance of the student model"'),
    "4-interaction": ('the same sentence, read as an interaction: the gain from calibration grows '
                      "with teacher size"),
    "5": ('"the student model cannot effectively imitate" an over-confident teacher (this study '
          "reads it as: a calibrated teacher gives a better student than the same teacher "
          "uncalibrated)"),
}
# a claim that predicts the absence of an effect ("does not increase") rather than an effect
ABSENCE = re.compile(r"\b(?:does not|do not|doesn't|no)\b", re.I)
NUMBER = re.compile(r"^\s*(\d+)[.)]?(?:\s|$)")


def claim_key(text: str) -> str | None:
    """``"4"`` for ``"4. with calibration ..."``, ``"4-interaction"`` when the text names the
    interaction; None when the text does not start with a number this module knows."""
    m = NUMBER.match(str(text))
    if not m:
        return None
    key = m.group(1)
    if key == "4" and "interaction" in str(text).lower():
        key = "4-interaction"
    return key if key in PAPER_SAYS else None


def predicts_absence(key: str, text: str) -> bool:
    """Claim 3 (and any claim worded "does not ..."): the paper expects no effect."""
    return key == "3" or bool(ABSENCE.search(str(text)))


def _verdict(row: pd.Series) -> str:
    """The Holm-adjusted verdict when the table has one (several claims are tested at once)."""
    holm = row.get("verdict_holm")
    if isinstance(holm, str) and holm.strip():
        return holm.strip()
    verdict = row.get("verdict")
    return verdict.strip() if isinstance(verdict, str) else ""


def _finite(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def answer(key: str | None, text: str, verdict: str, low=math.nan, high=math.nan) -> str:
    """holds / not reproduced / open, for one claim given its verdict and 95% interval.

    A claim that predicts an effect holds when supported and is not reproduced when contradicted,
    equivalent (no effect larger than the margin) or negligible (an effect shown, in either
    direction, but inside the margin: not one worth the name). A claim that predicts no effect
    holds when equivalent or negligible (no effect as large as the margin) or when the interval
    lies entirely on the side opposite to the effect it denies (a decrease is not an increase),
    and is not reproduced when the interval shows that effect beyond the margin. Underpowered,
    unknown verdicts and unknown claims are open.
    """
    if key is None:
        return OPEN
    if not predicts_absence(key, text):
        return {"supported": HOLDS, "contradicted": NOT_REPRODUCED,
                "negligible": NOT_REPRODUCED, "equivalent": NOT_REPRODUCED}.get(verdict, OPEN)
    if verdict in ("equivalent", "negligible"):
        return HOLDS
    if verdict in ("supported", "contradicted") and _finite(low) and _finite(high):
        # the interval is decided; its sign says which: an increase refutes "does not increase"
        if high < 0:
            return HOLDS
        if low > 0:
            return NOT_REPRODUCED
    return OPEN


def finding(row: pd.Series, verdict: str, digits: int = 2) -> str:
    """What this run found, in one line: the verdict, the estimate and its interval, the units."""
    parts = [verdict or "no verdict"]
    est = row.get("estimate")
    if _finite(est):
        ci = format_interval(row.get("ci_low"), row.get("ci_high"), digits)
        parts.append(f"estimate {format_number(est, digits)}, 95% CI {ci}")
    n, unit = row.get("n"), row.get("unit")
    if _finite(n) and isinstance(unit, str):
        scope = SCOPES.get(row.get("family")) if unit == "teachers" else None
        parts.append(f"{format_number(n)} {unit}" + (f" {scope}" if scope else ""))
    note = row.get("note")
    text = "; ".join(parts)
    return f"{text} ({note})" if isinstance(note, str) and note.strip() else text


SCOPES = {"all": "(depth and width ladders, with a family term)", "depth": "(depth ladder)",
          "width": "(width ladder)"}


def headline_rows(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: a size claim comes per family and across families; the box shows the
    test across families (family ``all``) where the table has one, else the claim's first row."""
    if "family" not in claims.columns:
        return claims
    keep = []
    for _, g in claims.groupby("claim", sort=False):
        across = g[g["family"] == "all"]
        keep.append((across if len(across) else g).index[0])
    return claims.loc[keep]


def answer_box(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of the claims table (its headline row, :func:`headline_rows`): claim,
    the paper says, this study finds, answer.

    ``claims`` needs the columns ``claim`` and ``verdict`` (``verdict_holm`` is used instead where
    present); ``estimate``, ``ci_low``, ``ci_high``, ``n``, ``unit`` and ``note`` are used if there.
    """
    missing = [c for c in ("claim", "verdict") if c not in claims.columns]
    if missing:
        raise KeyError(f"answer_box: the claims table has no column(s) {missing}; "
                       f"it has {list(claims.columns)}")
    rows = []
    for _, row in headline_rows(claims).iterrows():
        text = str(row["claim"])
        key = claim_key(text)
        verdict = _verdict(row)
        rows.append({
            "claim": text,
            "the paper says": PAPER_SAYS.get(key, "–"),
            "this study finds": finding(row, verdict),
            "answer": answer(key, text, verdict, row.get("ci_low", math.nan),
                             row.get("ci_high", math.nan)),
        })
    return pd.DataFrame(rows, columns=COLUMNS)
