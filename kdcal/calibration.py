"""Temperature scaling (Guo et al. 2017) fitted on validation logits.

T is optimised as log T so it stays positive, by L-BFGS on the NLL in float64, and the fit is
checked: a non-finite input, probabilities passed as logits, or a gradient that did not vanish
raise :class:`CalibrationError` instead of returning a silent T.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

T_MIN, T_MAX = 1e-2, 1e2


class CalibrationError(ValueError):
    """A calibrator could not be fitted; the message names the calibrator and the cause."""


def _as_logits(logits, labels, who: str):
    z = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    z = z.detach().cpu().to(torch.float64)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    y = y.detach().cpu().long()
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y) or len(y) == 0:
        raise CalibrationError(f"{who}: expected logits [n, classes] and labels [n], got "
                               f"{tuple(z.shape)} and {tuple(y.shape)}")
    if not torch.isfinite(z).all():
        raise CalibrationError(f"{who}: logits contain NaN or inf")
    if int(y.min()) < 0 or int(y.max()) >= z.shape[1]:
        raise CalibrationError(f"{who}: labels outside 0..{z.shape[1] - 1}")
    rows = z.sum(dim=1)
    if (z >= 0).all() and (z <= 1).all() and torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        raise CalibrationError(f"{who}: got probabilities where logits are expected "
                               "(pass the model's raw outputs, or log-probabilities)")
    return z, y


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The temperature T > 0 that minimises NLL(softmax(logits / T), labels)."""
    z, y = _as_logits(logits, labels, "temperature scaling")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    loss = closure()
    t = float(log_t.detach().exp())
    grad = abs(float(log_t.grad))
    if not np.isfinite(t) or not T_MIN <= t <= T_MAX:
        raise CalibrationError(f"temperature scaling: T={t:.4g} outside [{T_MIN}, {T_MAX}] "
                               "(logits all correct and separable, or constant?)")
    if grad > 1e-5 * max(1.0, float(loss.detach())):
        raise CalibrationError(f"temperature scaling: did not converge (|dNLL/dlogT|={grad:.2e})")
    return t


def apply_temperature(logits, temperature: float):
    """Logits divided by T (same type as given)."""
    return logits / temperature
