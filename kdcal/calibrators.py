"""Every calibrator by name (``CALIBRATORS``, :func:`make_calibrator`, saved and loaded as JSON),
and the three that netcal fits: histogram binning, isotonic regression and beta calibration,
applied to softmax(logits) behind :class:`kdcal.calibration.Calibrator`'s interface. Their
fitted state (netcal and sklearn parameter trees) round-trips through JSON, never pickle.
"""
from __future__ import annotations

import numpy as np
import torch

from .calibration import (CalibrationError, Calibrator, MatrixScaling, TemperatureCalibrator,
                          VectorScaling)
from .metrics import softmax
from .store import read_json, write_json


# ---------------------------------------------------------------- netcal wrappers
def _encode(obj):
    """netcal/sklearn parameter trees to JSON: arrays become {"__ndarray__", dtype, shape}."""
    from sklearn.isotonic import IsotonicRegression as SkIsotonic

    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, SkIsotonic):  # sklearn's own pickle state, without the interp1d it rebuilds
        return {"__sklearn_isotonic__": _encode(obj.__getstate__())}
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _decode(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"]).reshape(obj["shape"])
        if "__sklearn_isotonic__" in obj:
            from sklearn.isotonic import IsotonicRegression as SkIsotonic

            iso = SkIsotonic.__new__(SkIsotonic)
            iso.__setstate__(_decode(obj["__sklearn_isotonic__"]))
            return iso
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _quiet_netcal(who: str, fn, *args, **kw):
    """Call netcal with its prints turned into warnings and its errors into CalibrationError."""
    import contextlib
    import io
    import warnings

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), np.errstate(divide="ignore", invalid="ignore"):
            out = fn(*args, **kw)
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"{who}: netcal failed ({type(exc).__name__}: {exc})") from None
    finally:
        for line in dict.fromkeys(buf.getvalue().splitlines()):  # unique, in order
            if line.strip():
                warnings.warn(f"{who}: netcal: {line.strip()}", stacklevel=3)
    return out


class _NetcalCalibrator(Calibrator):
    """A netcal method applied to softmax(logits); its output rows are renormalised.

    netcal takes probabilities. With k > 2 classes, HistogramBinning and IsotonicRegression fit
    one binary map per class (one-vs-rest on p[:, c] against labels == c; a class absent from the
    validation labels gets no map and probability 0) and divide each row by its sum; with k = 2
    they calibrate p[:, 1] alone and return a 1-d array, turned back into [1 - q, q] here. Rows
    whose one-vs-rest values are all 0 (netcal would return 0/0 = NaN) become uniform.
    """

    def _make(self):
        raise NotImplementedError

    def _fit(self, z, y):
        self._model = self._make()
        _quiet_netcal(self.name, self._model.fit, softmax(z.numpy()), y.numpy())

    def _predict(self, z):
        q = np.asarray(_quiet_netcal(self.name, self._model.transform, softmax(z)),
                       dtype=np.float64)
        if q.ndim == 1:  # binary: netcal calibrated the probability of class 1
            q = np.stack([1.0 - q, q], axis=1)
        return q

    def _fitted(self):
        """netcal's fitted parameters, ``get_params(deep=True)``, as JSON (arrays tagged)."""
        return {"netcal": _encode(self._model.get_params(deep=True))}

    def _restore(self, fitted):
        """Rebuild the netcal model with ``set_params`` (which recreates the one-vs-rest models)."""
        self._model = self._make().set_params(**_decode(fitted["netcal"]))


class HistogramCalibrator(_NetcalCalibrator):
    """netcal ``HistogramBinning`` (Zadrozny & Elkan 2001), one-vs-rest for k > 2.

    State: netcal's fitted parameters (``get_params(deep=True)``: bin bounds and bin maps of every
    one-vs-rest model) as JSON arrays; ``from_state`` rebuilds the model with ``set_params``,
    no refit. Note: netcal fits bins closed on the left but ``transform`` looks values up in bins
    closed on the right (``np.digitize(right=True)``); a probability exactly on an edge therefore
    gets the bin below at prediction time.
    """

    name = "histogram"

    def __init__(self, bins: int = 10):
        super().__init__()
        self.bins = int(bins)
        self._model = None

    def params(self):
        return {"bins": self.bins}

    def _make(self):
        from netcal.binning import HistogramBinning

        return HistogramBinning(bins=self.bins)


class IsotonicCalibrator(_NetcalCalibrator):
    """netcal ``IsotonicRegression`` (Zadrozny & Elkan 2002), one-vs-rest for k > 2.

    State: netcal's ``get_params(deep=True)``, where each one-vs-rest model holds a fitted sklearn
    ``IsotonicRegression``; that is stored as sklearn's own pickle state (``__getstate__``: the
    thresholds ``X_thresholds_``, ``y_thresholds_``, ``X_min_``, ``X_max_``, ...) as JSON arrays,
    and restored with ``__setstate__``, which rebuilds the interpolation. No refit, no pickle.
    """

    name = "isotonic"

    def __init__(self):
        super().__init__()
        self._model = None

    def _make(self):
        from netcal.binning import IsotonicRegression

        return IsotonicRegression()


class BetaCalibrator(_NetcalCalibrator):
    """netcal ``BetaCalibration`` (Kull et al. 2017), maximum-likelihood fit (``method='mle'``).

    Not one-vs-rest: for k > 2 netcal fits one multinomial model,
    ``softmax_c(a_c log p_c - b_c log(1 - p_c) + c_c)`` (a, b >= 0, refitted with a negative one
    pinned at 0), by scipy L-BFGS-B with numerical gradients; for k = 2 the binary beta map on
    p[:, 1]. netcal reports no convergence flag, so only finiteness of the result is checked.
    State: the fitted ``weights`` (a, b interleaved, 2k) and ``bias`` (k) arrays; ``from_state``
    rebuilds netcal's model sites with ``prior()`` and sets these values, no refit.
    """

    name = "beta"

    def __init__(self):
        super().__init__()
        self._model = None

    def _make(self):
        from netcal.scaling import BetaCalibration

        return BetaCalibration(method="mle")

    def _fit(self, z, y):
        self._model = self._make()
        _quiet_netcal(self.name, self._model.fit, softmax(z.numpy()), y.numpy(), tensorboard=False)
        sites = self._model._sites
        if not all(np.isfinite(sites[s]["values"]).all() for s in ("weights", "bias")):
            raise CalibrationError(f"{self.name}: fit gave non-finite parameters")

    def _fitted(self):
        sites = self._model._sites
        return {"weights": _encode(np.asarray(sites["weights"]["values"], dtype=np.float64)),
                "bias": _encode(np.asarray(sites["bias"]["values"], dtype=np.float64))}

    def _restore(self, fitted):
        model = self._make()
        # the state netcal's fit leaves (AbstractCalibration.fit + AbstractLogisticRegression.fit)
        model.num_classes = max(2, self.num_classes)
        model.independent_probabilities = False
        model.num_features = 1
        model.prior(dtype=torch.float64)
        for site in model._sites.values():
            site["prior"] = site["prior"].to_event(1)  # netcal: .independent(1), an alias
        for key in ("weights", "bias"):
            values = _decode(fitted[key])
            expected = model._sites[key]["init"]["mean"].shape[0]
            if values.shape != (expected,):
                raise CalibrationError(f"{self.name}: state {key} has shape {values.shape}, "
                                       f"expected ({expected},)")
            model._sites[key]["values"] = values
        self._model = model


CALIBRATORS: dict[str, type[Calibrator]] = {
    c.name: c for c in (TemperatureCalibrator, VectorScaling, MatrixScaling, HistogramCalibrator,
                        IsotonicCalibrator, BetaCalibrator)
}


def make_calibrator(name: str, **kw) -> Calibrator:
    """A new, unfitted calibrator by name (hyperparameters as keywords)."""
    if name not in CALIBRATORS:
        raise ValueError(f"unknown calibrator {name!r}; valid names: {', '.join(CALIBRATORS)}")
    return CALIBRATORS[name](**kw)


def save_calibrator(cal: Calibrator, path) -> None:
    """Write ``cal.state()`` (which records the calibrator's name) as JSON, atomically."""
    write_json(cal.state(), path)


def load_calibrator(path) -> Calibrator:
    """The calibrator saved by :func:`save_calibrator` at ``path``."""
    state = read_json(path)
    name = state.get("name") if isinstance(state, dict) else None
    if name not in CALIBRATORS:
        raise CalibrationError(f"{path}: not a saved calibrator (name {name!r}; valid names: "
                               f"{', '.join(CALIBRATORS)})")
    return CALIBRATORS[name].from_state(state)
