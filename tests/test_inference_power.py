"""Planning a design by simulation (issue 36): the vectorised slope test is the study's own, the
simulated power behaves (about 2.5% a side with no slope, near 1 for a clear one), and the
split of a slope's noise into teacher and seed parts recovers what was put in."""
from __future__ import annotations

import numpy as np
import pytest

from kdcal.inference import slope_interval
from kdcal.power import slope_noise, slope_p_values, slope_power


@pytest.mark.parametrize("strata", [None, list("ddwwdwdw")])
def test_vectorised_p_values_are_the_permutation_test_s(strata):
    rng = np.random.default_rng(3)
    x = np.log2(rng.integers(20_000, 3_000_000, size=8)).astype(float)
    ys = 0.002 * x[:, None] + rng.normal(0, 0.003, size=(8, 12))
    got = slope_p_values(x, ys, strata)
    want = [slope_interval(x, ys[:, j], strata)[3] for j in range(ys.shape[1])]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_power_is_about_the_level_with_no_slope_and_high_with_a_clear_one():
    x = np.linspace(15, 21.5, 7)
    x = np.concatenate([x, x[:6] + 0.3])
    strata = ["depth"] * 7 + ["width"] * 6
    null = slope_power(x, 0.0, 0.003, strata, alpha=0.05, sims=2000, seed=1)
    assert 0.01 <= null <= 0.045  # one side of a two-sided 5% test: about 2.5%
    clear = slope_power(x, 0.003, 0.002, strata, alpha=0.05, sims=500, seed=2)
    assert clear > 0.95
    # several levels at once, on the same simulated studies: never more power at a lower level
    levels = slope_power(x, 0.001, 0.003, strata, alpha=[0.05, 0.01, 0.001], sims=500, seed=3)
    assert levels.shape == (3,) and levels[0] >= levels[1] >= levels[2]
    assert levels[0] == slope_power(x, 0.001, 0.003, strata, alpha=0.05, sims=500, seed=3)
    negative = slope_power(x, -0.003, 0.002, strata, alpha=0.05, sims=300, seed=4)
    assert negative > 0.95


def test_slope_noise_recovers_teacher_and_seed_sds():
    rng = np.random.default_rng(0)
    k, s = 40, 30
    x = rng.uniform(15, 21, size=k)
    strata = ["depth"] * 20 + ["width"] * 20
    teacher = rng.normal(0, 0.003, size=k)
    values = (0.002 * x + teacher)[:, None] + rng.normal(0, 0.004, size=(k, s)) \
        + rng.normal(0, 0.01, size=s)[None, :]  # a seed's shift, shared by every teacher
    t_sd, s_sd = slope_noise(values, x, strata)
    assert s_sd == pytest.approx(0.004, rel=0.1)
    assert t_sd == pytest.approx(0.003, rel=0.35)
    with pytest.raises(ValueError, match="at least 3 teachers"):
        slope_noise(values[:2], x[:2])
    # no teacher scatter beyond the seeds': the teacher sd is 0, never imaginary
    flat = (0.002 * x)[:, None] + rng.normal(0, 0.004, size=(k, 2))
    assert slope_noise(flat, x)[0] >= 0.0
