"""Quantities the notebooks' "Try this" exercises ask for, so that a test can check each answer,
and the exercises that ask for code: their reference answers and the checks a learner runs.

Only what a notebook exercise needs and the library does not already compute lives here; the
reference answers are written out by hand on purpose (the library's versions are what they are
checked against).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import optimize, stats

from . import analysis, calibration, distill, inference, metrics


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


# ---------------------------------------------------------------- exercises that ask for code
# One per notebook: a reference answer (what the notebook's skeleton asks for, written out) and a
# check that runs a learner's function on cases chosen to catch the usual slips and compares it with
# the library (not with the reference answer): notebook 1 accuracy, 2 ECE, 3 the KD loss of a mode,
# 4 the pooled paired difference and its t-interval, 5 the temperature fit.

class ExerciseCheckFailed(AssertionError):
    """A learner's function disagrees with the library on one named case; the message says which."""


def _compare(check: str, case: str, got, want: float, rtol: float, atol: float, hint: str = "") -> None:
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise ExerciseCheckFailed(f"{check}, case {case!r}: returned {got!r}, not a number") from None
    if not np.isfinite(value) or abs(value - want) > atol + rtol * abs(want):
        raise ExerciseCheckFailed(f"{check}, case {case!r}: your function gives {value:.6g}, the "
                                  f"library {want:.6g}" + (f" ({hint})" if hint else ""))


def _passed(check: str, cases: int) -> str:
    message = f"{check}: all {cases} cases agree with the library"
    print(message)
    return message


def accuracy(logits, labels) -> float:
    """Notebook 1: the fraction of rows whose largest logit is at the label."""
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def check_accuracy(fn) -> str:
    """``fn(logits, labels)`` (numpy arrays [n, classes] and [n]) against kdcal.metrics.accuracy."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 10))
    cases = {"500 images, 10 classes": (z, rng.integers(0, 10, 500)),
             "every prediction right": (z, z.argmax(axis=1)),
             "three images, two right": (np.eye(3)[[0, 1, 2]], np.array([0, 1, 0])),
             "two classes": (z[:, :2], rng.integers(0, 2, 500))}
    for case, (logits, labels) in cases.items():
        _compare("check_accuracy", case, fn(logits, labels), metrics.accuracy(logits, labels), 0, 1e-12,
                 "a fraction between 0 and 1, from the argmax over classes (axis 1)")
    return _passed("check_accuracy", len(cases))


def ece(probs, labels, n_bins: int = 15) -> float:
    """Notebook 2: expected calibration error of the top-1 confidence, ``n_bins`` equal-width bins
    ``[b/B, (b+1)/B)``, a confidence of exactly 1 in the last bin (kdcal.metrics' convention)."""
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    gap = 0.0
    for b in np.unique(bins):
        inside = bins == b
        gap += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap)


def check_ece(fn) -> str:
    """``fn(probs, labels, n_bins)`` against kdcal.metrics.ece (netcal)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2000, 10)) * 2.5
    sharp = z.copy()
    sharp[:300, 0] = 60.0  # confidence exactly 1.0 in float64, half of these 300 predictions wrong
    sharp_labels = np.where(np.arange(2000) < 150, 1, sharp.argmax(axis=1))
    # under-confident below 0.55 (always right there), over-confident above: bins of both signs, and
    # one of each binning mixes them (0.55 is no edge of 10 or 15 bins)
    mixed = np.where(metrics.softmax(z).max(axis=1) < 0.55, z.argmax(axis=1),
                     _draw(metrics.softmax(z / 2), rng))
    cases = {"2,000 images, 15 bins": (metrics.softmax(z), rng.integers(0, 10, 2000), 15),
             "labels drawn from the model": (metrics.softmax(z), _draw(metrics.softmax(z), rng), 15),
             "confidences of exactly 1, some wrong": (metrics.softmax(sharp), sharp_labels, 15),
             "10 bins": (metrics.softmax(z), mixed, 10)}
    for case, (probs, labels, bins) in cases.items():
        _compare("check_ece", case, fn(probs, labels, bins), metrics.ece(probs, labels, bins), 0, 1e-9,
                 "bins [b/B, (b+1)/B), a confidence of exactly 1 in the last bin; each bin weighted "
                 "by its share of the images")
    return _passed("check_ece", len(cases))


def _draw(probs: np.ndarray, rng) -> np.ndarray:
    """One label per row, drawn from that row's distribution."""
    return (probs.cumsum(axis=1) > rng.random((len(probs), 1))).argmax(axis=1)


def kd_loss(mode: str, student_logits, teacher_logits, labels, tau: float, alpha: float,
            temperature: float):
    """Notebook 3: the loss of a distillation mode with a teacher of fitted temperature T."""
    student_tau, teacher_tau = {"uncalibrated": (tau, tau), "compose": (tau, temperature * tau),
                                "replace": (temperature, temperature)}[mode]
    p = F.softmax(teacher_logits / teacher_tau, dim=1)
    log_p = F.log_softmax(teacher_logits / teacher_tau, dim=1)
    log_q = F.log_softmax(student_logits / student_tau, dim=1)
    kl = (p * (log_p - log_q)).sum(dim=1).mean()
    return alpha * student_tau ** 2 * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)


def check_kd_loss(fn) -> str:
    """``fn(mode, student_logits, teacher_logits, labels, tau, alpha, T)`` (float64 tensors)
    against kdcal.distill.make_loss for uncalibrated, compose and replace."""
    g = torch.Generator().manual_seed(2)
    z_s = torch.randn(256, 10, generator=g, dtype=torch.float64) * 2
    z_t = torch.randn(256, 10, generator=g, dtype=torch.float64) * 5
    y = torch.randint(0, 10, (256,), generator=g)
    settings = [(4.0, 0.9, 1.7), (1.0, 0.5, 0.6), (2.0, 1.0, 1.3)]
    count = 0
    for mode in distill.KD_MODES:
        for tau, alpha, t in settings:
            want = float(distill.make_loss(mode, tau, alpha, fitted_t=t)(z_s, y, z_t))
            _compare("check_kd_loss", f"{mode}, tau {tau:g}, alpha {alpha:g}, T {t:g}",
                     fn(mode, z_s, z_t, y, tau, alpha, t), want, 1e-6, 0,
                     "the table of modes at the top of notebook 3: which logits are divided by what, "
                     "and the KD weight alpha times the square of the student's temperature")
            count += 1
    return _passed("check_kd_loss", count)


def pooled_difference(students, mode: str, versus: str = "baseline") -> tuple[float, float, float]:
    """Notebook 4: acc(mode) - acc(versus) for the same teacher and seed (the seed's one baseline
    when ``versus`` is the baseline), averaged over teachers per seed, then the mean and 95%
    t-interval over seeds: (mean, low, high), the seed the unit."""
    a = students[students["mode"] == mode].set_index(["teacher", "seed"])["acc"]
    if versus == "baseline":
        base = students[students["mode"] == "baseline"].set_index("seed")["acc"]
        b = a.index.get_level_values("seed").map(base).to_numpy()
    else:
        b = students[students["mode"] == versus].set_index(["teacher", "seed"])["acc"].reindex(a.index)
    per_seed = (a - b).groupby(level="seed").mean()
    n = len(per_seed)
    half = stats.t.ppf(0.975, n - 1) * per_seed.std(ddof=1) / np.sqrt(n)
    return float(per_seed.mean()), float(per_seed.mean() - half), float(per_seed.mean() + half)


def check_pooled_difference(fn, students=None) -> str:
    """``fn(students, mode, versus)`` -> (mean, low, high) against kdcal.inference.t_interval over
    kdcal.analysis's per-seed means, on a made-up table (4 seeds, 3 teachers, rows shuffled) and on
    ``students`` if given (a results table's student rows)."""
    tables = {"made-up, 4 seeds x 3 teachers": _made_up_students()}
    if students is not None:
        tables["your students table"] = students
    count = 0
    for name, table in tables.items():
        for mode, versus in (("uncalibrated", "baseline"), ("compose", "uncalibrated")):
            got = fn(table, mode, versus)
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                raise ExerciseCheckFailed(f"check_pooled_difference, case {name!r}: return (mean, low, "
                                          f"high), got {got!r}")
            want = inference.t_interval(analysis.per_seed_means(analysis.paired_by_seed(table, mode, versus)))
            for label, value, target in zip(("mean", "low", "high"), got, (want[0], want[2], want[3])):
                _compare("check_pooled_difference", f"{name}: {mode} - {versus}, {label}", value, target,
                         1e-9, 1e-12, "pair by teacher and seed, average over teachers per seed, then a "
                         "t-interval over the seeds (n = seeds, not teacher x seed pairs)")
            count += 1
    return _passed("check_pooled_difference", count)


def _made_up_students():
    import pandas as pd

    rng = np.random.default_rng(4)
    rows = [{"mode": "baseline", "teacher": np.nan, "seed": s, "acc": 0.80 + 0.01 * rng.normal()}
            for s in range(4)]
    for seed in range(4):
        for k, teacher in enumerate(("resnet14", "resnet20", "resnet32")):
            for mode, shift in (("uncalibrated", 0.01), ("compose", 0.004 * k)):
                rows.append({"mode": mode, "teacher": teacher, "seed": seed,
                             "acc": 0.80 + shift + 0.01 * seed + 0.01 * rng.normal()})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def nll_at_temperature(logits, labels, temperature: float) -> float:
    """Notebook 5: temperature scaling's objective, the mean NLL of softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return metrics.nll(z, np.asarray(labels, dtype=np.int64))


def fit_temperature(logits, labels) -> float:
    """Notebook 5: the T that minimises :func:`nll_at_temperature`, searched over log T in
    [log 0.01, log 100] (the NLL has one minimum: it is convex in 1/T)."""
    found = optimize.minimize_scalar(lambda s: nll_at_temperature(logits, labels, np.exp(s)),
                                     bounds=(np.log(1e-2), np.log(1e2)), method="bounded",
                                     options={"xatol": 1e-10})
    return float(np.exp(found.x))


def check_fit_temperature(fn) -> str:
    """``fn(logits, labels)`` -> T against kdcal.calibration.fit_temperature, within 0.1%."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3000, 10)) * 3
    cases = {f"labels drawn at T = {t:g} ({kind})": (z, _draw(metrics.softmax(z / t), rng))
             for t, kind in ((2.0, "over-confident logits"), (0.6, "under-confident logits"),
                             (1.0, "calibrated logits"))}
    for case, (logits, labels) in cases.items():
        _compare("check_fit_temperature", case, fn(logits, labels),
                 calibration.fit_temperature(logits, labels), 1e-3, 0,
                 "minimise the mean NLL of softmax(logits / T) over T > 0; a grid must be finer than 0.1%")
    return _passed("check_fit_temperature", len(cases))
