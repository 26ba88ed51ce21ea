"""The Calibrator interface: each method fits, calibrates, round-trips and rejects bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdcal import metrics
from kdcal.calibration import PROB_FLOOR, CalibrationError, Calibrator, _renormalise, fit_temperature
from kdcal.calibrators import CALIBRATORS, load_calibrator, make_calibrator, save_calibrator

NAMES = ["temperature", "vector", "matrix", "histogram", "isotonic", "beta"]
SCALING = {"temperature", "vector", "matrix"}  # judged on NLL; the binning ones on ECE
K, N_VAL, N_TEST = 10, 5000, 5000


def overconfident(n: int, k: int = K, seed: int = 0):
    """Labels drawn from softmax(a) (a calibrated model), logits z = 3 a: over-confident."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, k)) * 1.5
    q = metrics.softmax(a)
    y = np.minimum((q.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    return 3.0 * a, y


@pytest.fixture(autouse=True)
def _one_thread():
    """The fits are many tiny tensor ops: one torch thread is fastest (and not slowed by load)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data():
    zv, yv = overconfident(N_VAL, seed=1)
    zt, yt = overconfident(N_TEST, seed=2)
    return zv, yv, zt, yt


@pytest.fixture(scope="module")
def fitted(data):
    """Every calibrator fitted once on the validation split (one torch thread, see _one_thread;
    netcal's beta fit evaluates its loss ~1200 times)."""
    zv, yv, _, _ = data
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: make_calibrator(name).fit(zv, yv) for name in NAMES}
    finally:
        torch.set_num_threads(old)


def _json_only(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _json_only(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_json_only(v) for v in obj)
    return obj is None or type(obj) in (str, int, float, bool)


# ---------------------------------------------------------------- registry
def test_registry_and_factory():
    assert list(CALIBRATORS) == NAMES
    for name in NAMES:
        cal = make_calibrator(name)
        assert isinstance(cal, Calibrator) and cal.name == name and type(cal) is CALIBRATORS[name]
    assert make_calibrator("histogram", bins=7).bins == 7
    assert make_calibrator("vector", reg=1e-2).reg == 1e-2
    with pytest.raises(ValueError, match="platt") as info:
        make_calibrator("platt")
    for name in NAMES:
        assert name in str(info.value)


# ---------------------------------------------------------------- fit / predict
@pytest.mark.parametrize("name", NAMES)
def test_improves_calibration_on_held_out_data(name, fitted, data):
    _, _, zt, yt = data
    p = fitted[name].predict_proba(zt)
    assert isinstance(p, np.ndarray) and p.shape == (N_TEST, K) and p.dtype == np.float64
    assert np.isfinite(p).all() and (p >= 0).all()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-12)
    raw = metrics.summarize(zt, yt)
    cal = metrics.summarize_probs(p, yt)
    if name in SCALING:
        assert cal["nll"] < 0.8 * raw["nll"], (cal["nll"], raw["nll"])
    assert cal["ece"] < 0.25 * raw["ece"], (cal["ece"], raw["ece"])
    assert cal["classwise_ece"] < raw["classwise_ece"]


@pytest.mark.parametrize("name", NAMES)
def test_target_logits_are_log_probabilities(name, fitted, data):
    zt = data[2][:500]
    cal = fitted[name]
    p, t = cal.predict_proba(zt), cal.target_logits(zt)
    assert t.shape == p.shape and np.isfinite(t).all()
    if name in ("temperature", "vector", "matrix"):
        # scaling calibrators hand over their calibrated logits exactly: no probability floor
        assert np.allclose(np.exp(t), p, atol=1e-12, rtol=1e-9)
        soft = np.sqrt(p)
    else:
        assert np.array_equal(t, np.log(np.clip(p, PROB_FLOOR, None)))
        soft = np.sqrt(np.clip(p, PROB_FLOOR, None))
    assert np.allclose(metrics.softmax(t), p, atol=K * PROB_FLOOR, rtol=0)
    # softened at tau = 2: proportional to the square root of the calibrated distribution
    assert np.allclose(metrics.softmax(t / 2.0), soft / soft.sum(axis=1, keepdims=True), atol=1e-12)


def test_temperature_target_logits_are_scaled_logits_up_to_a_shift(fitted, data):
    zt = data[2][:200]
    cal = fitted["temperature"]
    t = cal.target_logits(zt)
    shift = t - zt / cal.temperature
    assert np.allclose(shift, shift[:, :1], atol=1e-9)  # log-softmax differs by a per-row constant


@pytest.mark.parametrize("name", NAMES)
def test_state_json_round_trip_is_exact(name, fitted, data):
    zt = data[2]
    cal = fitted[name]
    state = cal.state()
    assert state["name"] == name and state["num_classes"] == K
    assert _json_only(state)
    text = json.dumps(state, allow_nan=False)
    back = CALIBRATORS[name].from_state(json.loads(text))
    assert type(back) is type(cal) and back.params() == cal.params()
    assert np.array_equal(back.predict_proba(zt), cal.predict_proba(zt))
    assert json.loads(json.dumps(back.state(), allow_nan=False)) == json.loads(text)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, fitted, data, tmp_path):
    zt = data[2][:1000]
    path = tmp_path / "cal" / f"{name}.json"
    save_calibrator(fitted[name], path)
    assert json.loads(path.read_text())["name"] == name
    assert not list(path.parent.glob(".*tmp*"))
    back = load_calibrator(path)
    assert type(back) is CALIBRATORS[name]
    assert np.array_equal(back.predict_proba(zt), fitted[name].predict_proba(zt))


def test_load_rejects_foreign_or_mismatched_state(tmp_path, fitted):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"name": "platt"}))
    with pytest.raises(CalibrationError, match="not a saved calibrator"):
        load_calibrator(path)
    with pytest.raises(CalibrationError, match="^vector: state is for calibrator 'matrix'"):
        CALIBRATORS["vector"].from_state(fitted["matrix"].state())
    bad = fitted["vector"].state()
    bad["fitted"]["w"] = bad["fitted"]["w"][:-1]
    with pytest.raises(CalibrationError, match="^vector"):
        CALIBRATORS["vector"].from_state(bad)


# ---------------------------------------------------------------- method-specific
def test_temperature_calibrator_equals_fit_temperature(fitted, data):
    zv, yv, zt, _ = data
    cal = fitted["temperature"]
    t = fit_temperature(zv, yv)
    assert cal.temperature == t
    assert t == pytest.approx(3.0, rel=0.05)  # the logits are 3x the calibrated ones
    assert np.allclose(cal.predict_proba(zt), metrics.softmax(zt / t), atol=1e-15, rtol=0)


def test_vector_scaling_recovers_known_scaling():
    rng = np.random.default_rng(3)
    k, n = 5, 20000
    z = rng.normal(size=(n, k)) * 2.0
    w_true = np.linspace(0.5, 2.0, k)
    b_true = rng.normal(size=k) * 0.5
    q = metrics.softmax(z * w_true + b_true)
    y = np.minimum((q.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    cal = make_calibrator("vector").fit(z, y)
    assert np.allclose(cal.w, w_true, atol=0.08), cal.w
    # b is identified up to a shift; the L2 picks the shift with mean 0
    assert np.allclose(cal.b, b_true - b_true.mean(), atol=0.08), cal.b
    assert abs(cal.b.mean()) < 1e-3
    assert np.allclose(cal.predict_proba(z), metrics.softmax(z * cal.w + cal.b), atol=1e-15)


def test_matrix_scaling_is_affine_and_regularised(fitted, data):
    cal = fitted["matrix"]
    zt = data[2][:200]
    assert cal.W.shape == (K, K) and cal.b.shape == (K,)
    assert np.allclose(cal.predict_proba(zt), metrics.softmax(zt @ cal.W.T + cal.b), atol=1e-15)
    # labels come from a diagonal model (W = I / 3): off-diagonal weights stay small
    off = cal.W[~np.eye(K, dtype=bool)]
    assert np.abs(off).max() < 0.1 and np.allclose(np.diag(cal.W), 1 / 3, atol=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_two_classes(name):
    zv, yv = overconfident(600, k=2, seed=4)
    zt, _ = overconfident(300, k=2, seed=5)
    cal = make_calibrator(name).fit(zv, yv)
    p = cal.predict_proba(zt)
    assert p.shape == (300, 2) and np.allclose(p.sum(axis=1), 1.0, atol=1e-12) and (p >= 0).all()
    back = CALIBRATORS[name].from_state(json.loads(json.dumps(cal.state())))
    assert np.array_equal(back.predict_proba(zt), p)


@pytest.mark.parametrize("name", ["histogram", "isotonic"])
def test_class_missing_from_validation(name):
    zv, yv = overconfident(800, k=4, seed=6)
    keep = yv != 3
    with pytest.warns(UserWarning, match=f"^{name}: netcal"):
        cal = make_calibrator(name).fit(zv[keep], yv[keep])
    p = cal.predict_proba(overconfident(200, k=4, seed=7)[0])
    assert p.shape == (200, 4) and np.allclose(p.sum(axis=1), 1.0, atol=1e-12)
    # no one-vs-rest model for the class never seen: probability 0, except in rows where every
    # other map also says 0 (the raw model is sure of class 3), which become uniform
    uniform = np.all(p == 0.25, axis=1)
    assert (p[~uniform, 3] == 0).all()
    assert uniform.mean() < 0.05


def test_renormalise_rows():
    p = np.array([[0.2, 0.2, 0.0], [0.0, 0.0, 0.0], [np.nan, 0.5, 0.5], [-1e-17, 0.3, 0.1]])
    out = _renormalise(p)
    assert np.allclose(out, [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5], [0, 0.75, 0.25]])


def test_accepts_tensors_and_float32(data):
    zv, yv = data[0][:2000], data[1][:2000]
    a = make_calibrator("vector").fit(zv, yv)
    b = make_calibrator("vector").fit(torch.from_numpy(zv).float(), torch.from_numpy(yv))
    assert np.allclose(a.w, b.w, atol=1e-4) and np.allclose(a.b, b.b, atol=1e-4)
    pa, pb = a.predict_proba(zv[:50]), a.predict_proba(torch.from_numpy(zv[:50]))
    assert np.array_equal(pa, pb)
    assert a.predict_proba(np.zeros((0, K))).shape == (0, K)


# ---------------------------------------------------------------- bad input
def _bad_fit_inputs():
    z, y = overconfident(200, k=4, seed=8)
    nan, inf = z.copy(), z.copy()
    nan[5, 1], inf[7, 2] = np.nan, -np.inf
    out_of_range = y.copy()
    out_of_range[0] = 4
    return {
        "nan": (nan, y, "NaN or inf"),
        "inf": (inf, y, "NaN or inf"),
        "probabilities": (metrics.softmax(z), y, "probabilities"),
        "length mismatch": (z, y[:-1], "expected logits"),
        "1-d logits": (z[:, 0], y, "expected logits"),
        "2-d labels": (z, y[:, None], "expected logits"),
        "empty": (z[:0], y[:0], "expected logits"),
        "labels out of range": (z, out_of_range, "labels"),
    }


@pytest.mark.parametrize("case", list(_bad_fit_inputs()))
@pytest.mark.parametrize("name", NAMES)
def test_bad_fit_input_names_the_calibrator(name, case):
    z, y, why = _bad_fit_inputs()[case]
    with pytest.raises(CalibrationError, match=f"^{name}") as info:
        make_calibrator(name).fit(z, y)
    assert why in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_bad_predict_input_names_the_calibrator(name, fitted, data):
    cal, z = fitted[name], data[2][:20].copy()
    with pytest.raises(CalibrationError, match=f"^{name}.*expected logits \\[n, {K}\\]"):
        cal.predict_proba(z[:, :-1])
    with pytest.raises(CalibrationError, match=f"^{name}.*expected logits"):
        cal.target_logits(z[0])
    with pytest.raises(CalibrationError, match=f"^{name}.*probabilities"):
        cal.predict_proba(metrics.softmax(z))
    z[3, 3] = np.inf
    with pytest.raises(CalibrationError, match=f"^{name}.*NaN or inf"):
        cal.predict_proba(z)
    fresh = make_calibrator(name)
    with pytest.raises(CalibrationError, match=f"^{name}.*not fitted"):
        fresh.predict_proba(data[2][:5])
    with pytest.raises(CalibrationError, match=f"^{name}.*not fitted"):
        fresh.state()


@pytest.mark.parametrize("name", ["temperature", "vector", "matrix"])
def test_non_convergence_raises(name, data):
    zv, yv = data[0][:2000], data[1][:2000]
    with pytest.raises(CalibrationError, match=f"^{name}.*did not converge"):
        make_calibrator(name, max_iter=1).fit(zv, yv)
    # a refit that fails leaves the calibrator unfitted, not holding the previous parameters
    cal = make_calibrator(name).fit(zv[:500], yv[:500])
    cal.max_iter = 1
    with pytest.raises(CalibrationError, match="did not converge"):
        cal.fit(zv, yv)
    with pytest.raises(CalibrationError, match="not fitted"):
        cal.predict_proba(zv[:5])


def test_calibration_error_is_value_error():
    assert issubclass(CalibrationError, ValueError)


def test_repr_names_the_method_its_parameters_and_whether_it_is_fitted():
    z, y = overconfident(500)
    cal = make_calibrator("histogram", bins=7)
    assert repr(cal) == "HistogramCalibrator(bins=7) [not fitted]"
    assert repr(cal.fit(z, y)) == "HistogramCalibrator(bins=7)"
    assert repr(make_calibrator("vector")) == "VectorScaling(reg=0.0001, max_iter=500) [not fitted]"
