"""Exact behaviour of the study's core (data splits, metrics, calibrators, KD loss, store) where
the broader tests only check shapes or rough agreement: boundary sizes, the one-line error
messages naming the bad input, independent references (scipy, numpy, netcal, torch by hand).

Each test here was written against a surviving mutant of ``make mutate`` (see docs/mutants.md)
and checked to fail on it. Every test is fast: mutmut runs this file thousands of times.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special
import torch
import torch.nn.functional as F

from kdcal import calibration, calibrators, data, distill, metrics, store
from kdcal.calibration import (CalibrationError, MatrixScaling, TemperatureCalibrator,
                               VectorScaling, fit_temperature)
from kdcal.calibrators import HistogramCalibrator

EPS = np.finfo(np.float64).eps
ALL_CALIBRATORS = "temperature, vector, matrix, histogram, isotonic, beta"


def _logits(n=120, k=4, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.0
    return z * scale, y


# ================================================================ data
@pytest.fixture(scope="module")
def rgb():
    """Three channels with different statistics, so per-channel constants differ."""
    ds = data.make_synthetic(n_train=60, n_test=12, num_classes=3, channels=3, size=8, seed=1)
    ds.train_x[:, 1] //= 3  # channel 1 darker
    return ds


def test_make_splits_normalisation_constants_are_per_channel_by_hand(rgb):
    s = data.make_splits(rgb, val_size=10, split_seed=2, train_size=30)
    tr, _ = data.split_indices(60, 10, 2, 30)
    x = rgb.train_x[tr].numpy().astype(np.float64) / 255
    mean = x.mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = x.std(axis=(0, 2, 3), ddof=1).reshape(1, 3, 1, 1)
    assert s.mean.shape == s.std.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(s.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(s.std.numpy(), std, rtol=1e-5)
    assert (std < 0.5).all()  # far from the clamp: the clamp only guards constant channels
    # normalize uses them: (x / 255 - mean) / std
    xb = rgb.test_x[:4]
    np.testing.assert_allclose(s.normalize(xb).numpy(),
                               (xb.numpy() / 255 - mean) / std, rtol=1e-4, atol=1e-5)


def test_make_splits_uses_the_split_seed_and_train_size(rgb):
    s = data.make_splits(rgb, val_size=10, split_seed=3)
    tr, va = data.split_indices(60, 10, 3)
    assert torch.equal(s.train_y, rgb.train_y[tr]) and torch.equal(s.val_x, rgb.train_x[va])
    assert len(data.make_splits(rgb, val_size=10, split_seed=3, train_size=20).train_y) == 20


def test_make_splits_test_size_default_all_and_bounds(rgb):
    assert len(data.make_splits(rgb, 10, 0).test_y) == 12  # 0 = all
    assert torch.equal(data.make_splits(rgb, 10, 0, test_size=12).test_y, rgb.test_y)
    assert torch.equal(data.make_splits(rgb, 10, 0, test_size=5).test_x, rgb.test_x[:5])
    for bad in (-1, 13):
        with pytest.raises(ValueError, match=rf"^test_size must be in 0\.\.12 \(0 = all\), got {bad}$"):
            data.make_splits(rgb, 10, 0, test_size=bad)


def test_make_splits_puts_every_tensor_on_the_device(rgb):
    """The meta device stands in for an accelerator: every tensor must be moved there."""
    s = data.make_splits(rgb, 10, 0, train_size=20, device="meta", transfer_size=5)
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "mean", "std",
                  "transfer_x", "transfer_y"):
        assert getattr(s, field).device.type == "meta", field
    assert s.classes == rgb.classes and s.num_classes == 3


def test_split_indices_boundaries_and_message():
    train, val = data.split_indices(10, 1, seed=0)  # a validation set of one image
    assert len(val) == 1 and len(train) == 9
    with pytest.raises(ValueError, match=r"^val_size must be in 1\.\.9, got 10$"):
        data.split_indices(10, 10, seed=0)


def test_transfer_indices_sizes_of_one_and_messages():
    xi = data.transfer_indices(20, 5, 0, train_size=1, transfer_size=1)
    assert len(xi) == 1
    tr, va = data.split_indices(20, 5, 0, train_size=1)
    assert set(xi.tolist()).isdisjoint(tr.tolist() + va.tolist())
    with pytest.raises(ValueError, match=r"^a transfer split needs train_size > 0 "
                                         r"\(0 = all images left for training\)$"):
        data.transfer_indices(20, 5, 0, train_size=0, transfer_size=3)
    with pytest.raises(ValueError, match=r"^transfer_size must be in 1\.\.10, got 11$"):
        data.transfer_indices(20, 5, 0, train_size=5, transfer_size=11)


def test_as_transfer_without_transfer_images_message(rgb):
    with pytest.raises(ValueError, match=r"^these splits have no transfer images "
                                         r"\(transfer_size=0\)$"):
        data.as_transfer(data.make_splits(rgb, 10, 0))


def test_noisy_labels_two_classes_flip_to_the_other_class():
    y = torch.arange(40) % 2
    noisy = data.noisy_labels(y, 0.25, 2, seed=0)
    moved = noisy != y
    assert int(moved.sum()) == 10
    assert torch.equal(noisy[moved], 1 - y[moved])
    with pytest.raises(ValueError, match=r"^label noise needs at least 2 classes, got 1$"):
        data.noisy_labels(y, 0.25, 1, seed=0)


def test_noisy_labels_on_the_labels_device():
    y = torch.zeros(10, dtype=torch.long, device="meta")
    assert data.noisy_labels(y, 0.5, 3, seed=0).device.type == "meta"


def test_noisy_labels_and_epoch_batches_are_pinned():
    """A study resumed or rerun by a later kdcal version must draw the same noisy labels and the
    same batches (results.csv is bitwise reproducible): the draws are pinned here."""
    y = torch.arange(10) % 5
    assert data.noisy_labels(y, 0.5, 5, seed=0).tolist() == PINNED_NOISY
    assert [b.tolist() for b in data.epoch_batches(10, 4, seed=1, epoch=2)] == PINNED_BATCHES


PINNED_NOISY = [0, 3, 2, 2, 3, 1, 1, 0, 3, 4]  # kdcal's draws at issue 16
PINNED_BATCHES = [[0, 9, 1, 6], [2, 3, 5, 8]]


def test_epoch_batches_one_full_batch_and_device():
    batches = data.epoch_batches(20, 16, seed=0, epoch=0)  # 1 full batch, 4 images dropped
    assert [len(b) for b in batches] == [16]
    assert data.epoch_batches(8, 4, seed=0, epoch=0, device="meta")[0].device.type == "meta"


# ================================================================ KD loss
def test_kd_loss_keeps_the_student_device_for_teacher_and_labels():
    s = torch.zeros(4, 3, device="meta")
    out = distill.kd_loss(s, torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), 2.0, 0.5)
    assert out.device.type == "meta"
    out = distill.kd_loss(s, np.zeros((4, 3), np.float32), [0, 1, 2, 0], 2.0, 0.5)
    assert out.device.type == "meta"


def test_kd_loss_softmax_over_the_class_dimension_of_nd_logits():
    """[N, C, L] logits, torch's convention (as F.cross_entropy): the class dimension is 1."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    y = torch.randint(0, 4, (3, 5), generator=g)
    tau, alpha, T = 2.0, 0.7, 1.5
    s2, t2 = s.permute(0, 2, 1).reshape(-1, 4), t.permute(0, 2, 1).reshape(-1, 4)
    ps, pt = F.softmax(s2 / tau, 1), F.softmax(t2 / (T * tau), 1)
    kl = (pt * (pt.log() - ps.log())).sum() / 3  # batchmean: divided by N
    expected = alpha * tau ** 2 * kl + (1 - alpha) * F.cross_entropy(s, y)
    assert torch.allclose(distill.kd_loss(s, t, y, tau, alpha, T), expected, atol=1e-6)


def test_pure_distillation_reads_no_labels():
    """alpha = 1: unlabelled images (label -1) are fine; cross-entropy is not evaluated."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    no_labels = torch.full((5,), 99)
    out = distill.kd_loss(s, t, no_labels, 2.0, 1.0)
    ref = 4.0 * F.kl_div(F.log_softmax(s / 2, 1), F.log_softmax(t / 2, 1), log_target=True,
                         reduction="batchmean")
    assert torch.isfinite(out) and torch.allclose(out, ref)


def test_kd_loss_factories_default_to_an_uncalibrated_teacher():
    g = torch.Generator().manual_seed(1)
    s, t, y = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g), torch.arange(6) % 3
    plain = distill.kd_loss(s, t, y, 3.0, 0.5, teacher_temperature=1.0)
    assert torch.equal(distill.make_kd_loss(3.0, 0.5)(s, y, t), plain)
    assert torch.equal(distill.make_loss("compose", 3.0, 0.5)(s, y, t), plain)


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown distillation mode 'x'; valid: "
                                         r"uncalibrated, compose, replace$"):
        distill.mode_temperatures("x", 2.0, 1.5)


# ================================================================ metrics
def test_probabilities_with_negative_entries_rejected_even_if_rows_sum_to_one():
    msg = r"^probs must be finite rows that sum to 1 \(did you pass logits\? use softmax\)$"
    for bad in ([[1.5, -0.5]], [[0.5, 0.6]], [[0.5, 0.5011]]):
        with pytest.raises(ValueError, match=msg):
            metrics.brier(np.array(bad), [0])


def test_probabilities_within_rounding_are_clipped_to_0_1():
    p = np.array([[1 + 1e-10, -1e-10], [-1e-9, 1 + 1e-9]])  # rounding noise, accepted
    assert metrics.brier(p, [0, 1]) == 0.0  # clipped to exactly one-hot


def test_classwise_ece_of_one_hot_predictions_is_netcals_clipping_eps():
    """Perfect one-hot predictions: each p[:, c] in {0, 1} is clipped to {eps, 1 - eps} as netcal
    does, so every one of the n * k terms is off by eps and cw-ECE = eps exactly."""
    y = np.array([0, 1, 2, 2, 1])
    assert metrics.classwise_ece(np.eye(3)[y], y) == pytest.approx(EPS, rel=1e-9)
    with pytest.raises(ValueError, match=r"^labels must lie in 0\.\.2$"):
        metrics.classwise_ece(np.eye(3)[y], np.array([0, 1, 2, 3, 1]))


def test_binned_ce_bins_are_closed_on_the_left():
    """A confidence exactly on an interior edge belongs to the bin that starts there (netcal)."""
    conf = np.array([0.5, 0.5, 0.75, 0.9])
    correct = np.array([1, 0, 1, 1])
    edges = np.linspace(0, 1, 5)  # 0.5 and 0.75 are edges
    from netcal.metrics import ECE
    expected = ECE(bins=4).measure(conf, correct)
    assert metrics._binned_ce(conf, correct, edges) == pytest.approx(expected, abs=1e-12)
    # by hand: bins [.5,.75): {.5,.5} acc .5 conf .5; [.75,1]: {.75,.9} acc 1 conf .825
    assert metrics._binned_ce(conf, correct, edges) == pytest.approx(0.5 * 0.175, abs=1e-12)


def test_ace_uses_netcal_when_netcal_can_bin(monkeypatch):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=40)
    y = rng.integers(0, 3, 40)

    def hand(*a):
        raise AssertionError("the by-hand binning is for edges netcal cannot use")

    monkeypatch.setattr(metrics, "_binned_ce", hand)
    from netcal.metrics import ECE
    conf, correct = p.max(1), (p.argmax(1) == y).astype(int)
    assert metrics.ace(p, y, 5) == ECE(bins=5, equal_intervals=False).measure(conf, correct)


def test_log_softmax_is_per_row_for_rows_of_any_scale():
    z = np.array([[0.0, -1.0, 2.0], [-2000.0, -2001.0, -2003.0]])
    np.testing.assert_allclose(metrics.log_softmax(z), scipy.special.log_softmax(z, axis=1),
                               rtol=1e-12)


def test_summaries_use_the_given_number_of_bins():
    z, y = _logits(n=80, k=3, seed=2, scale=1.0)
    p = metrics.softmax(z)
    expected = {"ece": metrics.ece(p, y, 4), "ace": metrics.ace(p, y, 4),
                "mce": metrics.mce(p, y, 4), "classwise_ece": metrics.classwise_ece(p, y, 4)}
    for key, value in expected.items():
        assert value != pytest.approx(getattr(metrics, key)(p, y), rel=1e-6), key  # 15 bins differ
    for out in (metrics.summarize_probs(p, y, 4), metrics.summarize(z, y, 4)):
        for key, value in expected.items():
            assert out[key] == pytest.approx(value, rel=1e-12), key


# ================================================================ calibration: inputs
def test_fit_temperature_matches_the_root_of_the_nll_gradient():
    """T solves d NLL / dT = 0, i.e. mean(z_y - E_softmax(z/T)[z]) = 0 (brentq, independent)."""
    z, y = _logits(n=200, k=5, seed=3, scale=2.5)

    def grad(t):
        p = scipy.special.softmax(z / t, axis=1)
        return np.mean(z[np.arange(len(y)), y] - (p * z).sum(1))

    t_ref = scipy.optimize.brentq(grad, 0.05, 50, xtol=1e-14, rtol=1e-14)
    assert fit_temperature(z, y) == pytest.approx(t_ref, rel=1e-6)


def test_logits_in_dataframes_and_tensors_that_require_grad():
    z, y = _logits(n=60, k=3, seed=4)
    t = fit_temperature(z, y)
    assert fit_temperature(pd.DataFrame(z), pd.Series(y)) == t
    zt = torch.tensor(z, requires_grad=True)
    assert fit_temperature(zt, torch.from_numpy(y)) == t
    cal = TemperatureCalibrator().fit(zt, y)
    np.testing.assert_array_equal(cal.predict_proba(zt), cal.predict_proba(z))
    np.testing.assert_array_equal(cal.predict_proba(pd.DataFrame(z)), cal.predict_proba(z))


def test_predict_computes_in_float64_whatever_the_input_dtype():
    z, y = _logits(n=60, k=3, seed=5)
    cal = TemperatureCalibrator().fit(z, y)
    z32 = z.astype(np.float32)
    np.testing.assert_array_equal(cal.predict_proba(z32), cal.predict_proba(z32.astype(np.float64)))


def test_errors_name_temperature_scaling_and_the_label_range():
    z, _ = _logits(n=6, k=3)
    with pytest.raises(CalibrationError, match=r"^temperature scaling: labels outside 0\.\.2$"):
        fit_temperature(z, [0, 1, 2, 3, 0, 1])


PROBS_MSG = (r"^temperature scaling: got probabilities where logits are expected "
             r"\(pass the model's raw outputs, or log-probabilities\)$")


@pytest.mark.parametrize("probs", [
    [[1.0, 0.0], [0.3, 0.7]],  # exact 0 and 1 entries are probabilities too
    [[0.3333, 0.3333, 0.3333], [0.5, 0.25, 0.25]],  # rounded to 4 decimals: sums off by 1e-4
])
def test_probabilities_passed_as_logits_rejected(probs):
    with pytest.raises(CalibrationError, match=PROBS_MSG):
        fit_temperature(np.array(probs), list(range(len(probs))))


def test_small_positive_logits_are_logits():
    """Values in [0, 1] whose rows do not sum to 1, or slightly above 1, are not probabilities."""
    z, y = _logits(n=60, k=2, seed=6)
    cal = TemperatureCalibrator().fit(z, y)
    for ok in ([[0.2, 0.5], [0.9, 0.3]], [[1.00005, 0.0], [0.0, 1.00005]]):
        p = cal.predict_proba(np.array(ok))
        np.testing.assert_allclose(p.sum(1), 1.0)


def test_temperature_out_of_range_names_t_and_the_cause():
    z = np.array([[0.01, -0.01], [-0.01, 0.01]] * 10)  # all correct and separable: T -> 0
    with pytest.raises(CalibrationError, match=r"^temperature scaling: T=\S+ outside \[0\.01, "
                                               r"100\.0\] \(logits all correct and separable, "
                                               r"or constant\?\)$"):
        fit_temperature(z, [0, 1] * 10)


def test_non_convergence_message_counts_runs_and_iterations():
    z, y = _logits(n=200, k=5, seed=7)
    with pytest.raises(CalibrationError, match=r"^temperature scaling: did not converge "
                                               r"\(max \|dloss/dparam\|=\S+ after 1 x 1 L-BFGS "
                                               r"iterations\)$"):
        fit_temperature(z, y, max_iter=1)
    with pytest.raises(CalibrationError, match=r"^vector: did not converge .* after 3 x 1 L-BFGS"):
        VectorScaling(max_iter=1).fit(z, y)


# ================================================================ _lbfgs's convergence rule
def _constant_loss(value: float, gradient: float):
    """An objective whose value is ``value`` and whose gradient is ``gradient`` everywhere."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    return [p], lambda: value + gradient * (p - p.detach()).sum()


@pytest.mark.parametrize("loss,grad,converged", [
    (0.5, 1e-5, True),     # |grad| <= 1e-5 * max(1, loss): the boundary counts as converged
    (0.5, 1.5e-5, False),  # loss < 1: the threshold is 1e-5, not 1e-5 * loss or more
    (4.0, 3e-5, True),     # loss > 1: the threshold grows with the loss (relative)
    (4.0, 5e-5, False),
])
def test_lbfgs_convergence_threshold(loss, grad, converged):
    params, objective = _constant_loss(loss, grad)
    if converged:
        assert calibration._lbfgs(params, objective, "who", max_iter=2) == loss
    else:
        with pytest.raises(CalibrationError, match=r"^who: did not converge .* after 3 x 2 "):
            calibration._lbfgs(params, objective, "who", max_iter=2)


def test_lbfgs_non_finite_loss_is_divergence():
    params, _ = _constant_loss(0.0, 0.0)
    with pytest.raises(CalibrationError, match=r"^who: optimisation diverged \(loss nan\)$"):
        calibration._lbfgs(params, lambda: (params[0] * float("nan")).sum(), "who", max_iter=2)


# ================================================================ calibration: scaling fits
def _ce_grad(z, y, logits):
    n, k = logits.shape
    p = scipy.special.softmax(logits, axis=1)
    ce = -np.mean(np.log(p[np.arange(n), y]))
    return ce, (p - np.eye(k)[y]) / n  # d ce / d logits


def test_vector_scaling_minimises_its_documented_objective():
    """mean NLL + reg * (||w - 1||^2 + ||b||^2), minimised by scipy with analytic gradients."""
    z, y = _logits(n=90, k=3, seed=8, scale=2.0)
    reg, k = 0.05, 3

    def f(theta):
        w, b = theta[:k], theta[k:]
        ce, d = _ce_grad(z, y, z * w + b)
        val = ce + reg * (((w - 1) ** 2).sum() + (b ** 2).sum())
        return val, np.concatenate([(d * z).sum(0) + 2 * reg * (w - 1), d.sum(0) + 2 * reg * b])

    ref = scipy.optimize.minimize(f, np.r_[np.ones(k), np.zeros(k)], jac=True, method="BFGS",
                                  options={"gtol": 1e-12})
    cal = VectorScaling(reg=reg).fit(z, y)
    np.testing.assert_allclose(np.r_[cal.w, cal.b], ref.x, atol=1e-6)
    assert cal.w.dtype == cal.b.dtype == np.float64  # fitted in float64


def test_matrix_scaling_minimises_the_odir_objective():
    """mean NLL + reg_offdiag / (k (k - 1)) * sum_{i != j} W_ij^2 + reg_bias / k * ||b||^2."""
    z, y = _logits(n=90, k=3, seed=9, scale=2.0)
    k, r_off, r_b = 3, 0.6, 0.3
    off = 1 - np.eye(k)

    def f(theta):
        W, b = theta[:k * k].reshape(k, k), theta[k * k:]
        ce, d = _ce_grad(z, y, z @ W.T + b)
        val = ce + r_off / (k * (k - 1)) * ((W * off) ** 2).sum() + r_b / k * (b ** 2).sum()
        gW = d.T @ z + 2 * r_off / (k * (k - 1)) * W * off
        return val, np.concatenate([gW.ravel(), d.sum(0) + 2 * r_b / k * b])

    ref = scipy.optimize.minimize(f, np.r_[np.eye(k).ravel(), np.zeros(k)], jac=True,
                                  method="BFGS", options={"gtol": 1e-12})
    cal = MatrixScaling(reg_offdiag=r_off, reg_bias=r_b).fit(z, y)
    np.testing.assert_allclose(np.r_[cal.W.ravel(), cal.b], ref.x, atol=1e-6)
    assert cal.W.dtype == cal.b.dtype == np.float64
    # the stored (W, b) are what predict applies
    np.testing.assert_allclose(cal.predict_proba(z), scipy.special.softmax(z @ ref.x[:9].reshape(3, 3).T
                                                                             + ref.x[9:], axis=1),
                               atol=1e-6)


def test_default_hyperparameters_recorded_in_state():
    """The defaults are part of every saved calibrator (state()["params"])."""
    assert calibrators.make_calibrator("temperature").params() == {"max_iter": 200}
    assert calibrators.make_calibrator("vector").params() == {"reg": 1e-4, "max_iter": 500}
    assert calibrators.make_calibrator("matrix").params() == {"reg_offdiag": 1e-2,
                                                              "reg_bias": 1e-2, "max_iter": 1000}
    assert calibrators.make_calibrator("histogram").params() == {"bins": 10}


# ================================================================ calibration: state
def test_state_round_trip_keeps_non_default_params():
    z, y = _logits(n=60, k=3, seed=10)
    cal = VectorScaling(reg=0.5, max_iter=50).fit(z, y)
    state = cal.state()
    assert state["params"] == {"reg": 0.5, "max_iter": 50}
    back = VectorScaling.from_state(json.loads(json.dumps(state)))
    assert back.params() == {"reg": 0.5, "max_iter": 50}
    without = {k: v for k, v in state.items() if k != "params"}  # defaults when absent
    assert VectorScaling.from_state(without).params() == VectorScaling().params()


def test_from_state_errors_name_what_is_wrong():
    with pytest.raises(CalibrationError, match=r"^temperature: state is for calibrator 'list'$"):
        TemperatureCalibrator.from_state([1, 2])
    with pytest.raises(CalibrationError, match=r"^temperature: unreadable state "
                                               r"\(KeyError: 'fitted'\)$"):
        TemperatureCalibrator.from_state({"name": "temperature", "num_classes": 3})
    z, y = _logits(n=60, k=3, seed=11)
    state = MatrixScaling().fit(z, y).state()
    state["fitted"]["W"] = [[1.0, 0.0], [0.0, 1.0]]  # b is right, W is not
    with pytest.raises(CalibrationError, match=r"^matrix: state has W \(2, 2\), b \(3,\) for "
                                               r"3 classes$"):
        MatrixScaling.from_state(state)
    state = calibrators.BetaCalibrator().fit(z, y).state()
    state["fitted"]["weights"] = calibrators._encode(np.zeros(3))
    with pytest.raises(CalibrationError, match=r"^beta: state weights has shape \(3,\), "
                                               r"expected \(6,\)$"):
        calibrators.BetaCalibrator.from_state(state)


def test_load_calibrator_of_a_foreign_json_lists_the_valid_names(tmp_path):
    path = tmp_path / "x.json"
    store.write_json([1, 2], path)
    with pytest.raises(CalibrationError, match=rf"^{re.escape(str(path))}: not a saved calibrator "
                                               rf"\(name None; valid names: {ALL_CALIBRATORS}\)$"):
        calibrators.load_calibrator(path)
    with pytest.raises(ValueError, match=rf"^unknown calibrator 'x'; valid names: "
                                         rf"{ALL_CALIBRATORS}$"):
        calibrators.make_calibrator("x")


def test_encode_decode_keep_dtype_and_shape():
    for a in (np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros((0, 3), np.int32)):
        back = calibrators._decode(json.loads(json.dumps(calibrators._encode(a))))
        assert back.dtype == a.dtype and back.shape == a.shape
        np.testing.assert_array_equal(back, a)
    with pytest.raises(TypeError, match=r"^cannot serialise set$"):
        calibrators._encode({1})


def test_predict_proba_of_a_single_row():
    z, y = _logits(n=60, k=3, seed=12)
    cal = TemperatureCalibrator().fit(z, y)
    one = cal.predict_proba(z[:1])
    assert one.shape == (1, 3)
    np.testing.assert_array_equal(one, cal.predict_proba(z)[:1])


def test_renormalise_infinities_and_negatives():
    p = calibration._renormalise(np.array([[np.inf, 1.0, 1.0], [-np.inf, 1.0, 3.0],
                                           [-0.5, 1.0, 1.0]]))
    np.testing.assert_array_equal(p, [[0, 0.5, 0.5], [0, 0.25, 0.75], [0, 0.5, 0.5]])


def test_binary_netcal_output_is_class_one_probability():
    """k = 2: netcal calibrates p[:, 1] alone; predict_proba is [1 - q, q] of its output."""
    z, y = _logits(n=80, k=2, seed=13, scale=1.5)
    cal = HistogramCalibrator(bins=5).fit(z, y)
    q = cal._model.transform(metrics.softmax(z))
    assert q.ndim == 1
    np.testing.assert_allclose(cal.predict_proba(z), np.stack([1 - q, q], axis=1), atol=1e-12)


def test_quiet_netcal_errors_and_warnings_name_the_calibrator():
    def boom():
        raise ValueError("boom")

    with pytest.raises(CalibrationError, match=r"^who: netcal failed \(ValueError: boom\)$"):
        calibrators._quiet_netcal("who", boom)

    def chatty(x, scale=1.0):
        print("netcal says hi")
        return np.log(np.array([0.0, -1.0])) * scale  # divide and invalid: quiet

    with pytest.warns(UserWarning, match=r"^who: netcal: netcal says hi$") as rec:
        out = calibrators._quiet_netcal("who", chatty, 1, scale=2.0)
    assert all(r.category is UserWarning for r in rec)
    assert out[0] == -np.inf and np.isnan(out[1])


def test_netcal_failure_names_the_calibrator(monkeypatch):
    z, y = _logits(n=30, k=3, seed=14)
    cal = HistogramCalibrator().fit(z, y)

    def broken(x):
        raise RuntimeError("bad bins")

    monkeypatch.setattr(cal._model, "transform", broken)
    with pytest.raises(CalibrationError, match=r"^histogram: netcal failed \(RuntimeError: "
                                               r"bad bins\)$"):
        cal.predict_proba(z)


def test_beta_non_finite_fit_named(monkeypatch):
    z, y = _logits(n=30, k=3, seed=15)
    from netcal.scaling import BetaCalibration
    real_fit = BetaCalibration.fit

    def nan_fit(self, *a, **kw):
        out = real_fit(self, *a, **kw)
        self._sites["bias"]["values"] = np.full_like(self._sites["bias"]["values"], np.nan)
        return out

    monkeypatch.setattr(BetaCalibration, "fit", nan_fit)
    with pytest.raises(CalibrationError, match=r"^beta: fit gave non-finite parameters$"):
        calibrators.BetaCalibrator().fit(z, y)


# ================================================================ store
def test_config_hash_is_the_first_10_hex_of_sha1_of_sorted_json():
    cfg = {"b": [1, 2], "a": 0.5}
    expected = hashlib.sha1(b'{"a": 0.5, "b": [1, 2]}').hexdigest()[:10]
    assert store.config_hash(cfg) == expected
    assert store.run_id("teacher", "r8", cfg) == f"teacher-r8-{expected}"


def test_write_json_is_sorted_indented_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c.json"  # parents created
    store.write_json({"b": 1, "a": {"d": 2, "c": 3}}, path)
    assert path.read_text() == '{\n "a": {\n  "c": 3,\n  "d": 2\n },\n "b": 1\n}'
    store.atomic_write_bytes(b"x", tmp_path / "d" / "e" / "f.bin")
    assert (tmp_path / "d" / "e" / "f.bin").read_bytes() == b"x"


def test_study_folder_layout_and_rerun_of_a_run(tmp_path):
    st = store.Study(tmp_path)
    assert st.runs == tmp_path / "runs" and st.figures == tmp_path / "figures"
    d = st.begin_run("r1", {"x": 1})
    assert d == tmp_path / "runs" / "r1"
    assert st.begin_run("r1", {"x": 2}) == d  # a rerun after a failure reuses the folder
    assert store.read_json(d / "config.json") == {"x": 2}


def test_checkpoint_error_without_a_message(tmp_path, monkeypatch):
    def fail(*a, **kw):
        raise RuntimeError()

    monkeypatch.setattr(store.torch, "load", fail)
    path = tmp_path / "m.pt"
    with pytest.raises(store.StoreError, match=rf"^corrupt checkpoint {re.escape(str(path))}: "
                                               r"RuntimeError:   \(delete it to retrain\)$"):
        store.safe_torch_load(path)


def test_lock_holder_alive_rules(monkeypatch):
    host = socket.gethostname()
    assert store._holder_alive("garbage")  # unreadable: assume it holds
    assert store._holder_alive(f"pid 1 on another-{host}")  # another machine: cannot tell
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert store._holder_alive(f"pid {child.pid} on {host}")
        with pytest.raises(subprocess.TimeoutExpired):  # looking sent it no signal
            child.wait(timeout=0.2)
    finally:
        child.kill()
        child.wait()
    assert not store._holder_alive(f"pid {child.pid} on {host}")  # gone

    def denied(pid, sig):
        raise PermissionError

    monkeypatch.setattr(store.os, "kill", denied)  # another user's process
    assert store._holder_alive(f"pid {child.pid} on {host}")
