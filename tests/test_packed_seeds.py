"""Packed teachers across seeds: one grouped program trains what separate trainings train, each
member on its own split, labels, batch order and augmentation."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from kdcal.data import (apply_augment, augment_batch, augment_draws, make_splits, make_synthetic,
                        with_label_noise)
from kdcal.distill import make_loss
from kdcal.models import build_model
from kdcal.packed import PackedModels
from kdcal.packed_seeds import SeedMember, train_packed_seeds
from kdcal.train import Member, Recipe, make_engine, predict, train_group
from conftest import assert_close_state

# float64: grouped and plain kernels' rounding (about 1e-16, grown by a few SGD steps through
# batch norm) stays far below this; a wrong batch, label, stat or update would not
TOL = dict(rtol=1e-9, atol=1e-10)
RECIPE = Recipe(epochs=2, batch_size=32, lr=0.05, augment=True)  # 2 batches an epoch
SEEDS = (3, 11, 20)
ENGINE = make_engine("cpu", "off", pack_students="off")
LOSS = make_loss("baseline", 4.0, 0.9)


def _splits(split_seed: int, noise: float = 0.0):
    """Each seed its own split of one data set (split_per_seed), in float64, 64 images of 8x8."""
    ds = make_synthetic(n_train=64 + 40, n_test=32, size=8, seed=0)
    s = make_splits(ds, val_size=40, split_seed=split_seed)
    s = replace(s, mean=s.mean.double(), std=s.std.double())
    return with_label_noise(s, noise, split_seed)


def _data():
    return [_splits(0), _splits(1, noise=0.3), _splits(2)]


def _model(seed: int, arch: str = "resnet8"):
    torch.manual_seed(seed)
    return build_model(arch, in_channels=1, num_classes=10).double()


def _members(data, checkpoints=(None, None, None), models=None):
    models = models or [_model(s) for s in SEEDS]
    return [SeedMember("resnet8", m, LOSS, d, s, c, f"resnet8 seed {s}")
            for m, d, s, c in zip(models, data, SEEDS, checkpoints)]


def _separate(data, recipe=RECIPE, seeds=SEEDS, **kw):
    """Each member alone, as the study's separate teacher task trains it."""
    kw.setdefault("log", lambda line: None)
    return [train_group({"resnet8": Member(_model(s), LOSS)}, d, recipe, s, ENGINE, **kw)
            for d, s in zip(data, seeds)]


def _assert_close_state(a, b, **tol):
    assert_close_state(a, b, **(tol or TOL))


def test_augment_draws_then_apply_is_augment_batch():
    x = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8)
    a = augment_batch(x, 2, torch.Generator().manual_seed(5))
    b = apply_augment(x, 2, *augment_draws(8, 2, torch.Generator().manual_seed(5)))
    assert torch.equal(a, b)


def test_own_input_packing_reads_each_members_channels():
    models = [_model(s) for s in SEEDS]
    net = PackedModels(models, shared_input=False).net
    xs = [torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
          for s in range(3)]
    out = net.eval()(torch.cat(xs, dim=1))
    assert out.shape == (4, 3, 10)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[:, k], m.eval()(xs[k]), rtol=1e-12, atol=1e-12)


def test_packed_seeds_train_the_separate_models():
    """Same weights, running stats, logits and histories as each member trained alone."""
    data = _data()
    sep = _separate(data)
    pk = train_packed_seeds(_members(data), RECIPE, ENGINE, log=lambda line: None)
    for d, s, p in zip(data, sep, pk):
        assert p["failed"] is None and s["failed"] == {}
        _assert_close_state(p["model"], s["models"]["resnet8"])
        torch.testing.assert_close(predict(p["model"], d.test_x, d, ENGINE),
                                   predict(s["models"]["resnet8"], d.test_x, d, ENGINE),
                                   rtol=1e-6, atol=1e-6)  # float32 logits
        assert len(p["history"]) == RECIPE.epochs
        for a, b in zip(p["history"], s["history"]["resnet8"]):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
            assert a["train_acc"] == b["train_acc"] and a["lr"] == b["lr"]
    # each member's own data and seed matter: trained on another's, it is another model
    swapped = _separate([data[1], data[0], data[2]])
    assert (swapped[0]["models"]["resnet8"].fc.weight - pk[0]["model"].fc.weight).abs().max() > 1e-4


def _stop_at(text: str):
    """A log that interrupts the training at the first line holding ``text``."""
    def log(line):
        if text in line:
            raise KeyboardInterrupt
    return log


def test_packed_seeds_resume_bit_for_bit_and_across_settings(tmp_path):
    data = _data()
    straight = train_packed_seeds(_members(data), RECIPE, ENGINE, log=lambda line: None)
    ckpts = [tmp_path / f"a{i}.pt" for i in range(3)]
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2: every checkpoint at epoch 1
        train_packed_seeds(_members(data, ckpts), RECIPE, ENGINE, log=_stop_at("epoch 2/"))
    lines = []
    resumed = train_packed_seeds(_members(data, ckpts, [_model(99) for _ in SEEDS]), RECIPE,
                                 ENGINE, log=lines.append)
    assert sum("resumed from epoch 1" in line for line in lines) == 3
    for a, b in zip(straight, resumed):  # same setting: bit for bit
        for key, v in a["model"].state_dict().items():
            assert torch.equal(v, b["model"].state_dict()[key]), key
        assert a["history"][0]["loss"] == b["history"][0]["loss"]
    # member 0 resumes a separate run's checkpoint at epoch 1 while the others start afresh (two
    # cohorts); and a packed run's checkpoint resumes a separate run
    mixed = [tmp_path / "sep.pt", tmp_path / "b1.pt", tmp_path / "b2.pt"]
    with pytest.raises(KeyboardInterrupt):
        _separate(data[:1], seeds=SEEDS[:1], checkpoint=mixed[0], log=_stop_at("epoch 2/"))
    cross = train_packed_seeds(_members(data, mixed), RECIPE, ENGINE, log=lambda line: None)
    fresh = [tmp_path / f"c{i}.pt" for i in range(3)]
    with pytest.raises(KeyboardInterrupt):
        train_packed_seeds(_members(data, fresh), RECIPE, ENGINE, log=_stop_at("epoch 2/"))
    back = _separate(data[1:2], seeds=SEEDS[1:2], checkpoint=fresh[1])
    for a, b in zip(straight, cross):
        _assert_close_state(a["model"], b["model"])
    _assert_close_state(back[0]["models"]["resnet8"], straight[1]["model"])


def test_packed_seeds_diverged_member_fails_alone():
    data = _data()

    def nan_loss(s, y, t=None):
        return F.cross_entropy(s, y) * float("nan")

    members = _members(data)
    members[1] = replace(members[1], loss=nan_loss)
    lines = []
    out = train_packed_seeds(members, RECIPE, ENGINE, log=lines.append)
    assert out[1]["failed"] == "resnet8 (seed 11): loss became nan at epoch 1"
    assert any("FAILED" in line for line in lines) and out[1]["history"] == []
    sep = _separate([data[0], data[2]], seeds=(SEEDS[0], SEEDS[2]))
    _assert_close_state(out[0]["model"], sep[0]["models"]["resnet8"])
    _assert_close_state(out[2]["model"], sep[1]["models"]["resnet8"])


def test_packed_seeds_refuse_what_they_cannot_train():
    data = _data()
    with pytest.raises(ValueError, match="mixup"):
        train_packed_seeds(_members(data), replace(RECIPE, mixup_alpha=0.2), ENGINE)
    small = replace(data[2], train_x=data[2].train_x[:32], train_y=data[2].train_y[:32])
    with pytest.raises(ValueError, match="resnet8 seed 20 has"):
        train_packed_seeds(_members([data[0], data[1], small]), RECIPE, ENGINE)
    with pytest.raises(ValueError, match="no members"):
        train_packed_seeds([], RECIPE, ENGINE)


# ---------------------------------------------------------------- the study's teacher stage
def _cfg(pack: str, **kw):
    from kdcal.config import resolve

    return resolve("smoke", dict(dict(synthetic_train=160, synthetic_test=64, synthetic_size=8,
                                      val_size=64, teachers=["resnet8", "resnet14"], seeds=[0, 1],
                                      teacher_epochs=1, batch_size=48, augment=True,
                                      label_noise=0.2, amp="off", workers=0,
                                      modes=["uncalibrated"], pack_teachers=pack), **kw))


def test_pack_teachers_setting_plans_one_task_per_architecture():
    from kdcal.config import ConfigError
    from kdcal.study import teacher_runs, teacher_tasks
    from kdcal.train import packs

    packed, apart = teacher_tasks(_cfg("on")), teacher_tasks(_cfg("auto"))
    assert [t.label for t in packed] == ["teachers resnet8 seeds 0,1 (packed)",
                                         "teachers resnet14 seeds 0,1 (packed)"]
    assert len(apart) == 4 and all(len(t.runs) == 1 for t in apart)  # auto on a CPU: apart
    assert sorted(r for t in packed for r in t.runs) == sorted(r for t in apart for r in t.runs)
    assert packed[0].checkpoints == [f"runs/{r}/train.pt" for r in packed[0].runs]
    # never part of run ids: the same teachers whichever way they train
    assert teacher_runs(_cfg("on")) == teacher_runs(_cfg("off"))
    assert packs("auto", torch.device("cuda"), 3, "pack_teachers")
    assert not packs("auto", torch.device("cpu"), 3) and not packs("on", torch.device("cpu"), 1)
    with pytest.raises(ConfigError, match="pack_teachers"):
        _cfg("yes")


def test_packed_teacher_stage_writes_the_runs_separate_training_writes(tmp_path):
    """Same run ids, and metrics and logits equal up to float32 rounding, with pack_teachers on."""
    from kdcal.store import Study, load_arrays, read_json
    from kdcal.study import teacher_runs, train_teachers

    lines = []
    on = train_teachers(_cfg("on", teachers=["resnet8"]), tmp_path / "on", log=lines.append)
    off = train_teachers(_cfg("off", teachers=["resnet8"]), tmp_path / "off", log=lambda line: None)
    assert any("teachers resnet8 seeds 0,1" in line for line in lines)
    assert list(on["run_id"]) == list(off["run_id"]) and len(on) == 2
    for rid, _, seed in teacher_runs(_cfg("on", teachers=["resnet8"])):
        a, b = Study(tmp_path / "on").run_dir(rid), Study(tmp_path / "off").run_dir(rid)
        assert read_json(a / "config.json") == read_json(b / "config.json")
        assert not (a / "train.pt").exists()
        za, zb = load_arrays(a / "logits.npz"), load_arrays(b / "logits.npz")
        for key in ("train_logits", "test_logits", "val_logits"):
            torch.testing.assert_close(torch.from_numpy(za[key]), torch.from_numpy(zb[key]),
                                       rtol=1e-3, atol=1e-3, msg=f"{key} of seed {seed}")
        ma, mb = read_json(a / "metrics.json"), read_json(b / "metrics.json")
        assert ma["history"][0]["loss"] == pytest.approx(mb["history"][0]["loss"], rel=1e-4)
        assert ma["steps"] == mb["steps"] == 2  # 1 epoch of 2 batches of 48 (96 images)
    # a second run finds them done
    again = []
    train_teachers(_cfg("on", teachers=["resnet8"]), tmp_path / "on", log=again.append)
    assert sum("done, skipped" in line for line in again) == 2
