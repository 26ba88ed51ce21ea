"""The guarantees the study's conclusions rest on, each pinned by behaviour (docs/guarantees.md).

An audit (issue 25) put realistic bugs into the code one at a time; these five passed the whole
fast suite: the temperature fitted on the test set, every other calibrator fitted on the test set,
calibrated metrics computed with logits * T, ``equivalent`` decided from the upper bound alone,
and a student joined to the wrong seed's teacher. Each test below fails on its bug. The last
test pins one more guarantee that only a run-config test covered: a seed's teachers start from
other weights, and see another batch order, than that seed's students.

The study folder is built by hand (no training): teachers whose validation, test and training
labels are drawn at different true temperatures, so that a temperature (or any calibrator) fitted
on the wrong split is far from the right one. The real stages then run on it. Fast: a few seconds.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special
import torch

from kdcal import config, inference, metrics, study, teachers
from kdcal.calibrators import CALIBRATORS, make_calibrator
from kdcal.store import Study, read_json, save_arrays, write_json

# the true temperature each split's labels are drawn at: the NLL-optimal T of each split
SPLIT_T = {"val": 2.2, "test": 0.6, "train": 1.4}
N_PER_SPLIT, CLASSES = 300, 5
ARCH_PARAMS = {"resnet8": 1_000, "resnet14": 2_000}


def study_config(**over):
    """The smoke profile's teachers and seeds (two of each), no teacher variants."""
    return config.resolve("smoke", {"teacher_variants": [], **over})


def split_logits(rng, true_t: float):
    """Logits and labels drawn from softmax(logits / true_t): NLL is lowest near T = true_t."""
    z = rng.normal(size=(N_PER_SPLIT, CLASSES)) * 3.0
    p = scipy.special.softmax(z / true_t, axis=1)
    y = (rng.random((N_PER_SPLIT, 1)) > p.cumsum(axis=1)).sum(axis=1)
    return z, np.minimum(y, CLASSES - 1)


def write_teachers(cfg, root) -> dict:
    """Every teacher run of ``cfg`` as training would leave it: logits.npz and metrics.json. Each
    (arch, seed) has its own logits and its own accuracy and ECE, so teachers differ by seed."""
    st, runs = Study(root), {}
    for i, (rid, arch, seed) in enumerate(study.teacher_runs(cfg)):
        rng = np.random.default_rng(100 + i)
        arrays = {}
        for split, t in SPLIT_T.items():
            arrays[f"{split}_logits"], arrays[f"{split}_labels"] = split_logits(rng, t)
        run = st.run_dir(rid)
        run.mkdir(parents=True)
        save_arrays(arrays, run / "logits.npz")
        write_json({"role": "teacher", "arch": arch, "seed": seed, "run_id": rid,
                    "params": ARCH_PARAMS[arch] + seed,
                    **metrics.summarize(arrays["test_logits"], arrays["test_labels"],
                                        cfg.ece_bins)}, run / "metrics.json")
        runs[rid] = arrays
    return runs


def write_students(cfg, root) -> list[dict]:
    """Every planned student as training would leave it, with metrics of its own."""
    st, plan = Study(root), study.student_plan(cfg, root)
    for i, p in enumerate(plan):
        st.begin_run(p["rid"], p["config"])
        write_json({"role": "student", "arch": cfg.student, "seed": p["seed"], "mode": p["mode"],
                    "teacher_run": p["teacher_rid"], "teacher": p["teacher_arch"],
                    "temperature": p["T"], "kd_tau": p["config"]["kd_tau"],
                    "teacher_temperature": p["config"]["teacher_temperature"], "params": 500,
                    "acc": 0.5 + i / 1000, "ece": 0.1, "nll": 1.0, "brier": 0.5, "val_acc": 0.5,
                    "run_id": p["rid"]}, st.run_dir(p["rid"]) / "metrics.json")
    return plan


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(cfg, folder, teacher arrays by run id): teachers calibrated by the real stage, students
    written as training would leave them."""
    cfg, root = study_config(), tmp_path_factory.mktemp("guarantees")
    runs = write_teachers(cfg, root)
    study.calibrate_teachers(cfg, root, log=lambda *a: None)
    write_students(cfg, root)
    return cfg, root, runs


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """(cfg, folder, teacher arrays by run id): one teacher, every calibrator fitted by the real
    stage (one teacher keeps the slow fits, beta and matrix, few)."""
    cfg = study_config(teachers=["resnet8"], seeds=[1], calibrators=list(CALIBRATORS))
    root = tmp_path_factory.mktemp("calibrators")
    runs = write_teachers(cfg, root)
    study.compare_calibrators(cfg, root, log=lambda *a: None)
    return cfg, root, runs


# ---------------------------------------------------------------- independent references
def optimal_temperature(z, y) -> float:
    """argmin_T NLL(softmax(z / T), y), by scipy on log T (independent of kdcal's L-BFGS)."""
    def nll(log_t):
        return -scipy.special.log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean()

    res = scipy.optimize.minimize_scalar(nll, bounds=(-4, 4), method="bounded",
                                         options={"xatol": 1e-10})
    return float(np.exp(res.x))


def nll_by_hand(z, y) -> float:
    return float(-scipy.special.log_softmax(z, axis=1)[np.arange(len(y)), y].mean())


def ece_by_hand(z, y, bins: int) -> float:
    """Top-1 ECE over ``bins`` equal-width bins of [0, 1], closed on the left, by numpy."""
    p = scipy.special.softmax(z, axis=1)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(correct[idx == b].sum() - conf[idx == b].sum())
                     for b in range(bins)) / len(y))


def scores_by_hand(z, y, bins: int) -> dict:
    return {"acc": float((z.argmax(axis=1) == y).mean()), "ece": ece_by_hand(z, y, bins),
            "nll": nll_by_hand(z, y)}


# ---------------------------------------------------------------- calibration on validation only
def test_the_splits_are_built_so_that_a_wrong_split_shows(built):
    """The premise of the next tests: each split's optimal temperature is far from the others'."""
    _, _, runs = built
    for arrays in runs.values():
        opt = {s: optimal_temperature(arrays[f"{s}_logits"], arrays[f"{s}_labels"])
               for s in SPLIT_T}
        assert min(abs(opt[a] - opt[b]) for a in opt for b in opt if a < b) > 0.3, opt


def test_temperature_is_fitted_on_validation_never_test(built):
    cfg, root, runs = built
    for rid, arrays in runs.items():
        t = read_json(Study(root).run_dir(rid) / "calibration.json")["temperature"]
        t_val = optimal_temperature(arrays["val_logits"], arrays["val_labels"])
        t_test = optimal_temperature(arrays["test_logits"], arrays["test_labels"])
        assert t == pytest.approx(t_val, rel=1e-5), \
            f"{rid}: T={t:.4f}, validation-optimal {t_val:.4f}, test-optimal {t_test:.4f}"
    # the students' temperatures are those of their own teacher's calibration.json
    for p in study.student_plan(cfg, root):
        if p["teacher_rid"]:
            t = read_json(Study(root).run_dir(p["teacher_rid"]) / "calibration.json")["temperature"]
            assert p["T"] == round(t, 6)


@pytest.mark.parametrize("method", list(CALIBRATORS))
def test_every_calibrator_is_fitted_on_validation_never_test(compared, method):
    """The stored calibrator (the cal-<method> students' targets) and its test scores are those of
    a calibrator fitted by hand on validation, and not those of one fitted on test."""
    cfg, root, runs = compared
    for rid, a in runs.items():
        stored = read_json(Study(root).run_dir(rid) / "calibrators" / f"{method}.json")
        probs = CALIBRATORS[method].from_state(stored["state"]).predict_proba(a["test_logits"])
        on_val = make_calibrator(method).fit(a["val_logits"], a["val_labels"])
        on_test = make_calibrator(method).fit(a["test_logits"], a["test_labels"])
        want, wrong = (c.predict_proba(a["test_logits"]) for c in (on_val, on_test))
        assert np.abs(want - wrong).max() > 0.05, "premise: the two fits must differ"
        np.testing.assert_allclose(probs, want, atol=1e-6,
                                   err_msg=f"{rid} {method}: stored calibrator is not the "
                                           "validation fit")
        expected = metrics.summarize_probs(want, a["test_labels"], cfg.ece_bins)
        assert stored["test"] == pytest.approx(expected, rel=1e-6), \
            f"{rid} {method}: test scores {stored['test']} are not the validation fit's {expected}"


# ---------------------------------------------------------------- calibrated metrics from T
def test_calibrated_metrics_are_the_logits_divided_by_the_stored_t(built):
    cfg, root, runs = built
    for rid, a in runs.items():
        c = read_json(Study(root).run_dir(rid) / "calibration.json")
        t = c["temperature"]
        assert c["val_nll_before"] == pytest.approx(nll_by_hand(a["val_logits"], a["val_labels"]),
                                                    rel=1e-9)
        assert c["val_nll_after"] == pytest.approx(
            nll_by_hand(a["val_logits"] / t, a["val_labels"]), rel=1e-9), rid
        assert c["val_nll_after"] < c["val_nll_before"]  # T is the validation NLL's minimiser
        for split, key in (("test", "test_after"), ("train", "train_after")):
            want = scores_by_hand(a[f"{split}_logits"] / t, a[f"{split}_labels"], cfg.ece_bins)
            got = {k: c[key][k] for k in want}
            assert got == pytest.approx(want, rel=1e-9), f"{rid} {key}: {got} != {want}"
        want = scores_by_hand(a["test_logits"], a["test_labels"], cfg.ece_bins)
        assert {k: c["test_before"][k] for k in want} == pytest.approx(want, rel=1e-9)


def test_results_table_calibrated_columns_come_from_the_stored_t(built):
    cfg, root, runs = built
    table = study.results_table(cfg, root).set_index("run_id")
    for rid, a in runs.items():
        row, t = table.loc[rid], read_json(Study(root).run_dir(rid) / "calibration.json")["temperature"]
        test = scores_by_hand(a["test_logits"] / t, a["test_labels"], cfg.ece_bins)
        train = scores_by_hand(a["train_logits"] / t, a["train_labels"], cfg.ece_bins)
        got = {c: row[c] for c in ("temperature", "acc_cal", "ece_cal", "nll_cal",
                                   "train_ece_cal", "train_nll_cal")}
        assert got == pytest.approx({"temperature": t, "acc_cal": test["acc"],
                                     "ece_cal": test["ece"], "nll_cal": test["nll"],
                                     "train_ece_cal": train["ece"],
                                     "train_nll_cal": train["nll"]}, rel=1e-9), rid


# ---------------------------------------------------------------- each student, its own teacher
def test_each_student_carries_its_own_teachers_metrics(built):
    """Two seeds whose teachers differ: every student's teacher columns are those of the teacher
    run it distilled from (same arch, same seed), read from that run's files."""
    cfg, root, _ = built
    table = study.results_table(cfg, root)
    teachers = table[table["role"] == "teacher"].set_index(["arch", "seed"])
    students = table[(table["role"] == "student") & (table["teacher"] != "")]
    planned = [p for p in study.student_plan(cfg, root) if p["teacher_rid"]]
    assert set(students["seed"]) == {0, 1} and len(students) == len(planned) == 4 * 6
    for arch in ARCH_PARAMS:  # premise: the teachers of the two seeds differ
        a, b = teachers.loc[(arch, 0)], teachers.loc[(arch, 1)]
        assert a["acc"] != b["acc"] and a["ece"] != b["ece"] and a["ece_cal"] != b["ece_cal"]
    for _, s in students.iterrows():
        own = teachers.loc[(s["teacher"], s["seed"])]
        rid = own["run_id"]
        m = read_json(Study(root).run_dir(rid) / "metrics.json")
        c = read_json(Study(root).run_dir(rid) / "calibration.json")
        got = {k: s[k] for k in ("teacher_params", "teacher_acc", "teacher_ece",
                                 "teacher_ece_cal")}
        assert got == {"teacher_params": m["params"], "teacher_acc": m["acc"],
                       "teacher_ece": m["ece"], "teacher_ece_cal": c["test_after"]["ece"]}, \
            f"student {s['run_id']} (seed {s['seed']}) of {s['teacher']}: {got}, own teacher {rid}"
        assert s["temperature"] == round(c["temperature"], 6)


# ---------------------------------------------------------------- the verdict rule at its edges
M = 0.005
EDGE = np.nextafter  # the nearest float beyond an edge


@pytest.mark.parametrize("lo,hi,direction,expected", [
    # the interval touching 0: not above or below it, so never supported/contradicted
    (0.0, 0.5, "positive", "underpowered"), (-0.5, 0.0, "negative", "underpowered"),
    (0.0, 0.004, "positive", "equivalent"), (-0.004, 0.0, "negative", "equivalent"),
    (EDGE(0.0, 1.0), 0.5, "positive", "supported"), (EDGE(0.0, 1.0), 0.5, "negative", "contradicted"),
    (-0.5, EDGE(0.0, -1.0), "negative", "supported"), (-0.5, EDGE(0.0, -1.0), "positive", "contradicted"),
    # excluding 0 but inside the margin: an effect shown, negligible, neither side's verdict
    (0.001, 0.002, "positive", "negligible"), (-0.002, -0.001, "positive", "negligible"),
    (EDGE(0.0, 1.0), EDGE(M, 0.0), "negative", "negligible"),
    # excluding 0 and reaching the margin: decided (an effect shown that may be large)
    (0.001, M, "positive", "supported"), (-M, -0.001, "positive", "contradicted"),
    (-0.5, -0.001, "negative", "supported"), (0.001, 0.5, "negative", "contradicted"),
    # equivalent needs BOTH bounds strictly inside the margin
    (-0.004, 0.004, "positive", "equivalent"), (-0.004, 0.004, "negative", "equivalent"),
    (EDGE(-M, 0.0), EDGE(M, 0.0), "positive", "equivalent"),
    (-M, 0.004, "positive", "underpowered"), (-0.004, M, "positive", "underpowered"),
    (-M, M, "negative", "underpowered"),
    # low <= -margin < 0 < high < margin: the upper bound alone would say equivalent
    (-0.019, 0.003, "positive", "underpowered"), (-0.019, 0.003, "negative", "underpowered"),
    (-0.003, 0.019, "positive", "underpowered"), (-0.003, 0.019, "negative", "underpowered"),
    # non-finite ends: no verdict can be read from an undefined interval
    (np.nan, 0.001, "positive", "underpowered"), (-0.001, np.nan, "positive", "underpowered"),
    (-np.inf, 0.001, "negative", "underpowered"), (0.001, np.inf, "positive", "underpowered"),
])
def test_decide_at_every_edge(lo, hi, direction, expected):
    assert inference.decide(lo, hi, direction, M) == expected, (lo, hi, direction)


@pytest.mark.parametrize("direction", ["Positive", "up", "", None])
def test_decide_rejects_a_bad_direction_by_name(direction):
    message = f"direction {direction!r} must be 'positive' or 'negative'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        inference.decide(0.1, 0.2, direction, M)


def test_decide_follows_the_margin_it_is_given():
    assert inference.decide(-0.004, 0.004, "positive", 0.004) == "underpowered"
    assert inference.decide(-0.004, 0.004, "positive", 0.0041) == "equivalent"
    assert inference.decide(-0.04, 0.04, "positive", 0.05) == "equivalent"


# ---------------------------------------------------------------- teacher and student seeds apart
class _Recorded(Exception):
    """Raised by the recording training loop: the first call is all the test needs."""


def test_teachers_start_from_other_weights_and_batches_than_their_seeds_students(monkeypatch,
                                                                                   tmp_path):
    """The real teacher stage, stopped at its training loop: the resnet8 teacher of a seed must not
    start from the weights (nor see the batch order) of that seed's resnet8 students, which start
    from ``torch.manual_seed(seed)`` and train with loop seed ``seed``."""
    from kdcal.models import build_model

    cfg = config.resolve("smoke", {"teachers": ["resnet8"], "seeds": [0, 1], "amp": "off",
                                   "synthetic_size": 8, "synthetic_classes": 4,
                                   "teacher_variants": []})
    assert cfg.student == "resnet8"
    seen = {}

    def recording(members, splits, recipe, seed, engine, *args, **kw):
        (member,) = members.values()
        seen["seed"] = seed
        seen["init"] = {k: v.clone() for k, v in member.model.state_dict().items()}
        seen["shape"] = splits.in_channels, splits.num_classes
        raise _Recorded

    monkeypatch.setattr(teachers, "train_group", recording)
    for rid, arch, seed in study.teacher_runs(cfg):
        with pytest.raises(_Recorded):
            teachers._teacher_task(cfg, Study(tmp_path), rid, arch, seed, log=lambda *a: None)
        assert seen["seed"] not in cfg.seeds, \
            f"teacher seed {seed} trains with loop seed {seen['seed']} (a student's batch order)"
        torch.manual_seed(seed)  # as the students of this seed start (students._student_group_task)
        student = build_model(cfg.student, *seen["shape"]).state_dict()
        weights = [k for k, v in student.items() if v.is_floating_point() and v.dim() > 1]
        same = [k for k in weights if torch.equal(student[k], seen["init"][k])]
        assert weights and not same, f"teacher {arch} seed {seed} starts from its students' " \
                                     f"weights: {same[:3]}"
