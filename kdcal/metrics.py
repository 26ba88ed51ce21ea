"""Accuracy and calibration metrics on numpy arrays or tensors.

ECE, adaptive ECE and MCE come from netcal (the reference implementation the field uses); the rest
are short functions that netcal does not provide in this form.

Binning convention (netcal's, followed everywhere here): edges ``np.linspace(0, 1, B + 1)``, bins
closed on the left ``[b/B, (b+1)/B)``, the last bin ``[(B-1)/B, 1]`` closed, so a confidence of
exactly 1 is in the last bin. torchmetrics (``multiclass_calibration_error``) differs on ties:
it buckets with ``n_bins + 1`` boundaries, so a confidence of exactly 1.0 gets an extra bin of its
own; it casts multiclass confidences to float32 (a value within float32 rounding of an edge may
change bin); and ``torch.linspace`` edges can differ from ``k/B`` by one ulp (in float64, 11/15 is
one ulp high, so 11/15 falls in the bin below). Away from ties the two agree to float32 precision.
"""
from __future__ import annotations

import numpy as np
import torch


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _labels(labels) -> np.ndarray:
    y = _np(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d integer array, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def softmax(logits) -> np.ndarray:
    z = _np(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits) -> np.ndarray:
    z = _np(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def accuracy(scores, labels) -> float:
    """Top-1 accuracy of logits or probabilities (argmax is the same for both)."""
    s, y = _np(scores), _labels(labels)
    return float((s.argmax(axis=1) == y).mean())


def nll(logits, labels) -> float:
    """Mean negative log-likelihood of the softmax of ``logits``."""
    y = _labels(labels)
    return float(-log_softmax(logits)[np.arange(len(y)), y].mean())


def _check_probs(probs) -> np.ndarray:
    p = _np(probs).astype(np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be [n, classes], got shape {p.shape}")
    if not np.isfinite(p).all() or (p < -1e-9).any() or np.abs(p.sum(axis=1) - 1).max() > 1e-4:
        raise ValueError("probs must be finite rows that sum to 1 (did you pass logits? use softmax)")
    return np.clip(p, 0.0, 1.0)


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, ``n_bins`` equal-width bins (netcal)."""
    from netcal.metrics import ECE

    # Top-1 confidence against correctness: netcal would otherwise treat a matrix whose labels
    # show <= 2 classes as a binary problem and bin the wrong column.
    conf, correct = _top1(probs, labels)
    return float(ECE(bins=n_bins).measure(conf, correct))


def brier(probs, labels) -> float:
    """Multiclass Brier score: mean squared distance of the distribution to the one-hot label."""
    p, y = _check_probs(probs), _labels(labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def agreement(student_scores, teacher_scores) -> float:
    """Fraction of samples where student and teacher predict the same class."""
    return float((_np(student_scores).argmax(1) == _np(teacher_scores).argmax(1)).mean())


def kl_teacher_student(student_logits, teacher_logits) -> float:
    """Mean KL(teacher || student) of the two softmax distributions, in nats."""
    lt, ls = log_softmax(teacher_logits), log_softmax(student_logits)
    return float((np.exp(lt) * (lt - ls)).sum(axis=1).mean())


def _top1(probs, labels):
    p, y = _check_probs(probs), _labels(labels)
    if len(p) != len(y) or len(y) == 0:
        raise ValueError(f"probs [n, classes] and labels [n] must have the same n > 0, got "
                         f"{p.shape} and {y.shape}")
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.int64)


def _netcal_clip(x: np.ndarray) -> np.ndarray:
    """netcal clips confidences to [eps, 1 - eps] before binning; this moves no value across an
    edge of an equal-width grid (1.0 stays in the last bin, 0.0 in the first)."""
    eps = np.finfo(np.float64).eps
    return np.clip(x, eps, 1.0 - eps)


def _equal_mass_edges(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """netcal's equal-mass edges: quantiles (linear interpolation) of the clipped confidences at
    ``linspace(0, 1, n_bins + 1)``, with the first and last edge forced to 0 and 1."""
    q = np.quantile(_netcal_clip(conf), np.linspace(0.0, 1.0, n_bins + 1))
    q[0], q[-1] = 0.0, 1.0
    return q


def _binned_ce(conf: np.ndarray, correct: np.ndarray, edges: np.ndarray) -> float:
    """sum_b n_b / n * |acc_b - conf_b| with netcal's bin convention, by hand.

    Bins are closed on the left, ``[e_b, e_{b+1})`` (``searchsorted(side='right')``, as in scipy's
    ``binned_statistic_dd``), and a value equal to the last edge joins the last bin. Duplicate edges
    (ties in equal-mass binning) make empty zero-width bins; a value equal to a duplicated edge goes
    to the bin that starts at it. Confidences are clipped to [eps, 1 - eps] first, as netcal does.
    """
    x = _netcal_clip(conf)
    n_bins = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    gap = np.bincount(idx, weights=correct - x, minlength=n_bins)  # n_b * (acc_b - conf_b)
    return float(np.abs(gap).sum() / len(x))


def ace(probs, labels, n_bins: int = 15) -> float:
    """Adaptive calibration error of the top-1 confidence: ECE over ``n_bins`` equal-mass bins.

    ``ACE = sum_b (n_b / n) * |acc(b) - conf(b)|`` where the bin edges are the quantiles of the
    top-1 confidences (netcal ``ECE(bins, equal_intervals=False)``: ``np.quantile`` with linear
    interpolation at ``linspace(0, 1, n_bins + 1)``, first edge set to 0 and last to 1), so every
    bin holds about n / n_bins samples; bins are closed on the left, the last one also on the right.

    This is *not* netcal's ``ACE`` class, which is the "average calibration error" of Neumann et al.
    (2018): the unweighted mean of |acc - conf| over non-empty *equal-width* bins.

    netcal cannot bin when two quantile edges coincide (n < n_bins + 1 distinct confidences, e.g.
    n = 1, or many ties such as confidences of exactly 1): scipy raises "The smallest edge
    difference is numerically 0". Then the same edges and bin convention are applied by hand
    (:func:`_binned_ce`); the zero-width bins are empty. On inputs netcal accepts, the two agree.
    """
    conf, correct = _top1(probs, labels)
    edges = _equal_mass_edges(conf, n_bins)
    if np.all(np.diff(edges) > 0):
        from netcal.metrics import ECE

        return float(ECE(bins=n_bins, equal_intervals=False).measure(conf, correct))
    return _binned_ce(conf, correct, edges)


def mce(probs, labels, n_bins: int = 15) -> float:
    """Maximum calibration error of the top-1 confidence: ``max_b |acc(b) - conf(b)|`` over the
    non-empty ones of ``n_bins`` equal-width bins (netcal ``MCE``; same bins as :func:`ece`)."""
    from netcal.metrics import MCE

    conf, correct = _top1(probs, labels)
    return float(MCE(bins=n_bins).measure(conf, correct))


def classwise_ece(probs, labels, n_bins: int = 15) -> float:
    """Classwise ECE (Kull et al. 2019): mean over the k classes of the equal-width-bin ECE of the
    one-vs-rest probability ``p[:, c]`` against the indicator ``labels == c``::

        cw-ECE = 1/k * sum_c sum_b (n_bc / n) * |freq_bc - conf_bc|

    Every class of the model counts, also one absent from ``labels`` (its ECE is then the mean
    probability it receives). Bins follow :func:`ece` (netcal's): ``[b/B, (b+1)/B)``, the last one
    closed; each term equals netcal ``ECE(bins).measure(p[:, c], labels == c)``. netcal has no
    classwise ECE, so it is computed here, vectorised over classes.
    """
    p, y = _check_probs(probs), _labels(labels)
    if len(p) != len(y) or len(y) == 0:
        raise ValueError(f"probs [n, classes] and labels [n] must have the same n > 0, got "
                         f"{p.shape} and {y.shape}")
    n, k = p.shape
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1}")
    x = _netcal_clip(p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)  # [n, k]
    flat = (idx + n_bins * np.arange(k)[None, :]).ravel()
    hit = (y[:, None] == np.arange(k)[None, :]).astype(np.float64)
    gap = np.bincount(flat, weights=(hit - x).ravel(), minlength=k * n_bins)
    return float(np.abs(gap).sum() / n / k)


def summarize_probs(probs, labels, n_bins: int = 15) -> dict:
    """The keys of :func:`summarize`, from probabilities (NLL of the probabilities clipped at
    1e-12)."""
    p, y = _check_probs(probs), _labels(labels)
    nll_p = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
    return {"acc": accuracy(p, y), "ece": ece(p, y, n_bins), "nll": nll_p, "brier": brier(p, y),
            "ace": ace(p, y, n_bins), "mce": mce(p, y, n_bins),
            "classwise_ece": classwise_ece(p, y, n_bins)}


def summarize(logits, labels, n_bins: int = 15) -> dict:
    """The metrics every model row of the results table carries (NLL exact from the logits)."""
    out = summarize_probs(softmax(logits), labels, n_bins)
    out["acc"], out["nll"] = accuracy(logits, labels), nll(logits, labels)
    return out
