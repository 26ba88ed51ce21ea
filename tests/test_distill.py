"""Hinton KD loss, the compose/replace modes, make_loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdcal.distill import KD_MODES, kd_loss, make_loss, mode_temperatures


def _data(n=32, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    t = torch.randn(n, k, generator=g, dtype=torch.float64) * 4
    y = torch.randint(k, (n,), generator=g)
    return s, t, y


def kl_by_hand(s, t, tau):
    """tau^2 * mean_i sum_c p_t log(p_t / p_s), softmaxes at temperature tau, written out."""
    def softmax(z):
        e = torch.exp(z - z.max(dim=1, keepdim=True).values)
        return e / e.sum(dim=1, keepdim=True)
    pt, ps = softmax(t / tau), softmax(s / tau)
    return tau ** 2 * (pt * (torch.log(pt) - torch.log(ps))).sum(dim=1).mean()


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_alpha_one_is_scaled_kl(tau):
    s, t, y = _data()
    assert kd_loss(s, t, y, tau, 1.0).item() == pytest.approx(kl_by_hand(s, t, tau).item(), rel=1e-10)


def test_alpha_zero_is_cross_entropy():
    s, t, y = _data()
    assert kd_loss(s, t, y, 4.0, 0.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-12)


def test_mixture():
    s, t, y = _data(seed=1)
    tau, alpha = 3.0, 0.7
    expected = alpha * kl_by_hand(s, t, tau) + (1 - alpha) * F.cross_entropy(s, y)
    assert kd_loss(s, t, y, tau, alpha).item() == pytest.approx(expected.item(), rel=1e-10)


def test_zero_when_student_equals_teacher_and_alpha_one():
    s, _, y = _data(seed=2)
    assert kd_loss(s, s.clone(), y, 4.0, 1.0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("T", [0.5, 1.7, 3.0])
@pytest.mark.parametrize("tau,alpha", [(4.0, 0.9), (2.0, 1.0), (1.0, 0.5)])
def test_compose_equals_scaling_teacher_first(T, tau, alpha):
    s, t, y = _data(seed=3)
    a = kd_loss(s, t, y, tau, alpha, teacher_temperature=T)
    b = kd_loss(s, t / T, y, tau, alpha)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    # and it is a different loss from the uncalibrated one
    assert a.item() != pytest.approx(kd_loss(s, t, y, tau, alpha).item(), rel=1e-6)


def test_mode_temperatures():
    assert mode_temperatures("uncalibrated", 4.0, 2.5) == (4.0, 1.0)
    assert mode_temperatures("compose", 4.0, 2.5) == (4.0, 2.5)
    assert mode_temperatures("replace", 4.0, 2.5) == (2.5, 1.0)
    assert set(KD_MODES) == {"uncalibrated", "compose", "replace"}
    with pytest.raises(ValueError, match="uncalibrated"):
        mode_temperatures("calibrated", 4.0, 2.5)


def test_make_loss_modes_match_kd_loss():
    s, t, y = _data(seed=4)
    tau, alpha, T = 4.0, 0.9, 2.5
    assert make_loss("uncalibrated", tau, alpha, T)(s, y, t).item() == \
        pytest.approx(kd_loss(s, t, y, tau, alpha).item(), rel=1e-12)
    assert make_loss("compose", tau, alpha, T)(s, y, t).item() == \
        pytest.approx(kd_loss(s, t / T, y, tau, alpha).item(), rel=1e-12)
    assert make_loss("replace", tau, alpha, T)(s, y, t).item() == \
        pytest.approx(kd_loss(s, t, y, T, alpha).item(), rel=1e-12)


def test_make_loss_baseline_is_cross_entropy():
    s, t, y = _data(seed=5)
    loss = make_loss("baseline", 4.0, 0.9)
    assert loss(s, y).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-12)
    assert loss(s, y, t).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-12)


def test_make_loss_unknown_mode():
    with pytest.raises(ValueError, match="unknown distillation mode"):
        make_loss("hinton", 4.0, 0.9)


def test_gradients_flow_to_student_only():
    s, t, y = _data(seed=6)
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)  # e.g. teacher logits from a forward pass outside no_grad
    kd_loss(s, t, y, 4.0, 0.9).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    leaked = 0.0 if t.grad is None else float(t.grad.abs().max())
    assert leaked == 0.0, f"gradient reached the teacher logits (max |grad| {leaked:.3g}): " \
        "the teacher must be a fixed target"


def test_student_gradient_matches_finite_difference():
    s, t, y = _data(n=4, k=3, seed=7)
    s = s.clone().requires_grad_(True)
    kd_loss(s, t, y, 2.0, 0.6).backward()
    eps = 1e-6
    for i, c in [(0, 0), (2, 1), (3, 2)]:
        sp, sm = s.detach().clone(), s.detach().clone()
        sp[i, c] += eps
        sm[i, c] -= eps
        fd = (kd_loss(sp, t, y, 2.0, 0.6) - kd_loss(sm, t, y, 2.0, 0.6)).item() / (2 * eps)
        assert s.grad[i, c].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_accepts_numpy_inputs():
    s, t, y = _data(seed=8)
    a = kd_loss(s.numpy(), t.numpy(), y.numpy(), 4.0, 0.9, teacher_temperature=1.5)
    b = kd_loss(s, t, y, 4.0, 0.9, teacher_temperature=1.5)
    assert isinstance(a, torch.Tensor)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    # float32 student with float64 numpy teacher: the teacher follows the student's dtype
    c = kd_loss(s.float(), np.asarray(t.numpy()), y, 4.0, 0.9)
    assert c.dtype == torch.float32
    assert c.item() == pytest.approx(kd_loss(s, t, y, 4.0, 0.9).item(), rel=1e-5)
