"""Temperature scaling: recovers a known temperature, optimal NLL, input checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcal import metrics
from kdcal.calibration import CalibrationError, apply_temperature, fit_temperature


def sample_with_temperature(t_true: float, n: int = 20000, k: int = 10, seed: int = 0):
    """Logits z and labels drawn from softmax(z / t_true): the NLL-optimal T is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3.0
    p = metrics.softmax(z / t_true)
    u = rng.random((n, 1))
    y = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), k - 1)
    return z, y


@pytest.mark.parametrize("t_true", [0.5, 2.0, 3.0])
def test_recovers_known_temperature(t_true):
    z, y = sample_with_temperature(t_true)
    t = fit_temperature(z, y)
    assert isinstance(t, float)
    assert t == pytest.approx(t_true, rel=0.05)


def test_fitted_temperature_minimises_nll():
    z, y = sample_with_temperature(2.0, n=5000, seed=1)
    t = fit_temperature(z, y)
    at = metrics.nll(z / t, y)
    assert at <= metrics.nll(z / (t * 1.1), y)
    assert at <= metrics.nll(z / (t / 1.1), y)
    assert at <= metrics.nll(z, y)


def test_accepts_tensors_and_float32():
    z, y = sample_with_temperature(2.0, n=5000, seed=2)
    t_np = fit_temperature(z, y)
    t_torch = fit_temperature(torch.from_numpy(z).float(), torch.from_numpy(y))
    assert t_torch == pytest.approx(t_np, rel=1e-4)


def test_log_probabilities_are_valid_logits():
    # log-softmax is a shift of the logits per row: same temperature
    z, y = sample_with_temperature(2.0, n=5000, seed=3)
    assert fit_temperature(metrics.log_softmax(z), y) == pytest.approx(fit_temperature(z, y), rel=1e-4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_rejected(bad):
    z, y = sample_with_temperature(2.0, n=200)
    z[7, 3] = bad
    with pytest.raises(CalibrationError, match="NaN or inf"):
        fit_temperature(z, y)


def test_probabilities_rejected():
    z, y = sample_with_temperature(2.0, n=500)
    with pytest.raises(CalibrationError, match="probabilities"):
        fit_temperature(metrics.softmax(z), y)


@pytest.mark.parametrize("z_shape,y_shape", [((10, 4), (9,)), ((10,), (10,)), ((10, 4), (10, 1)),
                                             ((0, 4), (0,))])
def test_shape_mismatch_rejected(z_shape, y_shape):
    z = np.random.default_rng(0).normal(size=z_shape)
    y = np.zeros(y_shape, dtype=np.int64)
    with pytest.raises(CalibrationError, match="expected logits"):
        fit_temperature(z, y)


def test_labels_out_of_range_rejected():
    z, y = sample_with_temperature(2.0, n=100, k=4)
    y[0] = 4
    with pytest.raises(CalibrationError, match="labels"):
        fit_temperature(z, y)


def test_calibration_error_is_value_error():
    assert issubclass(CalibrationError, ValueError)


def test_apply_temperature():
    z = np.array([[2.0, -4.0]])
    assert np.array_equal(apply_temperature(z, 2.0), np.array([[1.0, -2.0]]))
    zt = torch.tensor([[2.0, -4.0]])
    assert torch.equal(apply_temperature(zt, 2.0), torch.tensor([[1.0, -2.0]]))


def test_agrees_with_netcal_temperature_scaling():
    """netcal's TemperatureScaling takes probabilities and stores a multiplicative weight 1/T."""
    from netcal.scaling import TemperatureScaling

    z, y = sample_with_temperature(2.0, n=4000, seed=4)
    ts = TemperatureScaling()
    ts.fit(metrics.softmax(z), y)
    t_netcal = 1.0 / float(np.asarray(ts.temperature).ravel()[0])
    assert fit_temperature(z, y) == pytest.approx(t_netcal, rel=0.03)
