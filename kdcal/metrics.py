"""Accuracy and calibration metrics on numpy arrays or tensors.

ECE comes from netcal (the reference implementation the field uses); the rest are one-liners
that netcal does not provide in this form.
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

    p, y = _check_probs(probs), _labels(labels)
    # Top-1 confidence against correctness: netcal would otherwise treat a matrix whose labels
    # show <= 2 classes as a binary problem and bin the wrong column.
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.int64)
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


def reliability_bins(probs, labels, n_bins: int = 15) -> dict:
    """Per-bin confidence, accuracy and count (for tables; diagrams come from netcal)."""
    p, y = _check_probs(probs), _labels(labels)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    acc = np.bincount(idx, weights=(pred == y), minlength=n_bins) / np.maximum(count, 1)
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / np.maximum(count, 1)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "accuracy": acc,
            "confidence": mean_conf}


def summarize(logits, labels, n_bins: int = 15) -> dict:
    """The metrics every model row of the results table carries."""
    probs = softmax(logits)
    return {"acc": accuracy(logits, labels), "ece": ece(probs, labels, n_bins),
            "nll": nll(logits, labels), "brier": brier(probs, labels)}
