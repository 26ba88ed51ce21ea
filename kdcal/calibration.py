"""Post-hoc calibrators fitted on validation logits: the common interface and the scaling methods
(netcal's methods and the registry by name: :mod:`kdcal.calibrators`).

Temperature scaling (Guo et al. 2017): T is optimised as log T so it stays positive, by L-BFGS on
the NLL in float64, and the fit is checked: a non-finite input, probabilities passed as logits, or
a gradient that did not vanish raise :class:`CalibrationError` instead of returning a silent T.

:class:`Calibrator` is the common interface of every method (temperature, vector and matrix
scaling, and netcal's histogram binning, isotonic regression and beta calibration): ``fit`` on
validation logits and labels, ``predict_proba`` gives the calibrated [n, k] distribution,
``target_logits`` its log (usable as a teacher's logits in distillation), and ``state`` /
``from_state`` a JSON round trip that reproduces ``predict_proba`` bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import log_softmax, softmax

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
    _reject_non_logits(z, who)
    if int(y.min()) < 0 or int(y.max()) >= z.shape[1]:
        raise CalibrationError(f"{who}: labels outside 0..{z.shape[1] - 1}")
    return z, y


def _reject_non_logits(z: torch.Tensor, who: str) -> None:
    """NaN or inf, or rows that are probabilities (in [0, 1], summing to 1), are not logits."""
    if not torch.isfinite(z).all():
        raise CalibrationError(f"{who}: logits contain NaN or inf")
    rows = z.sum(dim=1)
    if len(z) and (z >= 0).all() and (z <= 1).all() and \
            torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        raise CalibrationError(f"{who}: got probabilities where logits are expected "
                               "(pass the model's raw outputs, or log-probabilities)")


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The temperature T > 0 that minimises NLL(softmax(logits / T), labels)."""
    z, y = _as_logits(logits, labels, "temperature scaling")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    # one L-BFGS run (no restarts), the convergence check shared with vector and matrix scaling
    _lbfgs([log_t], lambda: F.cross_entropy(z / log_t.exp(), y), "temperature scaling",
           max_iter, restarts=1)
    t = float(log_t.detach().exp())
    if not np.isfinite(t) or not T_MIN <= t <= T_MAX:
        raise CalibrationError(f"temperature scaling: T={t:.4g} outside [{T_MIN}, {T_MAX}] "
                               "(logits all correct and separable, or constant?)")
    return t


def apply_temperature(logits, temperature: float):
    """Logits divided by T (same type as given)."""
    return logits / temperature



# ---------------------------------------------------------------- the calibrator interface
PROB_FLOOR = 1e-12  # target_logits = log(max(p, PROB_FLOOR))


def _to_numpy_logits(logits, who: str, num_classes: int | None) -> np.ndarray:
    """Logits to predict on, as float64 [n, k]; same checks as at fit time (n = 0 allowed)."""
    z = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    z = z.detach().cpu().to(torch.float64)
    if num_classes is None:
        raise CalibrationError(f"{who}: not fitted (call fit on validation logits first)")
    if z.ndim != 2 or z.shape[1] != num_classes:
        raise CalibrationError(f"{who}: expected logits [n, {num_classes}], got {tuple(z.shape)}")
    _reject_non_logits(z, who)
    return z.numpy()


def _renormalise(p: np.ndarray) -> np.ndarray:
    """Rows made a distribution: NaN and negatives to 0, each row divided by its sum; a row that
    is all zero (every one-vs-rest map said 0) becomes uniform."""
    p = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    p = np.clip(p, 0.0, None)
    rows = p.sum(axis=1, keepdims=True)
    empty = ~(rows[:, 0] > 0)
    if empty.any():
        p[empty] = 1.0 / p.shape[1]
        rows[empty] = 1.0
    return p / rows


def _lbfgs(params: list, objective, who: str, max_iter: int, restarts: int = 3) -> float:
    """Minimise ``objective()`` over ``params`` by L-BFGS (strong Wolfe) in float64; checked.

    Converged means max |gradient| <= 1e-5 * max(1, loss), for every calibrator fitted by
    optimisation (temperature, vector, matrix). L-BFGS may stop early on a flat stretch, so it is restarted up to
    ``restarts`` times (each with ``max_iter`` iterations) before giving up.
    """
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    grad = float("inf")
    for _ in range(restarts):
        opt.step(closure)
        loss = float(closure().detach())
        grad = max(float(p.grad.abs().max()) for p in params)
        if not np.isfinite(loss) or not all(bool(torch.isfinite(p).all()) for p in params):
            raise CalibrationError(f"{who}: optimisation diverged (loss {loss})")
        if grad <= 1e-5 * max(1.0, loss):
            return loss
    raise CalibrationError(f"{who}: did not converge (max |dloss/dparam|={grad:.2e} after "
                           f"{restarts} x {max_iter} L-BFGS iterations)")


class Calibrator:
    """A post-hoc calibrator: fitted on validation logits only, then applied to any logits.

    Subclasses set ``name``, take their hyperparameters as keyword arguments (recorded in
    ``state()["params"]``) and implement ``_fit(z, y)`` (float64 tensor [n, k], long tensor [n]),
    ``_predict(z)`` (numpy [n, k] -> probabilities, renormalised here) and
    ``_fitted()`` / ``_restore(fitted)`` (JSON-able fitted parameters).
    """

    name = "calibrator"

    def __init__(self):
        self.num_classes: int | None = None

    # -- public API
    def fit(self, logits, labels) -> "Calibrator":
        z, y = _as_logits(logits, labels, self.name)
        self.num_classes = None  # a failed refit leaves the calibrator unfitted, not half-fitted
        self._fit(z, y)
        self.num_classes = int(z.shape[1])
        return self

    def predict_proba(self, logits) -> np.ndarray:
        """The calibrated distribution [n, k], float64, rows summing to 1."""
        z = _to_numpy_logits(logits, self.name, self.num_classes)
        if len(z) == 0:
            return np.zeros((0, self.num_classes))
        return _renormalise(self._predict(z))

    def target_logits(self, logits) -> np.ndarray:
        """Logits whose softmax is the calibrated distribution, so that ``softmax(target_logits /
        tau)`` is that distribution softened at tau: a calibrated teacher's targets in KD.

        Scaling calibrators return their transformed logits exactly; binning calibrators have
        only probabilities, so theirs are ``log(max(p, 1e-12))`` (the floor shows at large tau).
        """
        z = _to_numpy_logits(logits, self.name, self.num_classes)
        if self._transform is not None and len(z):
            return log_softmax(self._transform(z))
        return np.log(np.clip(self.predict_proba(logits), PROB_FLOOR, None))

    _transform = None  # scaling calibrators: z -> calibrated logits

    def params(self) -> dict:
        return {}

    def state(self) -> dict:
        if self.num_classes is None:
            raise CalibrationError(f"{self.name}: not fitted, nothing to save")
        return {"name": self.name, "num_classes": int(self.num_classes), "params": self.params(),
                "fitted": self._fitted()}

    @classmethod
    def from_state(cls, state: dict) -> "Calibrator":
        if not isinstance(state, dict) or state.get("name") != cls.name:
            got = state.get("name") if isinstance(state, dict) else type(state).__name__
            raise CalibrationError(f"{cls.name}: state is for calibrator {got!r}")
        try:
            cal = cls(**state.get("params", {}))
            cal.num_classes = int(state["num_classes"])
            cal._restore(state["fitted"])
        except CalibrationError:
            raise
        except Exception as exc:
            raise CalibrationError(f"{cls.name}: unreadable state ({type(exc).__name__}: {exc})") \
                from None
        return cal

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args}){'' if self.num_classes else ' [not fitted]'}"

    # -- to implement
    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    def _predict(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fitted(self) -> dict:
        raise NotImplementedError

    def _restore(self, fitted: dict) -> None:
        raise NotImplementedError


class TemperatureCalibrator(Calibrator):
    """softmax(z / T) with T from :func:`fit_temperature` (T, not netcal's weight 1/T)."""

    name = "temperature"

    def __init__(self, max_iter: int = 200):
        super().__init__()
        self.max_iter = int(max_iter)
        self.temperature: float | None = None

    def params(self) -> dict:
        return {"max_iter": self.max_iter}

    def _fit(self, z, y):
        self.temperature = fit_temperature(z, y, max_iter=self.max_iter)

    def _transform(self, z):
        return apply_temperature(z, self.temperature)

    def _predict(self, z):
        return softmax(self._transform(z))

    def _fitted(self):
        return {"temperature": float(self.temperature)}

    def _restore(self, fitted):
        self.temperature = float(fitted["temperature"])


class VectorScaling(Calibrator):
    """Vector scaling (Guo et al. 2017): softmax(z * w + b), per-class w and b.

    Fitted by L-BFGS on the mean NLL in float64 plus ``reg * (||w - 1||^2 + ||b||^2)``; the small
    L2 also fixes b's free shift (NLL is unchanged by b + c), so the fitted b has mean ~0.
    """

    name = "vector"

    def __init__(self, reg: float = 1e-4, max_iter: int = 500):
        super().__init__()
        self.reg, self.max_iter = float(reg), int(max_iter)
        self.w: np.ndarray | None = None
        self.b: np.ndarray | None = None

    def params(self) -> dict:
        return {"reg": self.reg, "max_iter": self.max_iter}

    def _fit(self, z, y):
        k = z.shape[1]
        w = torch.ones(k, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)

        def objective():
            penalty = ((w - 1) ** 2).sum() + (b ** 2).sum()
            return F.cross_entropy(z * w + b, y) + self.reg * penalty

        _lbfgs([w, b], objective, self.name, self.max_iter)
        self.w, self.b = w.detach().numpy().copy(), b.detach().numpy().copy()

    def _transform(self, z):
        return z * self.w + self.b

    def _predict(self, z):
        return softmax(self._transform(z))

    def _fitted(self):
        return {"w": self.w.tolist(), "b": self.b.tolist()}

    def _restore(self, fitted):
        self.w = np.asarray(fitted["w"], dtype=np.float64)
        self.b = np.asarray(fitted["b"], dtype=np.float64)
        if self.w.shape != (self.num_classes,) or self.b.shape != (self.num_classes,):
            raise CalibrationError(f"{self.name}: state has w {self.w.shape}, b {self.b.shape} for "
                                   f"{self.num_classes} classes")


class MatrixScaling(Calibrator):
    """Matrix scaling: softmax(z W^T + b), W [k, k], b [k], regularised ODIR-style.

    ODIR (Kull et al. 2019, "off-diagonal and intercept regularisation"): the loss is the mean NLL
    plus ``reg_offdiag / (k (k - 1)) * sum_{i != j} W_ij^2 + reg_bias / k * sum_j b_j^2``; the
    diagonal is not penalised, so W = diag(w) (vector scaling) is free. L-BFGS in float64 from
    W = I, b = 0, convergence checked as for temperature scaling.
    """

    name = "matrix"

    def __init__(self, reg_offdiag: float = 1e-2, reg_bias: float = 1e-2, max_iter: int = 1000):
        super().__init__()
        self.reg_offdiag, self.reg_bias = float(reg_offdiag), float(reg_bias)
        self.max_iter = int(max_iter)
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None

    def params(self) -> dict:
        return {"reg_offdiag": self.reg_offdiag, "reg_bias": self.reg_bias,
                "max_iter": self.max_iter}

    def _fit(self, z, y):
        k = z.shape[1]
        W = torch.eye(k, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        off = 1.0 - torch.eye(k, dtype=torch.float64)
        off_scale = self.reg_offdiag / max(k * (k - 1), 1)

        def objective():
            return (F.cross_entropy(z @ W.T + b, y) + off_scale * ((W * off) ** 2).sum()
                    + self.reg_bias / k * (b ** 2).sum())

        _lbfgs([W, b], objective, self.name, self.max_iter)
        self.W, self.b = W.detach().numpy().copy(), b.detach().numpy().copy()

    def _transform(self, z):
        return z @ self.W.T + self.b

    def _predict(self, z):
        return softmax(self._transform(z))

    def _fitted(self):
        return {"W": self.W.tolist(), "b": self.b.tolist()}

    def _restore(self, fitted):
        k = self.num_classes
        self.W = np.asarray(fitted["W"], dtype=np.float64)
        self.b = np.asarray(fitted["b"], dtype=np.float64)
        if self.W.shape != (k, k) or self.b.shape != (k,):
            raise CalibrationError(f"{self.name}: state has W {self.W.shape}, b {self.b.shape} for "
                                   f"{k} classes")
