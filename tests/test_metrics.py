"""Metrics against netcal, torch, and independent hand-written references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from netcal.metrics import ECE

from kdcal import metrics


def _logits(n=400, k=10, scale=2.5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, k)) * scale


def _labels(n=400, k=10, seed=100):
    return np.random.default_rng(seed).integers(0, k, n)


def reference_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-1 ECE with equal-width bins, written independently of netcal.

    Bin convention matched to netcal 1.4 (np.histogramdd / scipy.binned_statistic_dd over
    ``np.linspace(0, 1, n_bins + 1)``): bins are closed on the left, [k/B, (k+1)/B), and the last
    bin is [ (B-1)/B, 1 ]. Empty bins contribute nothing; weights are count / n.
    (netcal also clips confidences to [eps, 1 - eps] first, which moves no value across an edge.)
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


def _no_ties(probs: np.ndarray, n_bins: int) -> bool:
    conf = probs.max(axis=1) * n_bins
    return bool(np.all(np.abs(conf - np.round(conf)) > 1e-9))


# ---------------------------------------------------------------- ECE
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [0.5, 2.5, 8.0])
def test_ece_equals_netcal(seed, scale):
    p = metrics.softmax(_logits(scale=scale, seed=seed))
    y = _labels(seed=seed + 50)
    assert metrics.ece(p, y) == pytest.approx(ECE(bins=15).measure(p, y), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n_bins", [15, 10])
def test_ece_equals_reference(seed, n_bins):
    p = metrics.softmax(_logits(scale=1.0 + seed, seed=seed))
    y = _labels(seed=seed + 7)
    assert _no_ties(p, n_bins)
    assert metrics.ece(p, y, n_bins) == pytest.approx(reference_ece(p, y, n_bins), abs=1e-9)


def test_ece_known_value():
    # three samples, all in bin [0.6, 0.6667): confidence 0.62, 2 of 3 correct -> |0.6667 - 0.62|
    p = np.array([[0.62, 0.38], [0.62, 0.38], [0.38, 0.62]])
    p = np.concatenate([p, np.zeros((3, 1))], axis=1)
    y = np.array([0, 2, 1])  # three distinct labels (see test_ece_top1_whatever_labels_occur)
    assert metrics.ece(p, y) == pytest.approx(abs(2 / 3 - 0.62), abs=1e-12)


def test_ece_on_bin_edges_equals_netcal():
    # confidences exactly on edges k/15 (and 1.0): only netcal's own convention is asserted here
    k = 4
    conf = np.array([j / 15 for j in range(4, 16)] * 3)
    p = np.zeros((len(conf), k))
    p[:, 0] = conf
    p[:, 1:] = ((1 - conf) / (k - 1))[:, None]
    y = np.arange(len(conf)) % k
    assert metrics.ece(p, y) == pytest.approx(ECE(bins=15).measure(p, y), abs=1e-12)


def test_ece_accepts_tensors():
    z = torch.randn(200, 10, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.randint(10, (200,), generator=torch.Generator().manual_seed(1))
    p = torch.softmax(z.double(), 1)
    assert metrics.ece(p, y) == pytest.approx(reference_ece(p.numpy(), y.numpy()), abs=1e-9)


def test_ece_top1_whatever_labels_occur():
    """ECE of a 10-class model is the top-1 ECE also on a subset whose labels hold <= 2 classes.

    (A class-filtered test subset, or a small ``test_size``.)
    """
    p = metrics.softmax(_logits(n=300, scale=3.0, seed=4))
    y = np.random.default_rng(5).integers(0, 2, 300)  # only classes 0 and 1 occur
    assert _no_ties(p, 15)
    assert metrics.ece(p, y) == pytest.approx(reference_ece(p, y), abs=1e-9)


def test_ece_two_class_model_is_top1():
    """For a 2-class model too, ECE bins the top-1 confidence max(p), as the docstring says
    (not the confidence of class 1, which is netcal's binary convention)."""
    p = metrics.softmax(_logits(n=300, k=2, scale=3.0, seed=4))
    y = np.random.default_rng(5).integers(0, 2, 300)
    assert _no_ties(p, 15)
    assert metrics.ece(p, y) == pytest.approx(reference_ece(p, y), abs=1e-9)


def test_ece_rejects_logits():
    z = _logits(n=50)
    with pytest.raises(ValueError, match="logits"):
        metrics.ece(z, _labels(n=50))
    with pytest.raises(ValueError):
        metrics.brier(z, _labels(n=50))


def test_ece_rejects_non_finite_and_bad_shape():
    p = metrics.softmax(_logits(n=20))
    p[3, 0] = np.nan
    with pytest.raises(ValueError):
        metrics.ece(p, _labels(n=20))
    with pytest.raises(ValueError, match="shape"):
        metrics.ece(np.full(10, 0.1), _labels(n=10))


@pytest.mark.parametrize("fn", [metrics.ece, metrics.brier, metrics.nll, metrics.accuracy])
def test_labels_must_be_integers(fn):
    p = metrics.softmax(_logits(n=20))
    with pytest.raises(ValueError, match="integer"):
        fn(p, _labels(n=20).astype(float))
    with pytest.raises(ValueError, match="integer"):
        fn(p, _labels(n=20)[:, None])


# ---------------------------------------------------------------- NLL, accuracy, Brier
def test_nll_equals_torch_cross_entropy():
    z, y = _logits(seed=3), _labels(seed=4)
    expected = F.cross_entropy(torch.from_numpy(z), torch.from_numpy(y)).item()
    assert metrics.nll(z, y) == pytest.approx(expected, rel=1e-10)
    assert metrics.nll(torch.from_numpy(z).float(), torch.from_numpy(y)) == \
        pytest.approx(expected, rel=1e-5)


def test_nll_stable_for_large_logits():
    z = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert metrics.nll(z, np.array([0, 0])) == pytest.approx(500.0)


def test_accuracy_logits_equals_probs():
    z, y = _logits(seed=5), _labels(seed=6)
    acc = metrics.accuracy(z, y)
    assert acc == metrics.accuracy(metrics.softmax(z), y)
    assert acc == pytest.approx(float((z.argmax(1) == y).mean()))
    assert metrics.accuracy(np.eye(4), np.arange(4)) == 1.0
    assert metrics.accuracy(np.eye(4), np.array([1, 0, 3, 2])) == 0.0


def test_brier():
    y = _labels(n=30, k=5)
    assert metrics.brier(np.eye(5)[y], y) == 0.0
    # always-wrong one-hot: distance 2 per sample
    assert metrics.brier(np.eye(5)[(y + 1) % 5], y) == pytest.approx(2.0)
    # uniform: (1 - 1/k)^2 + (k-1)/k^2 = 1 - 1/k
    assert metrics.brier(np.full((30, 5), 0.2), y) == pytest.approx(0.8)


def test_softmax_rows_sum_to_one():
    p = metrics.softmax(_logits(scale=50))
    assert np.allclose(p.sum(1), 1) and (p >= 0).all()
    assert np.allclose(p, torch.softmax(torch.from_numpy(_logits(scale=50)), 1).numpy())


# ---------------------------------------------------------------- teacher vs student
def test_kl_teacher_student_equals_torch():
    s, t = _logits(seed=8), _logits(seed=9, scale=4)
    expected = F.kl_div(F.log_softmax(torch.from_numpy(s), 1), F.log_softmax(torch.from_numpy(t), 1),
                        log_target=True, reduction="batchmean").item()
    assert metrics.kl_teacher_student(s, t) == pytest.approx(expected, rel=1e-10)
    assert metrics.kl_teacher_student(s, s) == pytest.approx(0.0, abs=1e-12)
    assert metrics.kl_teacher_student(s, t) > 0


def test_agreement():
    t = _logits(seed=10)
    assert metrics.agreement(t, t) == 1.0
    assert metrics.agreement(metrics.softmax(t), t) == 1.0
    s = t.copy()
    s[:100] = -s[:100]  # flips the argmax of the first 100 rows (10 classes, distinct values)
    assert metrics.agreement(s, t) == pytest.approx(0.75)
    assert metrics.agreement(torch.from_numpy(s), torch.from_numpy(t)) == pytest.approx(0.75)


def test_summarize_keys_and_values():
    z, y = _logits(seed=11), _labels(seed=12)
    out = metrics.summarize(z, y)
    assert set(out) == {"acc", "ece", "nll", "brier"}
    assert out["ece"] == pytest.approx(reference_ece(metrics.softmax(z), y), abs=1e-9)
    assert out["nll"] == pytest.approx(metrics.nll(z, y))
