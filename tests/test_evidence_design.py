"""Issue 22, a design where calibration can act: calibrators that are not a temperature as KD
targets, `replace` and `compose` as temperature choices, students on images their teachers never
saw, the teachers' calibration on the students' images, equal step budgets, the new profiles.

Each test was seen failing once with the behaviour broken by hand (see the docstrings).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import ece_nll_by_numpy

from kdcal import budget, config, students, study
from kdcal.train import make_engine
from kdcal.calibration import PROB_FLOOR
from kdcal.calibrators import CALIBRATORS
from kdcal.distill import kd_loss, make_loss
from kdcal.models import build_model, family
from kdcal.store import Study, read_json, write_json

QUIET = dict(log=lambda *_: None)
# a tiny synthetic study, in this process (workers 0: a spy on train_group sees every group)
TINY = {"teachers": ["resnet8"], "seeds": [0], "teacher_epochs": 1, "student_epochs": 1,
        "synthetic_size": 8, "synthetic_classes": 4, "amp": "off", "threads": 1, "workers": 0,
        "teacher_variants": [], "teacher_temperature_grid": [], "tau_grid": []}
CAL_METHODS = ["vector", "matrix", "isotonic", "histogram", "beta"]


def _run(cfg, root) -> dict:
    """Teachers, calibration, calibrators and students of ``cfg`` in ``root``; returns, per
    student group, the members and splits that the training loop got."""
    study.train_teachers(cfg, root, **QUIET)
    study.calibrate_teachers(cfg, root, **QUIET)
    study.compare_calibrators(cfg, root, **QUIET)
    seen, real = {}, students.train_group

    def spy(members, splits, *args, **kw):
        seen[kw["desc"]] = {"members": members, "splits": splits}
        return real(members, splits, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(students, "train_group", spy)
        study.distill_students(cfg, root, **QUIET)
    return seen


@pytest.fixture(scope="module")
def reuse(tmp_path_factory):
    """Students on the teachers' own 400 images; 6 teacher steps, a 10-step student budget."""
    cfg = config.resolve("smoke", {**TINY, "student_steps": 10, "calibrators": ["temperature",
                                                                                  *CAL_METHODS],
                                   "modes": ["uncalibrated", *[f"cal-{m}" for m in CAL_METHODS]]})
    root = tmp_path_factory.mktemp("reuse")
    return cfg, root, _run(cfg, root), study.results_table(cfg, root)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    """Teachers on 200 images, students on 150 others (the transfer split)."""
    cfg = config.resolve("smoke", {**TINY, "train_size": 200, "transfer_size": 150,
                                   "calibrators": ["temperature", "vector"],
                                   "modes": ["uncalibrated", "cal-vector"]})
    root = tmp_path_factory.mktemp("transfer")
    return cfg, root, _run(cfg, root), study.results_table(cfg, root)


# ---------------------------------------------------------------- a. replace, compose = temperatures
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_replace_is_uncalibrated_kd_at_tau_T_and_compose_divides_the_teacher_by_T(dtype):
    """Broken on purpose: ``replace`` as (T, T) in ``mode_temperatures`` (the loss then differs)."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(64, 10, generator=g, dtype=dtype) * 2, torch.randn(64, 10, generator=g,
                                                                          dtype=dtype) * 5
    y = torch.randint(10, (64,), generator=g)
    tau, alpha, rel = 4.0, 0.9, (1e-12 if dtype is torch.float64 else 1e-6)
    for T in (0.7, 1.9, 3.3):
        replace = make_loss("replace", tau, alpha, T)(s, y, t)
        assert replace.item() == pytest.approx(make_loss("uncalibrated", T, alpha)(s, y, t).item(),
                                               rel=rel)
        compose = make_loss("compose", tau, alpha, T)(s, y, t)
        assert compose.item() == pytest.approx(
            make_loss("uncalibrated", tau, alpha)(s, y, t / T).item(), rel=rel)
        assert replace.item() != pytest.approx(make_loss("uncalibrated", tau, alpha)(s, y, t).item(),
                                               rel=1e-4)  # not the uncalibrated loss at tau


# ---------------------------------------------------------------- b. calibrators as KD targets
def test_calibrated_students_train_end_to_end_at_tau_on_validation_fitted_targets(reuse):
    """cal-vector, cal-matrix, cal-isotonic, cal-histogram and cal-beta students train and are
    scored; each distills at the config's tau (teacher temperature 1) on its calibrator's targets,
    a calibrator fitted on the teacher's validation logits only: softmax(g(z) / tau) for the
    scaling ones, p^(1/tau) renormalised for the probability-output ones.
    Broken on purpose: calibrators fitted on test logits in ``compare_calibrators``; and
    ``calibrated_targets`` returning the probabilities themselves instead of their log."""
    cfg, root, seen, table = reuse
    students = table[table["role"] == "student"].set_index("mode")
    assert set(students.index) == {"baseline", "uncalibrated", *[f"cal-{m}" for m in CAL_METHODS]}
    assert students[["acc", "nll", "agreement"]].drop("baseline").notna().all().all()
    rid = study.teacher_runs(cfg)[0][0]
    run = Study(root).run_dir(rid)
    z = np.load(run / "logits.npz")
    members = seen["students of resnet8 seed 0"]["members"]
    g = torch.Generator().manual_seed(1)
    s = torch.randn(len(z["train_logits"]), cfg.synthetic_classes, generator=g)
    y = torch.from_numpy(z["train_labels"]).long()
    for method in CAL_METHODS:
        mode = f"cal-{method}"
        assert (students.loc[mode, "kd_tau"], students.loc[mode, "teacher_temperature"]) == (cfg.tau, 1.0)
        torch.set_num_threads(cfg.threads)  # as fitted in the study: L-BFGS paths follow threads
        refit = CALIBRATORS[method]().fit(z["val_logits"], z["val_labels"])  # validation only
        p = refit.predict_proba(z["train_logits"])
        # scaling calibrators hand over exact logits; the others' p is floored before the log
        soft = (p if method in ("vector", "matrix") else np.clip(p, PROB_FLOOR, None)) ** (1 / cfg.tau)
        soft /= soft.sum(axis=1, keepdims=True)
        targets = members[mode].teacher_logits
        got = F.softmax(targets.double() / cfg.tau, dim=1).numpy()
        assert np.allclose(got, soft, atol=1e-6), mode
        by_hand = cfg.alpha * cfg.tau ** 2 * F.kl_div(
            F.log_softmax(s.double() / cfg.tau, dim=1), torch.from_numpy(soft), reduction="batchmean") \
            + (1 - cfg.alpha) * F.cross_entropy(s.double(), y)
        loss = members[mode].loss(s.double(), y, targets.double())
        assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5), mode
    assert members["uncalibrated"].teacher_logits is None  # the raw teacher, shared


# ---------------------------------------------------------------- c. the tuned-tau control
@pytest.mark.parametrize("profile", ["evidence-reuse", "evidence-transfer"])
def test_evidence_profiles_plan_the_tau_control_for_every_teacher_and_seed(profile, tmp_path):
    """Broken on purpose: control_seeds [0] in the profiles (controls on one seed only)."""
    cfg = config.resolve(profile)
    st = Study(tmp_path)
    for rid, _, _ in study.teacher_runs(cfg):
        write_json({"temperature": 2.5}, st.run_dir(rid) / "calibration.json")
    plan = study.student_plan(cfg, tmp_path)
    keys = {}
    for p in plan:
        keys.setdefault((p["teacher_arch"], p["seed"]), set()).add(p["key"])
    expected = set(cfg.modes) | {f"tau_sweep{v:g}" for v in cfg.tau_grid if v != cfg.tau}
    assert len(cfg.tau_grid) >= 2
    for arch in cfg.teachers:
        for seed in cfg.seeds:
            assert keys[(arch, seed)] == expected, (arch, seed)
    assert all(keys[("", seed)] == {"baseline"} for seed in cfg.seeds)
    assert len([m for m in cfg.modes if m.startswith("cal-") and m != "cal-temperature"]) >= 2


# ---------------------------------------------------------------- d. students on unseen images
def _image_keys(x: torch.Tensor) -> set:
    return {bytes(row) for row in x.reshape(len(x), -1).cpu().numpy()}


def test_transfer_split_is_disjoint_from_the_teachers_train_validation_and_test_images():
    """Broken on purpose: ``transfer_indices`` taking the images right after validation (the
    teachers' training images)."""
    cfg = config.resolve("smoke", {**TINY, "train_size": 200, "transfer_size": 150, "seeds": [0, 1],
                                   "split_per_seed": True})
    for seed in cfg.seeds:
        splits = study.load_splits(study.for_seed(cfg, seed))
        transfer = _image_keys(splits.transfer_x)
        assert len(transfer) == 150 == len(splits.transfer_x)  # the images are distinct
        for name in ("train_x", "val_x", "test_x"):
            assert transfer.isdisjoint(_image_keys(getattr(splits, name))), (seed, name)


def test_transfer_students_and_baseline_learn_on_the_transfer_images(transfer):
    """The students and the no-KD baseline train on the transfer split (with its labels), the
    teacher on its own images. Broken on purpose: ``train_splits = splits`` in the group task;
    and the teacher's stored training logits handed to ``calibrated_targets``."""
    cfg, root, seen, table = transfer
    splits = study.load_splits(cfg)
    assert sorted(seen) == ["students of no teacher seed 0", "students of resnet8 seed 0"]
    for group in seen.values():
        assert torch.equal(group["splits"].train_x, splits.transfer_x)
        assert torch.equal(group["splits"].train_y, splits.transfer_y)
    assert set(table.loc[table["role"] == "student", "mode"]) == {"baseline", "uncalibrated",
                                                                  "cal-vector"}
    # a calibrated student's targets: its calibrator on the teacher's logits of those images
    rid = study.teacher_runs(cfg)[0][0]
    state = read_json(Study(root).run_dir(rid) / "calibrators" / "vector.json")["state"]
    logits = _independent_logits(root, rid, cfg, splits.transfer_x)
    targets = seen["students of resnet8 seed 0"]["members"]["cal-vector"].teacher_logits
    assert np.allclose(targets.numpy(), CALIBRATORS["vector"].from_state(state).target_logits(logits),
                       atol=1e-4)


def test_evidence_profiles_differ_in_the_students_images_only():
    reuse, transfer = config.resolve("evidence-reuse"), config.resolve("evidence-transfer")
    assert reuse.transfer_size == 0 and transfer.transfer_size == reuse.train_size
    assert {k: v for k, v in reuse.to_dict().items() if k != "transfer_size"} == \
        {k: v for k, v in transfer.to_dict().items() if k != "transfer_size"}
    engine = make_engine("cpu", "bf16")
    assert study.teacher_runs(reuse, engine) == study.teacher_runs(transfer, engine)  # shared


# ---------------------------------------------------------------- e. the mechanism, shown
def _independent_logits(root, rid, cfg, x_uint8) -> np.ndarray:
    """The teacher's logits recomputed from its checkpoint: plain eval-mode forward, fp32."""
    splits = study.load_splits(cfg)
    state = torch.load(Study(root).run_dir(rid) / "model.pt", weights_only=True)
    model = build_model(state["arch"], splits.in_channels, splits.num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    x = (x_uint8.float() / 255 - splits.mean) / splits.std
    with torch.no_grad():
        return model(x).double().numpy()




@pytest.mark.parametrize("design", ["reuse", "transfer"])
def test_teachers_calibration_on_the_students_images_matches_an_independent_computation(
        design, request):
    """distill_* columns: the teacher's ECE and NLL, before and after its temperature, on the
    images its students learn from. Broken on purpose: ``distill_logits`` returning the training
    logits in the transfer design too; and the after-columns computed without dividing by T."""
    cfg, root, _, table = request.getfixturevalue(design)
    splits = study.load_splits(cfg)
    x, y = (splits.transfer_x, splits.transfer_y) if cfg.transfer_size else (splits.train_x,
                                                                            splits.train_y)
    teachers = table[table["role"] == "teacher"]
    assert len(teachers) == len(cfg.teachers) * len(cfg.seeds)
    for _, row in teachers.iterrows():
        logits = _independent_logits(root, row["run_id"], cfg, x)
        assert len(logits) == (150 if design == "transfer" else 400)
        ece, nll = ece_nll_by_numpy(logits, y.numpy(), cfg.ece_bins)
        ece_cal, nll_cal = ece_nll_by_numpy(logits / row["temperature"], y.numpy(), cfg.ece_bins)
        assert row["distill_acc"] == pytest.approx(float((logits.argmax(1) == y.numpy()).mean()))
        assert row["distill_ece"] == pytest.approx(ece, abs=1e-5)
        assert row["distill_nll"] == pytest.approx(nll, rel=1e-4)
        assert row["distill_ece_cal"] == pytest.approx(ece_cal, abs=1e-5)
        assert row["distill_nll_cal"] == pytest.approx(nll_cal, rel=1e-4)
        assert row["ece"] == row["ece"]  # test ECE stands beside them
        if design == "reuse":  # the students' images are the teacher's own
            assert row["distill_ece"] == pytest.approx(row["train_ece"], abs=1e-12)
            assert row["distill_ece_cal"] == pytest.approx(row["train_ece_cal"], abs=1e-12)
    assert table.loc[table["role"] == "student", "distill_ece"].isna().all()  # teachers' columns


def test_both_designs_in_one_folder_keep_their_own_students_images(tmp_path):
    """The reuse and transfer designs share their teacher runs (the same run ids); each design's
    distill_* columns are measured on its own students' images. Broken on purpose: the numbers
    kept in the teacher's calibration.json, written by whichever design calibrated first (the
    transfer design then reported the teachers' own training images)."""
    base = {**TINY, "train_size": 200, "calibrators": ["temperature"], "modes": ["uncalibrated"]}
    own = config.resolve("smoke", base)
    other = config.resolve("smoke", {**base, "transfer_size": 150})
    assert study.teacher_runs(own) == study.teacher_runs(other)
    tables = {}
    for cfg in (own, other, own):  # reuse first, then transfer, then reuse again
        study.train_teachers(cfg, tmp_path, **QUIET)
        study.calibrate_teachers(cfg, tmp_path, **QUIET)
        tables[bool(cfg.transfer_size)] = study.calibration_table(cfg, tmp_path)
    splits = study.load_splits(other)
    for transfer, table in tables.items():
        x, y = (splits.transfer_x, splits.transfer_y) if transfer else (splits.train_x,
                                                                        splits.train_y)
        for _, row in table.iterrows():
            logits = _independent_logits(tmp_path, row["run_id"], other, x)
            ece, _ = ece_nll_by_numpy(logits, y.numpy(), other.ece_bins)
            assert row["distill_ece"] == pytest.approx(ece, abs=1e-5)
            assert row["distill_ece_cal"] == pytest.approx(
                ece_nll_by_numpy(logits / row["temperature"], y.numpy(), other.ece_bins)[0], abs=1e-5)


def test_runs_calibrated_by_older_kdcal_keep_their_numbers_without_a_checkpoint(tmp_path):
    """A study grown from bundles of kdcal up to 87a9cc6 (the numbers in calibration.json, no
    model.pt in a bundle): calibrating again measures nothing and reads them. Broken on purpose:
    the old fields ignored (the transfer design then needs the checkpoint it does not have)."""
    cfg = config.resolve("smoke", {**TINY, "train_size": 200, "transfer_size": 150,
                                   "calibrators": ["temperature"], "modes": ["uncalibrated"]})
    study.train_teachers(cfg, tmp_path, **QUIET)
    new = study.calibrate_teachers(cfg, tmp_path, **QUIET)
    for rid in new["run_id"]:
        run = Study(tmp_path).run_dir(rid)
        seen = run / f"distill-{study.students_images(cfg)}.json"
        d, c = read_json(seen), read_json(run / "calibration.json")
        write_json({**c, "distill_before": d["before"], "distill_after": d["after"]},
                   run / "calibration.json")
        seen.unlink()
        (run / "model.pt").unlink()
    old = study.calibrate_teachers(cfg, tmp_path, **QUIET)
    pd.testing.assert_frame_equal(old, new)


# ---------------------------------------------------------------- f. fair budgets
def test_every_model_reports_its_steps_and_students_share_the_budget(reuse, transfer):
    """Broken on purpose: ``student_recipe`` ignoring ``student_steps`` (students at 6 steps)."""
    for cfg, _, _, table in (reuse, transfer):
        assert table["steps"].notna().all()
        teachers, students = table[table["role"] == "teacher"], table[table["role"] == "student"]
        assert (teachers["steps"] == budget.teacher_steps(cfg)).all()
        assert (students["steps"] == budget.student_steps(cfg)).all()  # baseline included
    cfg, table = reuse[0], reuse[3]
    assert budget.teacher_steps(cfg) == 6 and budget.student_steps(cfg) == 12  # 2 epochs of 6 >= 10
    assert transfer[0].student_steps == 0 and budget.student_steps(transfer[0]) == 2  # 150 // 64


def test_student_steps_round_up_to_whole_epochs_and_zero_keeps_the_epochs():
    cfg = config.resolve("evidence")
    assert budget.student_epochs(cfg) == cfg.student_epochs == 15
    assert budget.student_steps(cfg) == 15 * (3000 // 128)
    # no other profile sets a step budget: its run ids stay (the tutorial's was retuned with one,
    # issue 39, and its committed run rerun)
    for name in config.PROFILES:
        c = config.resolve(name, {"device": "cpu"})  # the GPU profiles, here
        if name not in ("evidence-reuse", "evidence-transfer", "confirm-transfer", "tutorial"):
            assert c.student_steps == 0 and study.student_recipe(c).epochs == c.student_epochs
    more = config.resolve("evidence", {"student_steps": 1000})
    assert budget.student_epochs(more) == 44 and budget.student_steps(more) == 44 * 23
    with pytest.raises(config.ConfigError, match=r"^student_steps=-1 is out of range"):
        config.resolve("evidence", {"student_steps": -1})
    with pytest.raises(config.ConfigError, match=r"^student_milestones must be increasing epochs "
                                                 r"in 1\.\.43"):
        config.resolve("evidence", {"student_steps": 1000, "schedule": "step",
                                    "student_milestones": [50]})


@pytest.mark.parametrize("profile", ["evidence-reuse", "evidence-transfer"])
def test_evidence_profiles_ladders_budgets_and_designs(profile):
    cfg = config.resolve(profile)
    depth = [a for a in cfg.teachers if family(a) == "depth"]
    assert len(depth) >= 6 and len(cfg.teachers) > len(depth)  # a width ladder beside it
    assert cfg.student in cfg.teachers and len(cfg.seeds) >= 4 and cfg.split_per_seed
    # the baseline and every student: at least the steps of the student's own architecture
    # as a teacher, on the teachers' recipe (batch, lr)
    assert budget.student_steps(cfg) >= budget.teacher_steps(cfg)
    assert (cfg.student_batch_size, cfg.student_lr) == (cfg.batch_size, cfg.lr)
    assert (cfg.transfer_size > 0) == (profile == "evidence-transfer")
    assert config.resolve("evidence").teachers == ["resnet8", "resnet14", "resnet20", "resnet8x2",
                                                   "resnet32", "resnet8x4", "resnet14x3"]
