"""Hinton knowledge distillation with an optionally calibrated teacher.

Temperature-scaling the teacher by T and then distilling at tau is the same as dividing the
teacher's logits by T*tau while the student's stay at tau (the ``compose`` mode). The
``replace`` mode (this study's reading of the paper's "simple model calibration"; the paper names
no recipe) uses the fitted T as the distillation temperature for both: it is exactly
uncalibrated KD at tau = T. So temperature scaling inside KD is a choice of temperature, and the
fair control is uncalibrated KD at a validation-tuned tau.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KD_MODES = ("uncalibrated", "compose", "replace")
# modes that may run as an arm at a tau of their own, named ``<mode>@<tau>`` (``compose@1``:
# compose at tau 1 beside compose at the config's tau); replace has no tau of its own (it is T)
TAU_ARM_MODES = ("uncalibrated", "compose")


def split_mode(mode: str) -> tuple[str, float | None]:
    """(mode, its own tau): ``compose@1`` -> ("compose", 1.0); ``compose`` -> ("compose", None),
    at the config's tau. A mode without ``@`` is returned as it is, so the run ids of every mode
    named before arms existed stay what they were."""
    base, sep, tau = mode.partition("@")
    return (base, float(tau)) if sep else (mode, None)


def arm_name(mode: str, tau: float) -> str:
    """The one spelling of an arm: ``arm_name("compose", 1.0)`` is ``compose@1``."""
    return f"{mode}@{tau:g}"


def kd_loss(student_logits, teacher_logits, labels, tau: float, alpha: float,
            teacher_temperature: float = 1.0) -> torch.Tensor:
    """alpha * tau^2 * KL(teacher || student) + (1 - alpha) * CE(student, labels)."""
    s = torch.as_tensor(student_logits)
    t = torch.as_tensor(teacher_logits, dtype=s.dtype, device=s.device).detach()
    y = torch.as_tensor(labels, device=s.device)
    log_ps = F.log_softmax(s / tau, dim=1)
    log_pt = F.log_softmax(t / (teacher_temperature * tau), dim=1)
    kl = F.kl_div(log_ps, log_pt, log_target=True, reduction="batchmean")
    loss = alpha * tau**2 * kl
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(s, y)
    return loss


def mode_temperatures(mode: str, tau: float, fitted_t: float) -> tuple[float, float]:
    """(distillation tau, teacher temperature) that a mode uses with a teacher fitted at T; an arm
    ``<mode>@<tau>`` uses its own tau in place of ``tau``."""
    mode, own = split_mode(mode)
    if own is not None:
        if mode not in TAU_ARM_MODES:
            raise ValueError(f"mode {mode!r} has no arm at a tau of its own; valid: "
                             f"{', '.join(TAU_ARM_MODES)}")
        tau = own
    if mode == "uncalibrated":
        return tau, 1.0
    if mode == "compose":
        return tau, fitted_t
    if mode == "replace":
        return fitted_t, 1.0
    raise ValueError(f"unknown distillation mode {mode!r}; valid: {', '.join(KD_MODES)}")


def make_kd_loss(kd_tau: float, alpha: float, teacher_temperature: float = 1.0):
    """KD at an explicit (tau, teacher temperature): the controls and the temperature sweep."""
    return lambda s, y, t: kd_loss(s, t, y, kd_tau, alpha, teacher_temperature)


def make_loss(mode: str, tau: float, alpha: float, fitted_t: float = 1.0):
    """A ``loss(student_logits, labels, teacher_logits)`` for a mode, or plain CE for ``baseline``."""
    if mode == "baseline":
        return lambda s, y, t=None: F.cross_entropy(s, y)
    kd_tau, teacher_t = mode_temperatures(mode, tau, fitted_t)
    return lambda s, y, t: kd_loss(s, t, y, kd_tau, alpha, teacher_t)
