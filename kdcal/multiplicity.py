"""Multiplicity: Holm's step-down over the claims table, both tests of every claim in one family.

**Holm over the claims, both tests in one family** (:func:`holm_family`). The zero null and the
equivalence null of one claim are disjoint (theta = 0 has |theta| < m), so at most one of a claim's
two nulls is true, and any set of nulls that can be true together holds at most one per claim: at
most as many as there are claims. Closed testing with a Bonferroni test of every such intersection
(an intersection holding both nulls of one claim is empty and is rejected outright) controls the
family-wise error over all 2 x claims hypotheses, whatever the dependence between the tests (the
local tests are Bonferroni's). Its shortcut: a test of claim i is rejected when Holm's step-down
over *its* p-value and, for every other claim j, the larger of j's two p-values ``max(p_value_j,
p_equiv_j)`` rejects it (another claim leaves the count only once both its nulls are rejected:
until then one of them may be the true one). So the multiplier counts claims, not tests (and equals
Shaffer's step-down over all 2 x claims p-values with that logical constraint;
``tests/test_inference_holm.py`` checks the two agree). ``verdict_holm`` keeps what survives at
adjusted p < 5% (strictly below, as before this rule): supported or contradicted needs the zero
test, equivalent the TOST, negligible both; a negligible claim whose TOST fails after adjustment
while its zero test survives becomes supported or contradicted (and the reverse, equivalent); every
claim's verdict is a statement about rejected nulls, each of which closed testing controls on its
own. ``p_holm`` is the adjusted p of the test behind ``verdict_holm`` (``p_test``: zero,
equivalence or both; where Holm demotes a verdict to underpowered, of the test that failed; for an
underpowered claim, the smaller of the two).

Representing the other claims by the p-value of their *verdict* (the zero p of a supported claim,
the TOST p of an equivalent one) instead of the larger of the two would not be valid: with many
claims whose effect is exactly 0 and whose equivalence is shown, each such claim would step out of
the count at its tiny TOST p, and the last one's chance zero-test p would be compared with 5% alone
(``tests/test_inference_holm.py`` measures that error at about 20% with 5 such claims).
"""
from __future__ import annotations

import numpy as np

from .inference import ALPHA, BOTH, EQUIVALENCE, TESTS_OF, ZERO, verdict_of


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p_values, float)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def holm_within(p_values, others) -> np.ndarray:
    """Each of ``p_values`` Holm-adjusted in the family where its own claim holds it and every
    other claim j holds ``others[j]`` (the larger of j's two p-values): position i of
    :func:`holm` over ``others`` with ``others[i]`` replaced by ``p_values[i]``. NaN stays NaN."""
    p, others = np.asarray(p_values, float), np.asarray(others, float)
    out = np.full(len(p), np.nan)
    for i in np.flatnonzero(np.isfinite(p)):
        family = others.copy()
        family[i] = p[i]
        out[i] = holm(family)[i]
    return out


def holm_family(verdicts, sides, p_zero, p_equiv) -> tuple[list, np.ndarray, list]:
    """(p_test, p_holm, verdict_holm) over one family of claims, both tests of each claim in it
    (the module docstring gives the argument).

    ``verdicts``: each claim's verdict before adjustment; ``sides``: what its zero test alone
    says (:func:`side`); ``p_zero``, ``p_equiv``: its two p-values (NaN: no such test). Each
    test is adjusted by :func:`holm_within` against the other claims' larger p-value; a test
    stands where its adjusted p is below ALPHA and the verdict before adjustment rested on it (no
    verdict is ever upgraded). ``verdict_holm`` is :func:`verdict_of` the tests that stand;
    ``p_test`` names the test(s) behind it ('both' for negligible: ``p_holm`` is the larger of
    the two adjusted p-values) or, where Holm demotes a verdict to underpowered, the test(s) that
    failed; for a claim underpowered before adjustment, the test with the smaller p.
    """
    pz, pe = np.asarray(p_zero, float), np.asarray(p_equiv, float)
    larger = np.fmax(pz, pe)  # NaN only where the claim has no test at all
    adj_zero, adj_equiv = holm_within(pz, larger), holm_within(pe, larger)
    tests, adjusted, held = [], np.full(len(pz), np.nan), []
    for i, (verdict, shown) in enumerate(zip(verdicts, sides)):
        zero = adj_zero[i] < ALPHA and verdict in ("supported", "contradicted", "negligible")
        equiv = adj_equiv[i] < ALPHA and verdict in ("equivalent", "negligible")
        after = verdict_of(shown if zero else "", equiv)
        test = TESTS_OF.get(after if after != "underpowered" else verdict)
        if test is None:  # underpowered before adjustment: the test nearer to deciding
            test = (None if np.isnan(larger[i]) else
                    EQUIVALENCE if np.isnan(pz[i]) or pe[i] < pz[i] else ZERO)
        by_test = {ZERO: adj_zero[i], EQUIVALENCE: adj_equiv[i],
                   BOTH: np.fmax(adj_zero[i], adj_equiv[i]), None: np.nan}
        tests.append(test)
        adjusted[i] = by_test[test]
        held.append(after)
    return tests, adjusted, held
