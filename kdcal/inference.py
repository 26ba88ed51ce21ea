"""The inference rules every verdict of the study uses: units, intervals, tests, power (planning a
design by simulation: :mod:`kdcal.power`).

Two units of replication, never mixed:

- **the seed** (one independent rerun of the whole pipeline) for paired comparisons: each seed
  gives one number (a difference, averaged over teachers where a claim pools them), and the
  Student-t interval is taken over seeds;
- **the teacher** for claims about teacher *size*: each teacher gives one number (its mean over
  seeds), the effect is the least-squares slope against log2(parameters) ("per doubling"), and
  its interval is the exact permutation interval over teachers (the set of slopes b for which
  ``y - b x`` shows no association with ``x`` under every reordering of the teachers). With k
  teachers there are k! orderings, so no two-sided p-value can fall below 2/k!; with 4 teachers
  (2/24 = 0.083) the interval is unbounded and the verdict is honestly ``underpowered``.

**Two tests per claim, one 95% interval.** Every claim has an effect theta and a margin m (what
counts as no effect worth the name), and two null hypotheses:

- the *zero* null, theta = 0: ``p_value``, two-sided (twice the smaller one-sided p-value);
- the *equivalence* null, |theta| >= m: ``p_equiv``, two one-sided tests (TOST) of theta <= -m
  and of theta >= m, each one-sided at 2.5%, reported as **twice the larger** of the two one-sided
  p-values (capped at 1). Doubling puts both p-values on the 5% scale of the two-sided 95%
  intervals, so that "the test rejects at 5%" and "the interval decides" are one statement:
  the interval excludes 0 exactly when ``p_value`` is below 5%, and lies inside +-m exactly
  when ``p_equiv`` is below 5% (for the t-test; a permutation interval contains its ends, so
  there a p of exactly 5%, possible when 40 divides the number of orderings, still decides). A
  doubled TOST p is a valid p-value, conservative: at theta = +-m it is below 5% in at most 2.5%
  of studies (one one-sided test at 2.5%), the price of matching the 95% interval.

For seeds the TOST uses Student's t; for teachers it uses the same permutation machinery as the
interval (the interval *is* the inversion of these tests: y - b x at b = -m and b = +m), so the
two never disagree; claim 2 (every teacher, both metrics) takes the largest TOST p of its pairs
(intersection-union). One verdict rule (:func:`decide`) reads the interval:

- ``supported`` / ``contradicted``: the interval excludes 0 on the side the claim predicts / the
  other side, and does not lie inside +-m (an effect is shown; it may be large);
- ``negligible``: it excludes 0 *and* lies inside +-m: an effect is shown, smaller than the margin;
  neither supported nor contradicted;
- ``equivalent``: it lies inside +-m and does not exclude 0;
- ``underpowered``: none of these.

Holm's adjustment over the claims, both tests of each claim in one family, lives in
:mod:`kdcal.multiplicity`.

Simulations in ``tests/test_inference.py`` and ``tests/test_inference_holm.py`` check the rule's
error rates: with no effect it declares supported, contradicted or negligible in at most about 5%
of studies, with the effect at the margin it declares equivalent in at most about 2.5%, a clear
effect with enough data is found, a tiny effect with many seeds is called negligible, and Holm
over the mixed family keeps the family-wise error at or below 5%.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05  # two-sided: each direction at 2.5%
POWER = 0.8  # for minimum detectable effects and the seeds/teachers needed
EXACT_LIMIT = 50_000  # enumerate every ordering up to 8 teachers; Monte Carlo beyond
MONTE_CARLO = 20_000

VERDICTS = ("supported", "contradicted", "negligible", "equivalent", "underpowered")
DECIDED = ("supported", "contradicted")  # an effect shown, not inside the margin
ZERO, EQUIVALENCE, BOTH = "zero", "equivalence", "both"  # p_test: the test(s) behind a verdict
TESTS_OF = {"supported": ZERO, "contradicted": ZERO, "equivalent": EQUIVALENCE, "negligible": BOTH}


@dataclass(frozen=True)
class Margins:
    """What counts as "no effect worth the name": equivalence bounds, declared in advance, on the
    study's scale.

    ``acc``: paired student accuracy differences (0.005 = half a point); ``ece`` and ``nll``: the
    same for claim 2's teacher calibration. Size claims are slopes per doubling of teacher
    parameters, but their margins are declared over the whole ladder: ``acc_span`` (``ece_span``)
    is the largest change from the smallest to the largest teacher that counts as nothing,
    converted per doubling by :func:`slope_margin` (half a point over a ladder of 4.3 doublings
    is 0.116 points per doubling). A per-doubling margin would allow a trend across the ladder
    as large as the whole gain of distillation.
    """
    acc: float = 0.005
    acc_span: float = 0.005
    ece: float = 0.005
    ece_span: float = 0.005
    nll: float = 0.02


def slope_margin(span_margin: float, x) -> float:
    """A margin over the ladder's span (``x``: log2 parameters of the teachers) per doubling."""
    x = np.asarray(x, float)
    width = float(np.ptp(x)) if len(x) else 0.0
    return span_margin / width if width > 0 else np.nan


MARGINS = Margins()

VERDICT_RULE = (
    "Unit of replication: the seed for paired comparisons (one value per seed, t-interval over "
    "seeds); the teacher for size claims (teacher means over seeds, slope per doubling of "
    "parameters, exact permutation interval over teachers, within a family of teachers or "
    "across families with a family term). Two tests per claim: p_value against 0, p_equiv "
    "against +-margin (two one-sided tests, t over seeds or permutations over teachers, twice "
    "the larger one-sided p: below 5% exactly when the 95% interval lies inside +-margin). On "
    "the 95% interval: supported = entirely on the side the claim predicts and not entirely "
    "inside +-margin; contradicted = the same on the other side; negligible = excludes 0 and "
    "lies inside +-margin (an effect shown, smaller than the margin); equivalent = inside "
    "+-margin, touching or crossing 0; underpowered = none of these (the interval crosses 0 and "
    "reaches past a margin). Holm's adjustment over one family holding both tests of every "
    "claim (each other claim counted until both its p-values are passed) gives verdict_holm: "
    "a verdict stands only where the adjusted p of its test (p_test: zero, equivalence or both) "
    "is below 5%, else the test that survives decides, else underpowered. mde: the smallest "
    "effect this design detects with 80% power; needed: seeds or teachers to detect the "
    "margin; needed_observed: to detect the effect observed.")


def side(low: float, high: float, direction: str) -> str:
    """What the zero test alone says: 'supported' (the interval excludes 0 on the side
    ``direction`` predicts), 'contradicted' (on the other side) or '' (it does not exclude 0)."""
    if direction not in ("positive", "negative"):
        raise ValueError(f"direction {direction!r} must be 'positive' or 'negative'")
    above, below = bool(low > 0), bool(high < 0)
    if not (above or below):
        return ""
    return "supported" if above == (direction == "positive") else "contradicted"


def verdict_of(shown: str, inside: bool) -> str:
    """The verdict from the two tests: ``shown`` the zero test's side ('' where it does not
    reject), ``inside`` whether the equivalence test rejects."""
    if shown:
        return "negligible" if inside else shown
    return "equivalent" if inside else "underpowered"


def decide(low: float, high: float, direction: str, margin: float) -> str:
    """The one verdict rule; ``direction`` is what the claim predicts: 'positive' or 'negative'.
    The interval excluding 0 is the zero test rejecting; lying strictly inside +-margin is the
    equivalence test (TOST) rejecting."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "underpowered"
    shown = side(low, high, direction)
    return verdict_of(shown, bool(-margin < low and high < margin))


# ---------------------------------------------------------------- seeds as units
def t_interval(values, confidence: float = 1 - ALPHA) -> tuple[float, float, float, float, int]:
    """(mean, std, low, high, n) with a Student-t interval; n < 2 gives an undefined interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return (np.nan, np.nan, np.nan, np.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return (mean, np.nan, np.nan, np.nan, n)
    std = float(v.std(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)
    return (mean, std, mean - half, mean + half, n)


@lru_cache(maxsize=2048)
def _t_factor(df: int) -> float:
    return float(stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df))


def mde_mean(std: float, n: int) -> float:
    """Smallest mean effect a t-test over ``n`` units detects with 80% power at 5%."""
    if n < 2 or not np.isfinite(std):
        return np.nan
    return _t_factor(n - 1) * std / math.sqrt(n)


def units_needed_mean(std: float, margin: float, limit: int = 1000) -> float:
    """Seeds needed for the t-test to detect an effect of ``margin`` with 80% power."""
    if not (np.isfinite(std) and np.isfinite(margin)):
        return np.nan
    for n in range(2, limit + 1):
        if _t_factor(n - 1) * std / math.sqrt(n) <= margin:
            return float(n)
    return np.inf


def seed_effect(values, direction: str, margin: float) -> dict:
    """One value per seed -> estimate, t-interval, both tests, verdict, mde, seeds needed."""
    mean, std, lo, hi, n = t_interval(values)
    return {"estimate": mean, "std": std, "ci_low": lo, "ci_high": hi, "n": n, "unit": "seeds",
            "p_value": t_p_value(mean, std, n), "p_equiv": t_equivalence_p(mean, std, n, margin),
            "p_floor": 0.0 if n >= 2 else np.nan,
            "margin": margin, "mde": mde_mean(std, n), "needed": units_needed_mean(std, margin),
            "needed_observed": units_needed_mean(std, abs(mean)),
            "verdict": decide(lo, hi, direction, margin), "side": side(lo, hi, direction)}


def t_p_value(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of the one-sample t-test of mean 0 (NaN below two units)."""
    if n < 2 or not np.isfinite(std):
        return np.nan
    if std == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * stats.t.sf(abs(mean) / (std / math.sqrt(n)), n - 1))


def t_equivalence_p(mean, std, n, margin):
    """The TOST p-value against +-``margin``: twice the larger of the one-sided t-test p-values
    of "mean <= -margin" and "mean >= margin", capped at 1 (at most 5% exactly when the 95%
    t-interval lies inside +-margin). NaN below two units or without a margin; elementwise over
    arrays (the simulations use it so)."""
    mean, std, n, margin = np.broadcast_arrays(*(np.asarray(v, float)
                                                 for v in (mean, std, n, margin)))
    ok = (n >= 2) & np.isfinite(std) & np.isfinite(margin) & np.isfinite(mean)
    out = np.full(mean.shape, np.nan)
    se = np.where(ok & (std > 0), std / np.sqrt(np.where(ok, n, 2)), 1.0)
    df = np.where(ok, n - 1, 1)
    lower = stats.t.sf((mean + margin) / se, df)  # small when mean is well above -margin
    upper = stats.t.sf((margin - mean) / se, df)  # small when mean is well below +margin
    tost = np.minimum(1.0, 2 * np.maximum(lower, upper))
    exact = np.where(np.abs(mean) < margin, 0.0, 1.0)  # no spread: inside or not
    out[ok] = np.where(std[ok] > 0, tost[ok], exact[ok])
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------- teachers as units
@lru_cache(maxsize=64)
def orderings_within(sizes: tuple) -> np.ndarray:
    """Every ordering that only reorders inside consecutive blocks of ``sizes`` teachers (one
    block per family; identity first), or a seeded random sample of them past EXACT_LIMIT."""
    k = int(sum(sizes))
    starts = np.cumsum((0,) + tuple(sizes))[:-1]
    if math.prod(math.factorial(n) for n in sizes) <= EXACT_LIMIT:
        blocks = [[tuple(int(s0) + i for i in p) for p in itertools.permutations(range(n))]
                  for s0, n in zip(starts, sizes)]
        return np.array([sum(choice, ()) for choice in itertools.product(*blocks)],
                        dtype=np.int64).reshape(-1, k)
    rng = np.random.default_rng(0)
    sample = np.array([np.concatenate([int(s0) + rng.permutation(n) for s0, n in zip(starts, sizes)])
                       for _ in range(MONTE_CARLO)], dtype=np.int64)
    return np.vstack([np.arange(k), sample])


def _orderings(k: int) -> np.ndarray:
    """Every ordering of k teachers (identity first), or a seeded random sample of them."""
    return orderings_within((k,))


def strata_blocks(strata) -> tuple[np.ndarray, tuple]:
    """The order that puts each stratum's teachers together, and the strata's sizes."""
    codes = pd.factorize(pd.Series(list(strata)), sort=True)[0]
    order = np.argsort(codes, kind="stable")
    return order, tuple(int(n) for n in np.bincount(codes))


def in_blocks(x, y, strata=None) -> tuple:
    """(x, y, strata, sizes) with each family's teachers together, as the permutations of
    :func:`orderings_within` take them (``y``: one column per outcome, or one vector)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if strata is None:
        return x, y, None, (len(x),)
    order, sizes = strata_blocks(strata)
    return x[order], y[order], np.asarray(list(strata))[order], sizes


def orderings_count(k: int) -> int:
    return len(_orderings(k)) if k >= 1 else 0


def permutation_floor(k: int, strata=None) -> float:
    """The smallest two-sided p-value a permutation over ``k`` teachers can give (only
    reordering inside ``strata``, when given: 4 depth and 3 width teachers allow 4!3! = 144)."""
    if k < 1:
        return np.nan
    n = len(orderings_within(strata_blocks(strata)[1])) if strata is not None else orderings_count(k)
    return min(1.0, 2 / n)


def balanced_sizes(k: int, groups: int) -> tuple:
    """``k`` teachers spread as evenly as possible over ``groups`` families."""
    return tuple(k // groups + (1 if i < k % groups else 0) for i in range(groups))


def teachers_for_level(alpha: float = ALPHA, groups: int = 1) -> int:
    """The fewest teachers whose orderings can reach a two-sided ``alpha``: in one family, or
    spread evenly over ``groups`` families when the test reorders within families only (3 + 3
    teachers allow 3!3! = 36 orderings, p >= 0.056; 4 + 3 allow 144)."""
    return next(k for k in range(2 * groups, 40)
                if 2 / math.prod(math.factorial(n) for n in balanced_sizes(k, groups)) <= alpha)


def _ranks(v: np.ndarray) -> np.ndarray:
    return stats.rankdata(v)


def rank_correlation(x, y, method: str = "spearman") -> float:
    """Spearman or Kendall; NaN where undefined (fewer than 3 points or a constant)."""
    if method not in ("spearman", "kendall"):
        raise ValueError(f"rank correlation method {method!r}: use 'spearman' or 'kendall'")
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    if method == "spearman":  # Pearson on average ranks: scipy's definition, without its overhead
        return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])
    return float(stats.kendalltau(x, y)[0])


def permutation_p(x, y, method: str = "spearman") -> float:
    """Two-sided p-value of a rank correlation between teachers' ``x`` and ``y``, exchanging
    teachers (exact over every ordering up to 8 teachers)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    observed = rank_correlation(x, y, method)
    if not np.isfinite(observed):
        return np.nan
    perms = _orderings(len(x))
    if method == "spearman":
        rx, ry = _ranks(x), _ranks(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        null = (ry[perms] @ rx) / math.sqrt((rx @ rx) * (ry @ ry))
    else:
        null = np.array([stats.kendalltau(x, y[p])[0] for p in perms])
    return float(np.mean(np.abs(null) >= abs(observed) - 1e-12))


def within_strata(v: np.ndarray, strata) -> np.ndarray:
    """``v`` centred inside each stratum (around the overall mean without strata)."""
    if strata is None:
        return v - v.mean()
    s = pd.Series(v)
    return (s - s.groupby(np.asarray(list(strata))).transform("mean")).to_numpy(float)


def slope_interval(x, y, strata=None) -> tuple[float, float, float, float]:
    """(slope, low, high, two-sided p): least squares, with the exact permutation interval.

    For a candidate slope b the residuals y - b x are tested for association with x by
    reordering x (statistic: their covariance). Each ordering P gives one critical slope
    c_P = A_P / B_P with A_P = sum((x_P - x) y), B_P = sum((x_P - x) x) < 0, and b is rejected
    from below when at most 2.5% of orderings reach the observed covariance: the interval's ends
    are order statistics of the c_P. Orderings with B_P = 0 (the identity) never reject.

    With ``strata`` (a family per teacher) the slope is the within-family one (a family term:
    each family its own intercept) and x is only reordered inside each family, so the families'
    offsets never enter the test: sum((x_P - x) c_f) = 0 for any constant per family.
    """
    tests = SlopeTests.of(x, y, strata)
    if tests is None:
        return (np.nan, np.nan, np.nan, np.nan)
    return (tests.slope, *tests.interval(), tests.p_zero())


@dataclass(frozen=True)
class SlopeTests:
    """The permutation tests of a slope over teachers, every one from the same critical slopes:
    ``crit`` (sorted), ``tied`` orderings that never reject, ``total`` orderings."""
    slope: float
    crit: np.ndarray
    tied: int
    total: int

    @classmethod
    def of(cls, x, y, strata=None) -> "SlopeTests | None":
        """None where no test exists (fewer than 3 teachers, no spread in x, or fewer than two
        teachers beyond one per family)."""
        x, y, strata, sizes = in_blocks(x, y, strata)
        xc = within_strata(x, strata)
        if len(x) < 3 or np.allclose(xc, 0.0) or len(x) - len(sizes) < 2:
            return None
        perms = orderings_within(sizes)
        shift = x[perms] - x
        a, b = shift @ y, shift @ x
        tied = np.isclose(b, 0.0, atol=1e-12 * (xc @ xc))
        return cls(float(xc @ y / (xc @ xc)), np.sort(a[~tied] / b[~tied]), int(tied.sum()),
                   len(perms))

    def p_above(self, b: float) -> float:
        """One-sided p of "slope <= b" (small when the slope is above b)."""
        return (self.tied + int(np.sum(self.crit <= b))) / self.total

    def p_below(self, b: float) -> float:
        """One-sided p of "slope >= b" (small when the slope is below b)."""
        return (self.tied + int(np.sum(self.crit >= b))) / self.total

    def interval(self) -> tuple[float, float]:
        """Every b that neither one-sided test rejects at 2.5% (p <= 2.5% rejects)."""
        cut = ALPHA / 2 * self.total
        if self.tied > cut:
            return -np.inf, np.inf
        j = int(math.floor(cut - self.tied)) + 1  # the j-th smallest / largest critical slope
        return float(self.crit[j - 1]), float(self.crit[len(self.crit) - j])

    def p_zero(self) -> float:
        """Two-sided p of slope 0: twice the smaller one-sided p."""
        return float(min(1.0, 2 * min(self.p_above(0.0), self.p_below(0.0))))

    def p_equiv(self, margin: float) -> float:
        """TOST p against +-``margin``: twice the larger of p_above(-margin) and
        p_below(margin); at most 5% exactly when the interval lies inside +-margin."""
        if not np.isfinite(margin):
            return np.nan
        return float(min(1.0, 2 * max(self.p_above(-margin), self.p_below(margin))))


def mde_slope(x, y, strata=None) -> tuple[float, float]:
    """(mde, residual std): the slope an OLS t-test across these teachers detects with 80%
    power, from the observed scatter around the line (with a family term when ``strata`` are
    given: one intercept per family), a planning figure, not a test."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = len(set(strata)) if strata is not None else 1
    df = len(x) - groups - 1
    xc, yc = within_strata(x, strata), within_strata(y, strata)
    sxx = float(xc @ xc)
    if len(x) < 3 or df < 1 or np.isclose(sxx, 0.0):
        return np.nan, np.nan
    resid = yc - (xc @ yc / sxx) * xc
    sigma = float(np.sqrt(resid @ resid / df))
    return _t_factor(df) * sigma / math.sqrt(sxx), sigma


def teachers_needed(x, sigma: float, margin: float, limit: int = 200, groups: int = 1) -> float:
    """Teachers (spread over log-size like these) needed to detect a slope of ``margin``: the
    permutation level must be reachable and the OLS power 80%. ``x`` is centred as the test
    centres it (within families when there is a family term, ``groups`` families, the new
    teachers spread evenly over them: the fewest whose orderings reach the level)."""
    x = np.asarray(x, float)
    if not (np.isfinite(sigma) and np.isfinite(margin)) or len(x) < 2:
        return np.nan
    spread = float(np.mean(x ** 2))  # per teacher, around the centre the test uses
    for k in range(max(groups + 2, teachers_for_level(groups=groups)), limit + 1):
        if _t_factor(k - groups - 1) * sigma / math.sqrt(spread * k) <= margin:
            return float(k)
    return np.inf


def size_effect(x, y, direction: str, margin: float, strata=None) -> dict:
    """Teachers as units: ``x`` log2 parameters and ``y`` a mean over seeds, one per teacher;
    ``strata`` (a family per teacher) adds a family term (see :func:`slope_interval`)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    tests = SlopeTests.of(x, y, strata)
    if tests is None:
        slope = lo = hi = p = p_equiv = np.nan
    else:
        (lo, hi), slope = tests.interval(), tests.slope
        p, p_equiv = tests.p_zero(), tests.p_equiv(margin)
    mde, sigma = mde_slope(x, y, strata)
    floor = permutation_floor(len(x), strata) if len(x) >= 3 else np.nan
    if not floor <= ALPHA:  # the level is out of reach: nothing is detectable at this design
        mde = np.inf
    groups = len(set(strata)) if strata is not None else 1
    xc = within_strata(x, strata)
    return {"estimate": slope, "ci_low": lo, "ci_high": hi, "n": len(x), "unit": "teachers",
            "p_value": p, "p_equiv": p_equiv, "p_floor": floor,
            "spearman": rank_correlation(x, y), "margin": margin, "mde": mde,
            "needed": teachers_needed(xc, sigma, margin, groups=groups),
            "needed_observed": teachers_needed(xc, sigma, abs(slope), groups=groups),
            "verdict": decide(lo, hi, direction, margin), "side": side(lo, hi, direction)}
