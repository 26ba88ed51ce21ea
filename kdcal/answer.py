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

from .tables import P_VALUE_FLOOR, format_interval, format_number, format_p

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


# The README's units: accuracy and ECE (differences, slopes) in percentage points, x100; NLL as it is
POINTS = {"ECE": "ECE points", "acc": "accuracy points", "accuracy": "accuracy points"}
METRIC = re.compile(r"\b(ECE|NLL|acc|accuracy)\b")
DECIDED = ("supported", "contradicted")


def effect_units(row: pd.Series) -> tuple[float, str, int] | None:
    """(scale, units, decimals) of a claim's estimate, read from its ``statistic`` (else its claim
    text): accuracy and ECE x100 in points, "per doubling" for a slope over teacher size, NLL
    unscaled; None when the row names no metric."""
    statistic = row.get("statistic")
    text = statistic if isinstance(statistic, str) and statistic.strip() else str(row.get("claim", ""))
    metric = METRIC.search(text)
    if not metric:
        return None
    name = metric.group(1)
    per = " per doubling" if "per doubling" in text else ""
    if name == "NLL":
        return 1.0, f"NLL{per}", 3
    return 100.0, POINTS[name] + per, 2


def signed(value: float, decimals: int = 2) -> str:
    """``value`` with its sign, ``decimals`` decimals ("+0.66", "-5.61"); two significant digits
    where those decimals would read zero ("-0.0017"); ``0`` for zero, never "-0.00"."""
    if value == 0:
        return "0"
    text = f"{value:+.{decimals}f}"
    if float(text) == 0:
        text = f"{value:+.{1 - math.floor(math.log10(abs(value)))}f}"
    return text


def holm_reading(row: pd.Series) -> str:
    """The verdict to read, said in full where Holm's adjustment changed it: "underpowered
    (decided before Holm, not after: supported alone)" for a row whose interval is decided but
    whose adjusted p-value is not below 5%; the verdict alone otherwise."""
    verdict = _verdict(row)
    alone = row.get("verdict")
    alone = alone.strip() if isinstance(alone, str) else ""
    if alone in DECIDED and verdict not in DECIDED and verdict != alone:
        return f"{verdict} (decided before Holm, not after: {alone} alone)"
    return verdict


def _p_values(row: pd.Series) -> str:
    p, holm = row.get("p_value"), row.get("p_holm")
    if not _finite(p):
        return ""
    text = f"p {'= ' if p >= P_VALUE_FLOOR else ''}{format_p(p)}"
    if _finite(holm):
        text += f", after Holm {format_p(holm)}"
    return f" ({text})"


def effect_text(row: pd.Series, digits: int = 2) -> str:
    """The estimate and its 95% interval in the README's units ("+0.66 [+0.29, +0.85] ECE points
    per doubling"); unscaled where the row names no metric; empty without an estimate."""
    est, low, high = row.get("estimate"), row.get("ci_low"), row.get("ci_high")
    units = effect_units(row)
    if _finite(est) and units is not None:
        scale, label, decimals = units
        interval = (f" [{signed(low * scale, decimals)}, {signed(high * scale, decimals)}]"
                    if _finite(low) and _finite(high) else " (no interval)")
        return f"{signed(est * scale, decimals)}{interval} {label}"
    if _finite(est):
        return f"estimate {format_number(est, digits)}, 95% CI {format_interval(low, high, digits)}"
    return ""


def finding(row: pd.Series, verdict: str | None = None, digits: int = 2) -> str:
    """What this run found, in one line, in the README's units: the verdict (and where Holm's
    adjustment undid a decided interval, that it did), the estimate and its 95% interval in
    points ("+0.66 [+0.29, +0.85] ECE points per doubling"), the p-values, the units of the test."""
    verdict = holm_reading(row) if verdict is None else verdict
    effect = effect_text(row, digits)
    head = f"{verdict or 'no verdict'}: {effect}{_p_values(row)}" if effect else (verdict or "no verdict")
    parts = [head]
    n, unit = row.get("n"), row.get("unit")
    if _finite(n) and isinstance(unit, str):
        scope = SCOPES.get(row.get("family")) if unit == "teachers" else None
        parts.append(f"{format_number(n)} {unit}" + (f" {scope}" if scope else ""))
    note = row.get("note")
    text = "; ".join(parts)
    return f"{text} ({note})" if isinstance(note, str) and note.strip() else text


EFFECT_COLUMNS = ("estimate", "ci_low", "ci_high", "margin", "margin_span", "mde")


def in_points(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims table in the README's units: each row's effect columns (estimate, interval,
    margin, mde) x100 where it is an accuracy or ECE effect, and a column ``units`` that says
    which ("ECE points per doubling", "accuracy points", "NLL")."""
    out = claims.copy()
    units = [effect_units(row) for _, row in claims.iterrows()]
    for col in EFFECT_COLUMNS:
        if col in out.columns:
            out[col] = [v * u[0] if u is not None and _finite(v) else v for v, u in zip(out[col], units)]
    where = out.columns.get_loc("ci_high") + 1 if "ci_high" in out.columns else len(out.columns)
    out.insert(where, "units", [u[1] if u is not None else "" for u in units])
    return out


def holm_column(claims: pd.DataFrame) -> pd.Series:
    """``verdict_holm`` as a reader should read it (:func:`holm_reading`: "underpowered (decided
    before Holm, not after: supported alone)"); empty where a row is not adjusted (a secondary row)."""
    if "verdict_holm" not in claims.columns:
        return pd.Series("", index=claims.index)
    return claims.apply(lambda row: holm_reading(row) if isinstance(row.get("verdict_holm"), str)
                        and row["verdict_holm"].strip() else "", axis=1)


def settle_note(claims: pd.DataFrame) -> str:
    """What this run's design can settle, from its own claims table (Markdown, one paragraph): the
    teachers behind a size claim and the smallest p-value their permutation allows (``p_floor``),
    what Holm's adjustment over the claims makes of it, and the seeds behind a paired claim."""
    parts = []
    if "unit" in claims.columns and "n" in claims.columns:
        size = claims[claims["unit"] == "teachers"]
        if "family" in size.columns and (size["family"] == "all").any():
            size = size[size["family"] == "all"]
        floors = size["p_floor"].dropna() if "p_floor" in size.columns else pd.Series(dtype=float)
        adjusted = int(claims["p_holm"].notna().sum()) if "p_holm" in claims.columns else 0
        if len(size) and _finite(size["n"].max()):
            text = f"A size claim here rests on {format_number(size['n'].max())} teachers"
            if len(floors):
                floor = float(floors.min())
                text += (f": an exact permutation over them gives no p-value below "
                         f"{format_number(floor, 2)} (`p_floor`), so a size claim "
                         + ("can reach 5%" if floor < 0.05 else "cannot reach 5%, whatever the seeds"))
                if adjusted > 1 and floor < 0.05:
                    at_floor = format_number(min(1.0, floor * adjusted), 2)
                    text += (f"; Holm's adjustment over the {adjusted} claims multiplies a p-value by "
                             f"at most {adjusted}: {at_floor} at that floor")
            elif size["n"].max() < 3:
                text += ": fewer than 3 give no interval and no p-value, whatever the seeds"
            parts.append(text + ".")
        seeds = claims.loc[claims["unit"] == "seeds", "n"]
        if len(seeds) and _finite(seeds.max()):
            parts.append(f"A paired claim rests on {format_number(seeds.max())} seeds.")
    parts.append("The notes say, claim by claim, how many seeds or teachers would settle what this run "
                 "leaves open.")
    return "**What this run can settle.** " + " ".join(parts)


SCOPES = {"all": "(both ladders, with a family term)", "depth": "(depth ladder)",
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
    rows, previous = [], None
    for _, row in headline_rows(claims).iterrows():
        text = str(row["claim"])
        key = claim_key(text)
        verdict = _verdict(row)
        says = PAPER_SAYS.get(key, "–")
        rows.append({
            "claim": text,
            "the paper says": "as above" if key is not None and key == previous else says,
            "this study finds": finding(row),
            "answer": answer(key, text, verdict, row.get("ci_low", math.nan),
                             row.get("ci_high", math.nan)),
        })
        previous = key
    return pd.DataFrame(rows, columns=COLUMNS)


NOT_TESTED = "not tested"


def brief(row: pd.Series) -> str:
    """A claim's verdict and effect in a few words, for a table of several studies: "negligible:
    -0.19 [-0.26, -0.11] accuracy points" (the verdict after Holm, as :func:`holm_reading` says it)."""
    verdict = holm_reading(row) or "no verdict"
    effect = effect_text(row)
    return f"{verdict}: {effect}" if effect else verdict


def side_by_side(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim (each claim's headline row), one pair of columns per study: what it finds
    (:func:`brief`) and its answer. Claims in the order the studies first name them; a claim one
    study does not test (a mode it did not run) reads "not tested" there."""
    if not studies:
        raise ValueError("side_by_side: no study given")
    heads = {name: headline_rows(claims).set_index("claim") for name, claims in studies.items()}
    order = list(dict.fromkeys(c for head in heads.values() for c in head.index))
    rows = []
    for claim in order:
        row = {"claim": claim}
        for name, head in heads.items():
            if claim not in head.index:
                row[f"{name}: finds"], row[f"{name}: answer"] = NOT_TESTED, NOT_TESTED
                continue
            r = head.loc[claim]
            row[f"{name}: finds"] = brief(r)
            row[f"{name}: answer"] = answer(claim_key(claim), claim, _verdict(r),
                                            r.get("ci_low", math.nan), r.get("ci_high", math.nan))
        rows.append(row)
    return pd.DataFrame(rows)
