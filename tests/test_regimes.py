"""Regimes (notebook 05): label noise, the transfer split, the teacher factors, the cells and
their analysis."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import kdcal
from kdcal import students, study
from kdcal.store import Study, load_arrays, safe_torch_load
from kdcal.train import predict
from kdcal.config import ConfigError, regime_cells, resolve
from kdcal.data import (as_transfer, make_splits, make_synthetic, noisy_labels, split_indices,
                        transfer_indices, with_label_noise)
from kdcal.models import build_model
from kdcal.regimes import cell_label, regime_effects, regime_summary


# ---------------------------------------------------------------- label noise
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.2, 0.4, 0.9])
def test_label_noise_flips_exactly_the_fraction(fraction):
    labels = torch.arange(1000) % 10
    noisy = noisy_labels(labels, fraction, 10, seed=0)
    assert int((noisy != labels).sum()) == round(fraction * 1000)
    assert noisy.dtype == labels.dtype and noisy.min() >= 0 and noisy.max() <= 9


def test_label_noise_is_symmetric_over_the_other_classes():
    labels = torch.zeros(5000, dtype=torch.long)
    noisy = noisy_labels(labels, 0.5, 10, seed=1)
    counts = torch.bincount(noisy[noisy != 0], minlength=10)[1:]
    assert counts.min() > 0.8 * 2500 / 9 and counts.max() < 1.2 * 2500 / 9


def test_label_noise_is_seeded():
    labels = torch.arange(500) % 7
    a, b = noisy_labels(labels, 0.3, 7, seed=3), noisy_labels(labels, 0.3, 7, seed=3)
    c = noisy_labels(labels, 0.3, 7, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(labels, torch.arange(500) % 7)  # the input is not modified


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_label_noise_out_of_range(fraction):
    with pytest.raises(ValueError, match="label noise"):
        noisy_labels(torch.zeros(10, dtype=torch.long), fraction, 10, seed=0)


def _splits(transfer_size=0, train_size=300):
    ds = make_synthetic(n_train=600, n_test=50, size=8, seed=0)
    return ds, make_splits(ds, val_size=100, split_seed=0, train_size=train_size,
                           transfer_size=transfer_size)


def test_label_noise_touches_only_the_training_labels():
    _, clean = _splits(transfer_size=100)
    noisy = with_label_noise(clean, 0.2, seed=0)
    assert int((noisy.train_y != clean.train_y).sum()) == round(0.2 * len(clean.train_y))
    assert torch.equal(noisy.train_x, clean.train_x)
    for name in ("val_y", "test_y", "transfer_y", "val_x", "test_x", "transfer_x"):
        assert torch.equal(getattr(noisy, name), getattr(clean, name)), name
    _, again = _splits(transfer_size=100)
    assert torch.equal(clean.train_y, again.train_y)  # the clean splits were not modified
    assert with_label_noise(clean, 0.0, seed=0) is clean


# ---------------------------------------------------------------- transfer split
def test_transfer_split_is_disjoint_from_teacher_data_and_keeps_it_unchanged():
    train, val = split_indices(1000, 100, seed=2, train_size=500)
    transfer = transfer_indices(1000, 100, seed=2, train_size=500, transfer_size=300)
    assert len(transfer) == 300 == len(set(transfer.tolist()))
    assert set(transfer.tolist()).isdisjoint(train.tolist())
    assert set(transfer.tolist()).isdisjoint(val.tolist())
    # the largest transfer split still leaves the teachers' images alone
    biggest = transfer_indices(1000, 100, seed=2, train_size=500, transfer_size=400)
    assert set(biggest.tolist()).isdisjoint(train.tolist() + val.tolist())
    assert set(transfer.tolist()) <= set(biggest.tolist())


@pytest.mark.parametrize("train_size,transfer_size,needle", [
    (0, 100, "train_size > 0"), (500, 401, "transfer_size"), (500, 0, "transfer_size")])
def test_transfer_split_bad_sizes(train_size, transfer_size, needle):
    with pytest.raises(ValueError, match=needle):
        transfer_indices(1000, 100, 0, train_size, transfer_size)


def test_splits_with_transfer_images_match_the_dataset():
    ds, plain = _splits()
    _, with_transfer = _splits(transfer_size=150)
    assert plain.transfer_x is None
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "mean", "std"):
        assert torch.equal(getattr(plain, name), getattr(with_transfer, name)), name
    idx = transfer_indices(600, 100, 0, 300, 150)
    assert torch.equal(with_transfer.transfer_x, ds.train_x[idx])
    assert torch.equal(with_transfer.transfer_y, ds.train_y[idx])
    student = as_transfer(with_transfer)
    assert torch.equal(student.train_x, with_transfer.transfer_x)
    assert torch.equal(student.val_x, with_transfer.val_x)
    with pytest.raises(ValueError, match="transfer"):
        as_transfer(plain)


# ---------------------------------------------------------------- teacher factors
def test_model_without_batch_norm_starts_as_identity_blocks():
    model = build_model("resnet8", 1, 10, norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    block = model.layers[0]  # same width, stride 1: identity shortcut
    x = torch.rand(2, 16, 8, 8)
    assert torch.allclose(block(x), torch.relu(x))
    assert torch.isfinite(model(torch.randn(4, 1, 28, 28))).all()
    with pytest.raises(ValueError, match="norm"):
        build_model("resnet8", 1, 10, norm="layer")


def test_teacher_weight_decay_and_norm_are_the_teachers_only():
    cfg = resolve("smoke", {"teacher_weight_decay": 0.0, "teacher_norm": "none"})
    assert study.teacher_recipe(cfg).weight_decay == 0.0
    assert study.student_recipe(cfg).weight_decay == cfg.weight_decay > 0
    assert study.teacher_recipe(resolve("smoke")).weight_decay == cfg.weight_decay


# ---------------------------------------------------------------- config and cells
@pytest.mark.parametrize("overrides,needle", [
    ({"label_noise": 1.0}, "label_noise"),
    ({"label_noise": -0.1}, "label_noise"),
    ({"train_size": 0, "transfer_size": 100}, "train_size > 0"),
    ({"train_size": 59000, "val_size": 2000}, "exceeds the 60000 training images of fmnist"),
    ({"train_size": 3000, "transfer_size": 56000}, "exceeds"),
    ({"teacher_norm": "layer"}, "teacher_norm"),
    ({"teacher_weight_decay": -0.5}, "teacher_weight_decay"),
    ({"regimes": {"nope": [1]}}, "regime factor"),
    ({"regimes": {"tau": []}}, "non-empty list"),
    ({"regimes": {"label_noise": [0.2, 1.2]}}, r"regimes\['label_noise'\] level 1.2"),
    ({"regimes": {"train_size": [70000]}}, r"regimes\['train_size'\] level 70000.*exceeds"),
    ({"regimes": {"teachers": [["resnet7"]]}}, r"regimes\['teachers'\]"),
    ({"regime_mode": "uncalibrated"}, "regime_mode"),
])
def test_regime_parameters_are_validated(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve("quick", overrides)


def test_regime_cells_change_one_key_each():
    cfg = resolve("regimes-quick")
    cells = regime_cells(cfg)
    assert cells[0][0] == "base" and cell_label("base", None) == "base"
    base = cells[0][2]
    assert base.modes == ["uncalibrated", "compose"] and not base.regimes
    for factor, level, cell in cells[1:]:
        changed = {k for k, v in dataclasses.asdict(cell).items() if v != getattr(base, k)}
        assert changed == {factor}, (factor, changed)
        assert getattr(cell, factor) == level
    # a level equal to the base value is the base cell itself
    again = regime_cells(resolve("regimes-quick", {"regimes": {"tau": [4.0, 2.0]}}))
    assert [(f, lv) for f, lv, _ in again] == [("base", None), ("tau", 2.0)]
    assert regime_cells(resolve("quick")) == []


def test_cells_share_teachers_only_where_their_training_is_the_same():
    cells = {cell_label(f, lv): c for f, lv, c in regime_cells(resolve("regimes-quick"))}
    ids = {name: {a: rid for rid, a, s in study.teacher_runs(c) if s == 0} for name, c in cells.items()}
    assert ids["tau=1"] == ids["base"] == ids["transfer_size=3000"]
    for name in ("label_noise=0.2", "train_size=1000", "teacher_weight_decay=0",
                 "teacher_norm=none"):
        assert set(ids[name].values()).isdisjoint(ids["base"].values()), name
    assert ids["teachers=resnet8/resnet8x2/resnet8x4"]["resnet8"] == ids["base"]["resnet8"]
    # students of the transfer cell learn from other images: their ids differ
    base_cfg, transfer_cfg = cells["base"], cells["transfer_size=3000"]
    assert study.student_run_config(base_cfg, 0, "baseline", None, None, study.engine_for(base_cfg)) != \
        study.student_run_config(transfer_cfg, 0, "baseline", None, None, study.engine_for(transfer_cfg))


def test_transfer_students_learn_on_transfer_images_from_teacher_logits_there(tmp_path, monkeypatch):
    cfg = resolve("smoke", {"train_size": 200, "transfer_size": 150, "teachers": ["resnet8"],
                            "seeds": [0], "teacher_epochs": 1, "student_epochs": 1,
                            "modes": ["uncalibrated"], "tau_grid": [],
                            "teacher_temperature_grid": [], "teacher_variants": [],
                            "workers": 0})  # in-process: the spy sees the trainings
    study.train_teachers(cfg, tmp_path, log=lambda m: None)
    study.calibrate_teachers(cfg, tmp_path, log=lambda m: None)
    seen = []
    real = students.train_group

    def spy(members, splits, recipe, seed, engine, *args, teacher_logits=None, **kw):
        seen.append((list(members), splits, teacher_logits))
        return real(members, splits, recipe, seed, engine, *args, teacher_logits=teacher_logits, **kw)

    monkeypatch.setattr(students, "train_group", spy)
    table = study.distill_students(cfg, tmp_path, log=lambda m: None)
    assert set(table["mode"]) == {"baseline", "uncalibrated"}
    splits = study.load_splits(cfg)
    rid = study.teacher_runs(cfg)[0][0]
    teacher = study.load_model(Study(tmp_path), rid, splits)
    expected = predict(study.engine_for(cfg).prepare(teacher), splits.transfer_x, splits,
                             study.engine_for(cfg), cfg.eval_batch_size)
    for names, used, logits in seen:
        assert torch.equal(used.train_x, splits.transfer_x) and torch.equal(used.train_y, splits.transfer_y)
        if "uncalibrated" in names:
            assert torch.equal(logits, expected)
            train_logits = load_arrays(Study(tmp_path).run_dir(rid) / "logits.npz")["train_logits"]
            assert logits.shape[0] == 150 != train_logits.shape[0]


# ---------------------------------------------------------------- analysis
def _table(effect_by_cell: dict[str, float], seeds=(0, 1, 2), teachers=(1e5, 2e5, 4e5)):
    rng = np.random.default_rng(0)
    rows = []
    for order, (cell, effect) in enumerate(effect_by_cell.items()):
        factor = cell.split("=")[0]
        for seed in seeds:
            rows.append({"order": order, "factor": factor, "level": cell, "cell": cell,
                         "role": "student", "mode": "baseline", "seed": seed, "teacher": "",
                         "teacher_params": np.nan, "acc": 0.80})
            for i, params in enumerate(teachers):
                acc = 0.80 + 0.01 * i + rng.normal(0, 0.001)
                rows.append({"order": order, "factor": factor, "level": cell, "cell": cell,
                             "role": "teacher", "mode": "teacher", "seed": seed, "teacher": "",
                             "arch": f"t{i}", "params": params, "acc": 0.9, "ece": 0.01 * (i + 1),
                             "temperature": 1 + i})
                for mode, delta in (("uncalibrated", 0.0), ("compose", effect)):
                    rows.append({"order": order, "factor": factor, "level": cell, "cell": cell,
                                 "role": "student", "mode": mode, "seed": seed, "teacher": f"t{i}",
                                 "teacher_params": params,
                                 "acc": acc + delta + rng.normal(0, 0.0005)})
    return pd.DataFrame(rows)


def test_regime_effects_recover_the_paired_effect_and_its_verdict():
    effects = regime_effects(_table({"base": 0.0, "tau=1": 0.02, "tau=8": -0.02}), "compose")
    e = effects.set_index("cell")
    assert e.loc["tau=1", "effect"] == pytest.approx(2.0, abs=0.1)
    assert e.loc["tau=8", "effect"] == pytest.approx(-2.0, abs=0.1)
    assert e.loc["tau=1", "verdict"] == "supported" and e.loc["tau=8", "verdict"] == "contradicted"
    assert e.loc["base", "verdict"] == "equivalent"  # 3 seeds, noise 0.05 points: inside +-0.5
    assert e.loc["base", "effect_low"] < 0 < e.loc["base", "effect_high"]
    assert (e["pairs"] == 9).all()
    assert e.loc["base", "size_ece"] == pytest.approx(1.0) and e.loc["base", "size_uncal"] > 0.9
    assert e.loc["base", "kd_gain"] == pytest.approx(1.0, abs=0.1)
    # 3 teachers per cell: 6 orderings, no p below 1/3, so no size verdict can be decided
    assert e.loc["base", "p_floor"] == pytest.approx(1 / 3)
    assert (e["size_ece_verdict"] == "underpowered").all()
    text = regime_summary(effects, "compose")
    helps = next(line for line in text.splitlines() if "helps" in line)
    hurts = next(line for line in text.splitlines() if "hurts" in line)
    assert "tau=1" in helps and "tau=8" not in helps and "base" not in helps
    assert "tau=8" in hurts
    assert "base" in next(line for line in text.splitlines() if "equivalent" in line)
    assert "cannot test a size effect" in text


def test_regime_effect_uses_the_seed_as_unit():
    """A per-seed shift shared by a seed's teachers must not shrink the interval: with 2 seeds
    the interval is a t-interval with 1 degree of freedom over 2 per-seed means."""
    table = _table({"base": 0.0}, seeds=(0, 1))
    shift = table["seed"].map({0: 0.01, 1: -0.01}) * (table["mode"] == "compose")
    e = regime_effects(table.assign(acc=table["acc"] + shift), "compose").iloc[0]
    assert e["effect_high"] - e["effect_low"] > 20  # points: t(1) = 12.7 times a 1-point spread
    assert e["verdict"] == "underpowered" and e["pairs"] == 6


@pytest.mark.slow
def test_regimes_notebook_runs_after_the_study_when_the_profile_asks(smoke_copy):
    grid = '{"tau": [2.0], "label_noise": [0.25], "teacher_norm": ["none"]}'
    proc = kdcal("run", "--profile", "smoke", "--out", str(smoke_copy), "--set", f"regimes={grid}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "05_regimes.ipynb done" in proc.stdout
    effects = pd.read_csv(smoke_copy / "regimes.csv")
    assert effects["cell"].tolist() == ["base", "tau=2", "label_noise=0.25", "teacher_norm=none"]
    assert (effects["pairs"] == 4).all()  # 2 teachers x 2 seeds in every cell
    assert (smoke_copy / "figures" / "regimes.png").exists()
    summary = (smoke_copy / "regimes_summary.md").read_text()
    assert "in 4 regime cells" in summary
    assert "2 teachers per cell" in summary and "nan" not in summary
    table = pd.read_csv(smoke_copy / "regimes_results.csv")
    noisy = table[(table["cell"] == "label_noise=0.25") & (table["role"] == "teacher")]
    assert len(noisy) == 4 and set(noisy["run_id"]).isdisjoint(
        table.loc[(table["cell"] == "base") & (table["role"] == "teacher"), "run_id"])
    assert "When does calibration matter" in (smoke_copy / "report.html").read_text()


def test_students_of_several_tau_cells_in_one_loop_stay_distinct(tmp_path, monkeypatch):
    """The tau cells reuse the base teachers, so their students share one loop per teacher and
    seed: each must train with its own tau and be saved as its own run."""
    from kdcal import regimes

    cfg = resolve("smoke", {"teachers": ["resnet8"], "seeds": [0], "teacher_epochs": 1,
                            "student_epochs": 1, "modes": ["uncalibrated"], "tau_grid": [],
                            "teacher_temperature_grid": [], "teacher_variants": [],
                            "regimes": {"tau": [1.0, 8.0]}, "workers": 0})  # in-process: spied
    seen = []
    real = students.train_group

    def spy(members, *args, **kw):
        seen.append({name: m.loss for name, m in members.items()})
        return real(members, *args, **kw)

    monkeypatch.setattr(students, "train_group", spy)
    table = regimes.run_regimes(cfg, tmp_path, log=lambda m: None)
    kd_groups = [g for g in seen if len(g) > 1]
    assert len(kd_groups) == 1 and len(kd_groups[0]) == 6  # 2 modes x tau 4 (base), 1 and 8
    kd = table[table["mode"] == "uncalibrated"].set_index("cell")
    assert kd.loc["tau=1", "kd_tau"] == 1.0 and kd.loc["tau=8", "kd_tau"] == 8.0
    assert len(set(kd["run_id"])) == 3
    weights = [safe_torch_load(Study(tmp_path).run_dir(rid) / "model.pt")["model"]
               for rid in kd["run_id"]]
    assert not torch.equal(weights[1]["fc.weight"], weights[2]["fc.weight"])
    assert not torch.equal(weights[0]["fc.weight"], weights[1]["fc.weight"])
