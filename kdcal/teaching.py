"""Quantities the notebooks' "Try this" exercises ask for, so that a test can check each answer.

Only what a notebook exercise needs and the library does not already compute lives here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def compose_pull_difference(teacher_logits, temperature: float, tau: float) -> float:
    """How differently ``compose`` and ``uncalibrated`` KD pull on a student, per unit of alpha.

    The soft term alpha * tau^2 * KL(p || q) has the gradient alpha * tau * (q - p) with respect to
    the student's logits, so for the same student the two modes' gradients differ by
    alpha * tau * (p_uncalibrated - p_compose): this returns the mean over images of its L1 norm
    (alpha left out), with p at tau from the raw teacher and from the teacher divided by T.
    """
    if temperature <= 0 or tau <= 0:
        raise ValueError(f"temperature and tau must be > 0, got temperature={temperature}, tau={tau}")
    z = torch.as_tensor(teacher_logits, dtype=torch.float64)
    if z.ndim != 2:
        raise ValueError(f"teacher_logits must be [images, classes], got shape {tuple(z.shape)}")
    p_uncalibrated = F.softmax(z / tau, dim=1)
    p_compose = F.softmax(z / (temperature * tau), dim=1)
    return float(tau * (p_uncalibrated - p_compose).abs().sum(dim=1).mean())
