"""Planning a design: the study's own slope test run on many simulated outcomes at once, its power
at a given slope and noise, and the noise of a slope split into teachers and seeds (issue 36's
power analysis, ``scripts/power_confirm.py``).
"""
from __future__ import annotations

import numpy as np

from .inference import ALPHA, in_blocks, mde_slope, orderings_within, within_strata


def slope_p_values(x, ys, strata=None) -> np.ndarray:
    """The two-sided p-value of :func:`slope_interval` for every column of ``ys`` at once (one
    design's teachers, many outcomes): a power simulation runs the study's own test. Columns
    follow ``x``'s order, whatever the strata's."""
    x = np.asarray(x, float)
    x, ys, strata, sizes = in_blocks(x, np.asarray(ys, float).reshape(len(x), -1), strata)
    xc = within_strata(x, strata)
    perms = orderings_within(sizes)
    shift = x[perms] - x
    b = shift @ x  # <= 0: zero only where the ordering leaves x as it is
    tied = np.isclose(b, 0.0, atol=1e-12 * float(xc @ xc))
    a = shift[~tied] @ ys  # critical slope a / b <= 0 exactly where a >= 0
    n_total, n0 = len(perms), int(tied.sum())
    p_up = (n0 + np.sum(a >= 0, axis=0)) / n_total
    p_down = (n0 + np.sum(a <= 0, axis=0)) / n_total
    return np.minimum(1.0, 2 * np.minimum(p_up, p_down))


def slope_power(x, slope: float, sd: float, strata=None, alpha=ALPHA, sims: int = 2000,
                seed: int = 0):
    """Share of simulated studies whose slope test (:func:`slope_interval`, with the family term
    when ``strata`` are given) decides in the direction of ``slope`` at level ``alpha`` (a number,
    or several: one share each, on the same simulated studies): teacher means ``slope * x`` plus
    normal noise of ``sd`` around the line (``sd``: teacher-to-teacher scatter and what the seeds
    leave of the seed noise, see :func:`slope_noise`)."""
    x = np.asarray(x, float)
    rng = np.random.default_rng(seed)
    ys = slope * x[:, None] + rng.normal(0.0, sd, size=(len(x), sims))
    xc = within_strata(x, strata)
    est = xc @ ys
    p = slope_p_values(x, ys, strata)
    right = est > 0 if slope >= 0 else est < 0
    levels = np.asarray(alpha, float)
    power = np.mean((p[None, :] < levels.reshape(-1, 1)) & right, axis=1)
    return float(power[0]) if levels.ndim == 0 else power


def slope_noise(values, x, strata=None) -> tuple[float, float]:
    """(teacher sd, seed sd) of a size slope, from a teachers x seeds table of one outcome
    (``values``, teachers in ``x``'s order): the seed sd is the teacher-by-seed interaction's
    (what a seed adds to one teacher's value beyond the seed's shift shared by every teacher,
    which no slope sees); the teacher sd is the scatter of the teacher means around the line
    (within families with ``strata``) once the seeds' share (seed sd^2 / seeds) is taken out,
    0 where the seeds explain it all. A teacher mean over S seeds then scatters by
    sqrt(teacher sd^2 + seed sd^2 / S): the ``sd`` of :func:`slope_power`."""
    v = np.asarray(values, float)
    k, s = v.shape
    if k < 3 or s < 2 or not np.isfinite(v).all():
        raise ValueError("slope_noise needs a complete table of at least 3 teachers x 2 seeds")
    inter = v - v.mean(1, keepdims=True) - v.mean(0, keepdims=True) + v.mean()
    seed_var = float((inter ** 2).sum() / ((k - 1) * (s - 1)))
    _, resid_sd = mde_slope(x, v.mean(1), strata)
    return float(np.sqrt(max(0.0, resid_sd ** 2 - seed_var / s))), float(np.sqrt(seed_var))
