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
    return sum(weight * gap for weight, gap in _reference_bins(probs, labels, n_bins))


def _reference_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int):
    """(fraction of samples, |accuracy - confidence|) of every non-empty equal-width bin."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
        if in_bin.any():
            yield in_bin.mean(), abs(correct[in_bin].mean() - conf[in_bin].mean())


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
    assert set(out) == {"acc", "ece", "nll", "brier", "ace", "mce", "classwise_ece"}
    assert out["ece"] == pytest.approx(reference_ece(metrics.softmax(z), y), abs=1e-9)
    assert out["nll"] == pytest.approx(metrics.nll(z, y))


# ---------------------------------------------------------------- ACE, MCE, classwise ECE
# Conventions (kdcal follows netcal; see the metrics module docstring):
# * equal-width bins [b/B, (b+1)/B), the last one [(B-1)/B, 1] closed, so confidence 1.0 is in
#   the last bin. torchmetrics gives 1.0 an extra bin of its own, casts multiclass confidences to
#   float32, and its float64 torch.linspace edge 11/15 is one ulp high. So torchmetrics is compared
#   on inputs without ties (no confidence on an edge or equal to 1), and the tie cases are
#   asserted against netcal and the hand references below.
# * ACE = ECE with equal-mass bins (netcal ECE(equal_intervals=False)), not netcal's ACE class.
def _sampled(n=600, k=10, scale=3.0, t=1.1, seed=0):
    """Probabilities and labels drawn from softmax(z / t): slightly over-confident and
    informative, so per-bin gaps change sign (from sampling noise) and ECE, ACE and MCE differ."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    q = metrics.softmax(z / t)
    y = np.minimum((q.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    return metrics.softmax(z), y


def reference_ace(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Equal-mass top-1 ECE by hand: edges = quantiles of the confidences (linear interpolation)
    at j / n_bins, first edge 0 and last 1 (netcal 1.4); bins [lo, hi), the last closed; with tied
    edges a value goes to the last bin whose lower edge is <= it."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.quantile(conf, [j / n_bins for j in range(n_bins + 1)])
    edges[0], edges[-1] = 0.0, 1.0
    bins = np.array([max(b for b in range(n_bins) if edges[b] <= c) for c in conf])
    total = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


def reference_mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Max over non-empty equal-width bins of |acc - conf| (same bins as reference_ece)."""
    return max((gap for _, gap in _reference_bins(probs, labels, n_bins)), default=0.0)


def reference_classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Kull et al. (2019) classwise ECE by hand: for each class c, the equal-width-bin ECE of
    p[:, c] against 1[label == c], then the mean over all k classes. Plain loops, no netcal."""
    n, k = probs.shape
    per_class = []
    for c in range(k):
        total = 0.0
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            last = b == n_bins - 1
            members = [i for i in range(n)
                       if lo <= probs[i, c] and (probs[i, c] < hi or (last and probs[i, c] <= hi))]
            if members:
                freq = sum(1.0 for i in members if labels[i] == c) / len(members)
                conf = sum(probs[i, c] for i in members) / len(members)
                total += len(members) / n * abs(freq - conf)
        per_class.append(total)
    return sum(per_class) / k


def _netcal_ace(p, y, n_bins=15):
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.int64)
    return ECE(bins=n_bins, equal_intervals=False).measure(conf, correct)


def _netcal_mce(p, y, n_bins=15):
    from netcal.metrics import MCE

    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.int64)
    return MCE(bins=n_bins).measure(conf, correct)


def _netcal_classwise(p, y, n_bins=15):
    return float(np.mean([ECE(bins=n_bins).measure(p[:, c], (y == c).astype(np.int64))
                          for c in range(p.shape[1])]))


def _tm_ce(p, y, norm, n_bins=15):
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    return tmc.multiclass_calibration_error(torch.from_numpy(p), torch.from_numpy(y),
                                            num_classes=p.shape[1], n_bins=n_bins, norm=norm).item()


def _tm_classwise(p, y, n_bins=15):
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    return float(np.mean([tmc.binary_calibration_error(
        torch.from_numpy(p[:, c]), torch.from_numpy((y == c).astype(np.int64)),
        n_bins=n_bins, norm="l1").item() for c in range(p.shape[1])]))


def _on_edges(x: np.ndarray, n_bins: int) -> bool:
    """Any value within float32 rounding of an edge b / n_bins, b = 1..n_bins (0 is no tie)."""
    s = np.asarray(x) * n_bins
    return bool(np.any((np.abs(s - np.round(s)) < 1e-6) & (np.round(s) >= 1)))


def _edge_probs(k: int, n_bins: int = 15, reps: int = 3):
    """Top-1 confidences exactly j / n_bins (and 1.0), the rest spread evenly; plus neighbours
    0.01 either side of each edge so a tie decides which bin the edge sample joins."""
    js = [j for j in range(1, n_bins + 1) if j / n_bins > (1 - j / n_bins) / (k - 1)]
    conf = []
    for j in js:
        conf += [j / n_bins, j / n_bins - 0.01] + ([j / n_bins + 0.01] if j < n_bins else [])
    conf = np.array(conf * reps)
    conf = conf[conf > 1.0 / k + 0.02]
    p = np.zeros((len(conf), k))
    p[:, 0] = conf
    p[:, 1:] = ((1 - conf) / (k - 1))[:, None]
    y = (np.arange(len(conf)) * 7 // 3) % k
    return p, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_new_metrics_equal_netcal_and_references_random(seed, k):
    p, y = _sampled(k=k, seed=seed, scale=3.0 if k > 2 else 2.0)
    assert metrics.ace(p, y) == pytest.approx(_netcal_ace(p, y), abs=1e-9)
    assert metrics.ace(p, y) == pytest.approx(reference_ace(p, y), abs=1e-9)
    assert metrics.mce(p, y) == pytest.approx(_netcal_mce(p, y), abs=1e-9)
    assert metrics.mce(p, y) == pytest.approx(reference_mce(p, y), abs=1e-9)
    cw = metrics.classwise_ece(p, y)
    assert cw == pytest.approx(_netcal_classwise(p, y), abs=1e-9)
    assert cw == pytest.approx(reference_classwise_ece(p, y), abs=1e-9)
    # the metrics measure different things on these inputs
    assert metrics.ace(p, y) != pytest.approx(metrics.ece(p, y), abs=1e-6)
    assert metrics.mce(p, y) > metrics.ece(p, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_new_metrics_equal_torchmetrics_without_ties(seed, k):
    p, y = _sampled(k=k, seed=seed, scale=3.0 if k > 2 else 2.0)
    assert not _on_edges(p.max(axis=1), 15) and not _on_edges(p, 15)
    assert metrics.ece(p, y) == pytest.approx(_tm_ce(p, y, "l1"), abs=1e-6)
    assert metrics.mce(p, y) == pytest.approx(_tm_ce(p, y, "max"), abs=1e-6)
    assert metrics.classwise_ece(p, y) == pytest.approx(_tm_classwise(p, y), abs=1e-6)


@pytest.mark.parametrize("n_bins", [15, 10, 7])
def test_new_metrics_other_bin_counts(n_bins):
    p, y = _sampled(n=400, seed=9)
    assert metrics.ace(p, y, n_bins) == pytest.approx(_netcal_ace(p, y, n_bins), abs=1e-9)
    assert metrics.ace(p, y, n_bins) == pytest.approx(reference_ace(p, y, n_bins), abs=1e-9)
    assert metrics.mce(p, y, n_bins) == pytest.approx(reference_mce(p, y, n_bins), abs=1e-9)
    assert metrics.classwise_ece(p, y, n_bins) == pytest.approx(
        reference_classwise_ece(p, y, n_bins), abs=1e-9)
    assert metrics.classwise_ece(p, y, n_bins) == \
        pytest.approx(_tm_classwise(p, y, n_bins), abs=1e-6)


@pytest.mark.parametrize("k", [2, 4, 10])
def test_new_metrics_on_bin_edges_equal_netcal_and_references(k):
    p, y = _edge_probs(k)
    assert _on_edges(p.max(axis=1), 15) and (p.max(axis=1) == 1.0).any()
    assert metrics.mce(p, y) == pytest.approx(_netcal_mce(p, y), abs=1e-12)
    assert metrics.mce(p, y) == pytest.approx(reference_mce(p, y), abs=1e-12)
    assert metrics.ece(p, y) == pytest.approx(reference_ece(p, y), abs=1e-12)
    assert metrics.classwise_ece(p, y) == pytest.approx(_netcal_classwise(p, y), abs=1e-12)
    assert metrics.classwise_ece(p, y) == pytest.approx(reference_classwise_ece(p, y), abs=1e-12)
    # many ties: equal-mass edges coincide, which netcal's ECE(equal_intervals=False) rejects
    assert metrics.ace(p, y) == pytest.approx(reference_ace(p, y), abs=1e-12)


@pytest.mark.parametrize("j", [3, 6, 7])
def test_torchmetrics_multiclass_float32_edges(j):
    """torchmetrics' multiclass path casts confidences to float32 and builds float32 edges; there
    float32(j/15) lies below the edge for j = 3, 6, 7, so a confidence of exactly j/15 joins the
    bin below, where kdcal/netcal put it in the bin above. Nudging the tied value down by 1e-9
    reproduces torchmetrics' value with kdcal."""
    edges32 = torch.linspace(0, 1, 16).numpy()
    assert edges32[j] > np.float32(j / 15)
    conf = np.array([j / 15, j / 15 - 0.01, j / 15 + 0.01])
    p = np.concatenate([conf[:, None], np.repeat(((1 - conf) / 9)[:, None], 9, axis=1)], axis=1)
    y = np.array([1, 0, 1])  # the tied sample and its upper neighbour wrong, the lower one right
    assert (p.argmax(axis=1) == 0).all()
    ours = metrics.ece(p, y)
    assert ours == pytest.approx(reference_ece(p, y), abs=1e-12)
    assert abs(ours - _tm_ce(p, y, "l1")) > 1e-3
    nudged = p.copy()
    nudged[0, 0] -= 1e-9
    nudged[0, 1] += 1e-9  # still sums to 1
    assert metrics.ece(nudged, y) == pytest.approx(_tm_ce(p, y, "l1"), abs=1e-6)
    assert metrics.mce(nudged, y) == pytest.approx(_tm_ce(p, y, "max"), abs=1e-6)


def test_confidence_one_convention_differs_from_torchmetrics():
    """Documents the one tie where the libraries disagree: confidence exactly 1.0.

    kdcal/netcal put it into the last bin [14/15, 1] with the 0.95 sample: |0.5 - 0.975| = 0.475.
    torchmetrics gives it a bin of its own: 0.5 * |0 - 1| + 0.5 * |1 - 0.95| = 0.525.
    """
    p = np.array([[1.0, 0.0, 0.0], [0.95, 0.03, 0.02]])
    y = np.array([1, 0])
    assert metrics.ece(p, y) == pytest.approx(0.475, abs=1e-12)
    assert metrics.ece(p, y) == pytest.approx(reference_ece(p, y), abs=1e-12)
    assert metrics.mce(p, y) == pytest.approx(0.475, abs=1e-12)
    assert _tm_ce(p, y, "l1") == pytest.approx(0.525, abs=1e-6)
    assert _tm_ce(p, y, "max") == pytest.approx(1.0, abs=1e-6)


def test_binary_torchmetrics_edge_11_15_is_one_ulp_high():
    """torchmetrics' float64 binary path builds edges with torch.linspace, whose 11/15 is one ulp
    above 11/15, so a probability of exactly 11/15 falls one bin lower there than in kdcal."""
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    edges = torch.linspace(0, 1, 16, dtype=torch.float64).numpy()
    assert edges[11] > 11 / 15 and np.array_equal(np.linspace(0, 1, 16), np.arange(16) / 15)
    # class 0 probabilities: 11/15 (label 1), 11/15 - 0.01 (label 0), 11/15 + 0.01 (label 0)
    c0 = np.array([11 / 15, 11 / 15 - 0.01, 11 / 15 + 0.01])
    p = np.stack([c0, 1 - c0], axis=1)
    y = np.array([1, 0, 0])
    ours = metrics.classwise_ece(p, y)
    assert ours == pytest.approx(reference_classwise_ece(p, y), abs=1e-12)
    assert ours == pytest.approx(_netcal_classwise(p, y), abs=1e-12)
    theirs = np.mean([tmc.binary_calibration_error(torch.from_numpy(p[:, c]),
                                                   torch.from_numpy((y == c).astype(np.int64)),
                                                   n_bins=15, norm="l1").item() for c in range(2)])
    assert abs(ours - theirs) > 1e-3


@pytest.mark.parametrize("k", [2, 10])
def test_new_metrics_single_class_labels(k):
    p, _ = _sampled(n=300, k=k, seed=5, scale=2.0)
    y = np.zeros(300, dtype=np.int64)  # every sample is class 0
    assert metrics.ace(p, y) == pytest.approx(_netcal_ace(p, y), abs=1e-9)
    assert metrics.ace(p, y) == pytest.approx(reference_ace(p, y), abs=1e-9)
    assert metrics.mce(p, y) == pytest.approx(_netcal_mce(p, y), abs=1e-9)
    assert metrics.classwise_ece(p, y) == pytest.approx(_netcal_classwise(p, y), abs=1e-9)
    assert metrics.classwise_ece(p, y) == pytest.approx(reference_classwise_ece(p, y), abs=1e-9)
    assert metrics.ece(p, y) == pytest.approx(_tm_ce(p, y, "l1"), abs=1e-6)
    assert metrics.mce(p, y) == pytest.approx(_tm_ce(p, y, "max"), abs=1e-6)
    assert metrics.classwise_ece(p, y) == pytest.approx(_tm_classwise(p, y), abs=1e-6)
    # an absent class contributes its mean probability: ECE of p[:, c] against all-zero labels
    for c in range(1, k):
        assert ECE(bins=15).measure(p[:, c], np.zeros(300, dtype=np.int64)) == \
            pytest.approx(p[:, c].mean(), abs=1e-9)


@pytest.mark.parametrize("conf,label", [(0.7, 0), (0.7, 1), (0.4, 2), (1.0, 0), (1.0, 1),
                                        (2 / 3, 1)])
def test_new_metrics_single_sample(conf, label):
    k = 3
    p = np.array([[conf, (1 - conf) * 0.6, (1 - conf) * 0.4]])
    y = np.array([label])
    gap = abs(float(label == 0) - conf)
    assert metrics.ece(p, y) == pytest.approx(gap, abs=1e-12)
    assert metrics.ace(p, y) == pytest.approx(gap, abs=1e-12)
    assert metrics.mce(p, y) == pytest.approx(gap, abs=1e-12)
    assert metrics.mce(p, y) == pytest.approx(_netcal_mce(p, y), abs=1e-12)
    cw = np.mean([abs(float(label == c) - p[0, c]) for c in range(k)])
    assert metrics.classwise_ece(p, y) == pytest.approx(cw, abs=1e-12)
    assert metrics.classwise_ece(p, y) == pytest.approx(reference_classwise_ece(p, y), abs=1e-12)
    if conf < 1.0:  # n = 1 is a tie-free input for torchmetrics unless conf is exactly 1
        assert metrics.ece(p, y) == pytest.approx(_tm_ce(p, y, "l1"), abs=1e-6)
        assert metrics.mce(p, y) == pytest.approx(_tm_ce(p, y, "max"), abs=1e-6)


def test_all_confidences_one():
    p = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    y = np.array([0, 1, 2, 3, 1, 0])  # 4 right, 2 wrong, all at confidence 1
    for fn in (metrics.ece, metrics.ace, metrics.mce):
        assert fn(p, y) == pytest.approx(1 / 3, abs=1e-12)
    assert metrics.classwise_ece(p, y) == pytest.approx(reference_classwise_ece(p, y), abs=1e-12)
    assert metrics.classwise_ece(p, y) == pytest.approx(_netcal_classwise(p, y), abs=1e-12)


def test_ace_ties_fall_back_to_netcal_convention():
    """netcal raises on coinciding equal-mass edges; kdcal bins by hand with netcal's convention,
    which on tie-free inputs gives netcal's value exactly."""
    p, y = _sampled(n=200, k=5, seed=3)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.int64)
    edges = metrics._equal_mass_edges(conf, 15)
    assert np.all(np.diff(edges) > 0)
    assert metrics._binned_ce(conf, correct, edges) == pytest.approx(_netcal_ace(p, y), abs=1e-12)
    tied = np.repeat(p[:5], 20, axis=0)  # 5 distinct confidences, 16 quantile edges
    y_tied = np.repeat(y[:5], 20)
    y_tied[::3] = (y_tied[::3] + 1) % 5
    with pytest.raises(ValueError, match="edge difference"):
        _netcal_ace(tied, y_tied)
    assert metrics.ace(tied, y_tied) == pytest.approx(reference_ace(tied, y_tied), abs=1e-12)


def test_ace_equal_mass_bins_hold_equal_counts():
    # 150 distinct confidences, 15 bins: ACE weighs 10 samples per bin; a hand-built check
    conf = np.linspace(0.4, 0.99, 150)
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.where(np.arange(150) % 3 == 0, 1, 0)
    edges = metrics._equal_mass_edges(conf, 15)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, 14)
    assert np.all(np.bincount(idx, minlength=15) == 10)
    assert metrics.ace(p, y) == pytest.approx(reference_ace(p, y), abs=1e-12)


def test_new_metrics_accept_tensors_and_reject_bad_input():
    p, y = _sampled(n=200, seed=6)
    pt, yt = torch.from_numpy(p), torch.from_numpy(y)
    for fn in (metrics.ace, metrics.mce, metrics.classwise_ece):
        assert fn(pt, yt) == pytest.approx(fn(p, y), abs=1e-12)
        with pytest.raises(ValueError, match="logits"):
            fn(np.log(p), y)
        with pytest.raises(ValueError, match="integer"):
            fn(p, y.astype(float))
        with pytest.raises(ValueError, match="same n"):
            fn(p, y[:-1])
    with pytest.raises(ValueError, match="labels"):
        metrics.classwise_ece(p, np.full(200, 10))


def test_summarize_probs_matches_summarize():
    z, y = _logits(seed=13, scale=1.5), _labels(seed=14)
    a, b = metrics.summarize(z, y), metrics.summarize_probs(metrics.softmax(z), y)
    assert list(a) == list(b) == ["acc", "ece", "nll", "brier", "ace", "mce", "classwise_ece"]
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
    p = metrics.softmax(z)
    assert a["ace"] == metrics.ace(p, y) and a["mce"] == metrics.mce(p, y)
    assert a["classwise_ece"] == metrics.classwise_ece(p, y)
    # NLL from probabilities clips at 1e-12
    hard = np.eye(3)[[0, 1, 2]]
    out = metrics.summarize_probs(hard, np.array([0, 1, 0]))
    assert out["nll"] == pytest.approx(-np.log(1e-12) / 3)


def test_softmax_of_large_logits_stays_finite():
    """Shifting by the row maximum is what keeps exp from overflowing (softmax is shift-invariant,
    so only large logits tell a subtracted maximum from an added one)."""
    p = metrics.softmax(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.isfinite(p).all() and np.allclose(p, [[1.0, 0.0, 0.0]])
