"""Guarantees a second audit (issue 38) found unpinned: each was broken by a realistic bug that the
whole fast suite let through. Each test below pins what must be true of the study, and was seen
failing once with its bug put in by hand (docs/guarantees.md; the commit message says which):

1. a model's ``val_acc`` (what chooses the tuned tau of claim 5) is its accuracy on validation;
2. with ``split_per_seed``, the students and the no-KD baseline of a seed learn on that seed's own
   images (its transfer split, or its teachers' training images);
3. the teachers' ``distill_*`` columns are measured on their own seed's transfer images;
4. two transfer designs of different sizes in one study folder keep their own ``distill_*``;
5. a ``family`` column on the teachers' rows overrides the name rule in ``teacher_means``;
6. ``teachers_needed`` never answers fewer teachers than can reach the 5% level at all;
7. ``kdcal plan`` sizes a transfer design's students by the transfer split's images;
8. ``kdcal plan`` plans the tau controls on every seed when ``control_seeds`` is [].

Fast: one tiny synthetic study (two 1-epoch resnet8 teachers on 8x8 images), the rest by hand.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ece_nll_by_numpy, tiny_splits

from kdcal import analysis, budget, config, inference, plan, runs, students, study
from kdcal.models import build_model
from kdcal.store import Study, load_arrays, read_json, write_json

QUIET = {"log": lambda *_: None}
# two seeds, each its own split (seed 1's differs from the base split; seed 0's is the base one)
TINY = {"teachers": ["resnet8"], "seeds": [0, 1], "split_per_seed": True, "teacher_epochs": 1,
        "student_epochs": 1, "synthetic_size": 8, "synthetic_classes": 4, "amp": "off",
        "threads": 1, "workers": 0, "teacher_variants": [], "teacher_temperature_grid": [],
        "tau_grid": [], "train_size": 200, "calibrators": ["temperature"],
        "modes": ["uncalibrated"]}
TRANSFER_SIZES = (150, 100)  # two transfer designs sharing the teacher runs of one folder


def tiny(**over):
    return config.resolve("smoke", {**TINY, **over})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One study folder: the teachers of seeds 0 and 1 trained once, then calibrated by the
    transfer design of 150 images and, after it, by the one of 100 (the same teacher runs)."""
    root = tmp_path_factory.mktemp("audit2")
    designs = [tiny(transfer_size=n) for n in TRANSFER_SIZES]
    assert study.teacher_runs(designs[0]) == study.teacher_runs(designs[1]) == \
        study.teacher_runs(tiny())  # premise: every design shares the teachers
    study.train_teachers(designs[0], root, **QUIET)
    for cfg in designs:
        study.calibrate_teachers(cfg, root, **QUIET)
    return root, designs


def own_splits(cfg, seed):
    return study.load_splits(study.for_seed(cfg, seed))


def teacher_logits(root, rid, splits, x_uint8) -> np.ndarray:
    """A teacher's logits recomputed from its checkpoint: a plain eval-mode fp32 forward."""
    state = torch.load(Study(root).run_dir(rid) / "model.pt", weights_only=True)
    model = build_model(state["arch"], splits.in_channels, splits.num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        return model((x_uint8.float() / 255 - splits.mean) / splits.std).double().numpy()




def distill_by_hand(root, row, cfg) -> dict:
    """The distill_* columns of one teacher row, on its own seed's transfer images."""
    splits = own_splits(cfg, int(row["seed"]))
    z = teacher_logits(root, row["run_id"], splits, splits.transfer_x)
    y = splits.transfer_y.numpy()
    ece, nll = ece_nll_by_numpy(z, y, cfg.ece_bins)
    ece_cal, nll_cal = ece_nll_by_numpy(z / row["temperature"], y, cfg.ece_bins)
    return {"distill_acc": float((z.argmax(1) == y).mean()), "distill_ece": ece,
            "distill_nll": nll, "distill_ece_cal": ece_cal, "distill_nll_cal": nll_cal}


def assert_distill_columns(root, cfg):
    table = study.calibration_table(cfg, root)
    assert sorted(table["seed"]) == [0, 1]
    for _, row in table.iterrows():
        want = distill_by_hand(root, row, cfg)
        got = {k: row[k] for k in want}
        assert got == pytest.approx(want, abs=1e-5), \
            f"transfer_size={cfg.transfer_size} seed {row['seed']}: {got} != {want}"


# ---------------------------------------------------------------- 1. val_acc is validation's
def test_val_acc_is_the_accuracy_on_the_validation_split(tmp_path, cpu_engine, folder):
    """Labels chosen so that the model is right on every validation image and wrong on every test
    image: ``val_acc`` (what tunes tau for claim 5) must be 1, test ``acc`` 0. Then the teachers
    of a real stage: ``val_acc`` is the accuracy of their validation logits on their split's
    validation labels."""
    cfg = tiny()
    splits = tiny_splits(n_train=64, val_size=48, size=8)
    torch.manual_seed(0)
    model = build_model("resnet8", splits.in_channels, splits.num_classes)
    model.eval()
    with torch.no_grad():
        val_pred, test_pred = (model(splits.normalize(x)).argmax(1)
                               for x in (splits.val_x, splits.test_x))
    splits = dataclasses.replace(splits, val_y=val_pred,
                                 test_y=(test_pred + 1) % splits.num_classes)
    row = runs.finish_model(Study(tmp_path), "m", model, splits, cpu_engine, cfg,
                            {"role": "student", "arch": "resnet8"})
    stored = read_json(Study(tmp_path).run_dir("m") / "metrics.json")
    assert (stored["acc"], stored["val_acc"]) == (row["acc"], row["val_acc"]) == (0.0, 1.0)

    root, _ = folder
    for rid, _, seed in study.teacher_runs(cfg):
        run = Study(root).run_dir(rid)
        m, z = read_json(run / "metrics.json"), load_arrays(run / "logits.npz")
        val_y = own_splits(cfg, seed).val_y.numpy()
        assert np.array_equal(z["val_labels"], val_y)
        assert m["val_acc"] == float((z["val_logits"].argmax(1) == val_y).mean()), (rid, m)


# ---------------------------------------------------------------- 2. each seed's own images
class _Stop(Exception):
    """Raised by a stand-in training loop once it has its arguments."""


def group_arguments(monkeypatch, cfg, root, todo) -> dict:
    seen = {}

    def capture(members, splits, recipe, seed, engine, *args, **kw):
        seen.update(splits=splits, seed=seed, **kw)
        raise _Stop

    monkeypatch.setattr(students, "train_group", capture)
    with pytest.raises(_Stop):
        students._student_group_task(cfg, Study(root), todo, **QUIET)
    return seen


@pytest.mark.parametrize("transfer_size", [0, TRANSFER_SIZES[0]])
def test_each_seeds_students_and_baseline_learn_on_that_seeds_own_images(
        folder, monkeypatch, transfer_size):
    """With ``split_per_seed``: seed 1's students and its no-KD baseline train on seed 1's images
    (its transfer split, or its teachers' training images in the reuse design), never the base
    split's, with the teacher's targets on exactly those images."""
    root, _ = folder
    cfg = tiny(transfer_size=transfer_size)
    own, base = own_splits(cfg, 1), study.load_splits(cfg)
    images = "transfer" if transfer_size else "train"
    want_x, want_y = ((own.transfer_x, own.transfer_y) if transfer_size
                      else (own.train_x, own.train_y))
    base_x = base.transfer_x if transfer_size else base.train_x
    assert not torch.equal(want_x, base_x)  # premise: seed 1's split is not the base split
    groups = {}
    for p in study.student_plan(cfg, root):
        groups.setdefault(p["group"], []).append(p)
    todo = [g for g in groups.values() if g[0]["seed"] == 1]
    assert sorted(g[0]["mode"] for g in todo) == ["baseline", "uncalibrated"]
    wrong = []
    for group in todo:
        seen = group_arguments(monkeypatch, cfg, root, group)
        who = f"{group[0]['mode']} seed 1 ({images} design)"
        assert seen["seed"] == 1
        got = seen["splits"]
        wrong += [f"{who} learns on other {what} than seed 1's {images} split"
                  for what, a, b in (("images", got.train_x, want_x),
                                     ("labels", got.train_y, want_y),
                                     ("validation images", got.val_x, own.val_x))
                  if not torch.equal(a, b)]
        if group[0]["teacher_rid"]:  # the teacher's targets: its logits on those very images
            rid = group[0]["teacher_rid"]
            expected = (teacher_logits(root, rid, own, want_x) if transfer_size else
                        load_arrays(Study(root).run_dir(rid) / "logits.npz")["train_logits"])
            if not np.allclose(seen["teacher_logits"].numpy(), expected, atol=1e-4):
                wrong.append(f"{who}: the teacher's targets are not its logits on those images")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- 3, 4. the teachers' distill_*
def test_teachers_distill_columns_are_measured_on_their_own_seeds_transfer_images(folder):
    """Seed 1's teacher: distill_* on seed 1's transfer images (which are not the base split's:
    measured there, the numbers differ)."""
    root, designs = folder
    cfg = designs[0]
    row = study.calibration_table(cfg, root).set_index("seed").loc[1]
    base = study.load_splits(cfg)
    z = teacher_logits(root, row["run_id"], base, base.transfer_x)
    on_base = ece_nll_by_numpy(z, base.transfer_y.numpy(), cfg.ece_bins)[0]
    assert abs(on_base - distill_by_hand(root, row.to_dict() | {"seed": 1}, cfg)["distill_ece"]) \
        > 1e-3  # premise: the base split's images would give other numbers
    assert_distill_columns(root, cfg)


def test_two_transfer_designs_of_different_sizes_in_one_folder_keep_their_own_distill(folder):
    """The designs of 150 and 100 transfer images share their teacher runs; the one calibrated
    second must not read the first one's distill_* (nor the first the second's)."""
    root, designs = folder
    for cfg in designs:
        assert_distill_columns(root, cfg)
    first, second = (study.calibration_table(cfg, root) for cfg in designs)
    assert (first["distill_ece"] != second["distill_ece"]).all()  # premise: they differ


# ---------------------------------------------------------------- 5. a family column
def test_a_family_column_on_the_teachers_rows_overrides_the_name_rule_in_teacher_means():
    """By name, resnet14 is depth and resnet8x2 width; the table says otherwise, and its word
    goes: for the teachers' own means and for their students' means."""
    given = {"resnet8": "depth", "resnet14": "width", "resnet20": "width", "resnet8x2": "depth"}
    assert {a: analysis.teacher_family(a) for a in given} != given  # premise: the rule differs
    params = {"resnet8": 78, "resnet14": 175, "resnet20": 272, "resnet8x2": 300}
    teachers = pd.DataFrame([{"role": "teacher", "mode": "teacher", "arch": a, "teacher": "",
                              "params": params[a], "seed": s, "ece": 0.01 * i + 0.001 * s,
                              "family": given[a]}
                             for i, a in enumerate(given) for s in (0, 1)])
    students = pd.DataFrame([{"role": "student", "mode": "uncalibrated", "arch": "resnet8",
                              "teacher": a, "teacher_params": params[a], "seed": s,
                              "acc": 0.8 + 0.01 * i, "family": None}
                             for i, a in enumerate(given) for s in (0, 1)])
    results = pd.concat([teachers, students], ignore_index=True)
    means = analysis.teacher_means(teachers, "params", "ece")
    assert means["family"].to_dict() == given
    means = analysis.teacher_means(results[results["role"] == "teacher"], "params", "ece")
    assert means["family"].to_dict() == given
    kd = analysis.teacher_means(students, "teacher_params", "acc", analysis.families(results))
    assert kd["family"].to_dict() == given
    width = analysis.size_trend(teachers, "params", "ece", family="width")
    assert width["n"] == 2  # resnet14 and resnet20, as the table says


# ---------------------------------------------------------------- 6. the power floor
@pytest.mark.parametrize("sigma,margin", [(1e-6, 10.0), (0.0, 1.0), (0.01, 0.5), (0.3, 0.2)])
@pytest.mark.parametrize("x", [[-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0, 1.0, 2.0], [-0.5, 0.5]])
def test_teachers_needed_is_never_fewer_than_can_reach_the_level(x, sigma, margin):
    """However large the effect, the answer is a number of teachers whose permutation test can
    give p <= 5% at all (fewer cannot, whatever their data)."""
    fewest = inference.teachers_for_level()
    assert inference.permutation_floor(fewest) <= inference.ALPHA
    assert inference.permutation_floor(fewest - 1) > inference.ALPHA
    for groups in (1, 2):
        k = inference.teachers_needed(np.asarray(x), sigma, margin, groups=groups)
        assert fewest <= k < np.inf, (groups, k)
        if groups == 1:
            assert inference.permutation_floor(int(k)) <= inference.ALPHA, k


def test_size_effect_of_three_teachers_with_a_clear_slope_needs_the_level_reaching_number():
    x = np.log2([1e3, 2e3, 4e3])
    out = inference.size_effect(x, 0.02 * x + [0.0, 1e-4, 0.0], "positive", 0.001)
    assert out["p_floor"] > inference.ALPHA  # three teachers cannot reach the level
    assert out["needed"] == out["needed_observed"] == inference.teachers_for_level()


# ---------------------------------------------------------------- 7, 8. kdcal plan
def test_plan_sizes_a_transfer_designs_students_by_the_transfer_images():
    """Teachers on 3,000 images, students and baseline on 1,000 others: the plan's student jobs
    train on 1,000 images for the steps the study gives them, the teachers on 3,000."""
    over = {"transfer_size": 1000, "student_steps": 0}
    cfg = config.resolve("evidence-transfer", {**over, "device": "cpu"})
    assert budget.student_images(cfg) == 1000 != budget.teacher_images(cfg) == 3000
    p = plan.plan_profile("evidence-transfer", over)
    students, teachers = (p.stages[s]["jobs"] for s in ("03 students", "01 teachers"))
    assert len(students) == len(cfg.seeds) * (1 + len(cfg.teachers))
    for j in students:
        assert (j.train_images, j.steps) == (1000, budget.student_steps(cfg)), j.label
    assert {(j.train_images, j.steps) for j in teachers} == {(3000, budget.teacher_steps(cfg))}


def test_plan_gives_a_transfer_designs_students_the_step_budget_the_study_trains():
    """With a step budget (``student_steps``, as evidence-transfer has) and a transfer split of
    another size than the teachers' images, the plan's students train the study's epochs
    (``budget.student_epochs``), never ``student_epochs`` read raw."""
    over = {"transfer_size": 1000}
    cfg = config.resolve("evidence-transfer", {**over, "device": "cpu"})
    assert budget.student_epochs(cfg) != cfg.student_epochs
    students = plan.plan_profile("evidence-transfer", over).stages["03 students"]["jobs"]
    assert {(j.train_images, j.epochs, j.steps) for j in students} == {
        (1000, budget.student_epochs(cfg), budget.student_steps(cfg))}


@pytest.mark.parametrize("control_seeds", [[], [1]])
def test_plan_plans_the_students_the_study_plans_every_seeds_controls_when_empty(
        tmp_path, control_seeds):
    """control_seeds [] means every seed: the plan's student jobs hold, per teacher and seed, the
    students (tau controls included) that the study's own plan trains."""
    over = {"seeds": [0, 1, 2], "tau_grid": [2.0, 8.0], "control_seeds": control_seeds}
    cfg = config.resolve("smoke", {**over, "device": "cpu"})
    for rid, _, _ in study.teacher_runs(cfg):
        write_json({"temperature": 2.5}, Study(tmp_path).run_dir(rid) / "calibration.json")
    trained = {}
    for p in study.student_plan(cfg, tmp_path):
        key = f"students of {p['teacher_arch'] or 'no teacher'} seed {p['seed']}"
        trained[key] = trained.get(key, 0) + 1
    controls = [s for s in cfg.seeds if not control_seeds or s in control_seeds]
    per_teacher = len(cfg.modes) + 2 + 1  # two more taus, one teacher temperature
    assert trained[f"students of resnet14 seed {controls[-1]}"] == per_teacher
    planned = {j.label: j.models for j in plan.plan_profile("smoke", over).stages["03 students"]["jobs"]}
    assert planned == trained
    assert plan.counts(cfg)["students"] == sum(trained.values())


@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("sigma, margin", [(0.001, 1.0), (0.5, 0.4), (2.0, 0.3)])
def test_teachers_needed_with_families_can_reach_the_level_when_spread_over_them(
        groups, sigma, margin):
    """With a family term the test reorders teachers within families only: the teachers it
    answers, spread evenly over the families, must have orderings enough for the 5% level (3 + 3
    teachers allow 36 orderings, p >= 0.056: never an answer with two families)."""
    x = np.log2([1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6])
    x = x - x.mean()
    k = inference.teachers_needed(x, sigma, margin, groups=groups)
    assert np.isfinite(k)
    sizes = inference.balanced_sizes(int(k), groups)
    strata = np.repeat(np.arange(groups), sizes)
    assert inference.permutation_floor(int(k), strata) <= inference.ALPHA, (k, sizes)
    assert k >= inference.teachers_for_level(groups=groups) == {1: 5, 2: 7, 3: 8}[groups]

