"""Packed student groups: one grouped network trains the same models as separate loops."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from kdcal.distill import make_kd_loss, make_loss
from kdcal.models import build_model
from kdcal.packed import PackedModels
from kdcal.train import Member, Recipe, make_engine, predict, train_group
from conftest import assert_close_state, tiny_splits

RECIPE = Recipe(epochs=2, batch_size=64, lr=0.05)
# In float64 the grouped and plain kernels' rounding (about 1e-16, grown by a few SGD steps
# through batch norm) stays far below this; a wrong gradient, stat or update would not. (In
# float32 the same few steps grow the rounding to about 1e-4.)
TOL = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture
def splits():
    """Float64 inputs (the float32 images meet float64 mean and std), 2 batches per epoch."""
    s = tiny_splits(n_train=128)
    return replace(s, mean=s.mean.double(), std=s.std.double())


def _engine(pack: str):
    return make_engine("cpu", "off", pack_students=pack)


def _model(seed=0, arch="resnet8"):
    torch.manual_seed(seed)
    return build_model(arch, in_channels=1, num_classes=10).double()


def _members(base, n_train):
    """The losses of a real group: baseline CE, KD at two taus, a swept teacher temperature,
    and a member with its own (calibrated) targets."""
    own = torch.randn(n_train, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return {"baseline": Member(copy.deepcopy(base), make_loss("baseline", 4.0, 0.9)),
            "kd": Member(copy.deepcopy(base), make_loss("uncalibrated", 4.0, 0.9), True),
            "tau2": Member(copy.deepcopy(base), make_kd_loss(2.0, 0.9), True),
            "temp2": Member(copy.deepcopy(base), make_kd_loss(4.0, 0.9, 2.0), True),
            "own": Member(copy.deepcopy(base), make_loss("uncalibrated", 4.0, 0.9), True,
                          teacher_logits=own)}


def _teacher_logits(splits):
    return torch.randn(len(splits.train_y), 10, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def _assert_close_state(a, b, **tol):
    assert_close_state(a, b, **(tol or TOL))


def _run(splits, pack, members, recipe=RECIPE, **kw):
    kw.setdefault("log", lambda line: None)
    return train_group(members, splits, recipe, 0, _engine(pack), **kw)


def test_pack_roundtrip_is_exact():
    models = [_model(s) for s in range(3)]
    packed = PackedModels(models)
    for k, m in enumerate(models):
        for key, t in m.state_dict().items():
            assert torch.equal(packed.member_state(k)[key], t), key
    with pytest.raises(ValueError, match="architecture"):
        PackedModels([_model(0), _model(0, "resnet14")])


def test_packed_forward_equals_separate_forwards(splits):
    models = [_model(s) for s in range(3)]
    net = PackedModels(models).net
    x = splits.normalize(splits.train_x[:32])
    for mode in ("train", "eval"):
        for m in models + [net]:
            getattr(m, mode)()
        out = net(x)
        assert out.shape == (32, 3, 10)
        for k, m in enumerate(models):
            torch.testing.assert_close(out[:, k], m(x), rtol=1e-12, atol=1e-12)


def test_packed_group_trains_the_separate_models(splits):
    """Same weights, running stats and logits as separate training, each member with its own loss."""
    base = _model(0)
    t = _teacher_logits(splits)
    sep = _run(splits, "off", _members(base, len(splits.train_y)), teacher_logits=t)
    pk = _run(splits, "on", _members(base, len(splits.train_y)), teacher_logits=t)
    assert pk["failed"] == {} and list(pk["models"]) == list(sep["models"])
    engine = _engine("off")
    for n in sep["models"]:
        _assert_close_state(pk["models"][n], sep["models"][n])
        torch.testing.assert_close(predict(pk["models"][n], splits.test_x, splits, engine),
                                   predict(sep["models"][n], splits.test_x, splits, engine),
                                   rtol=1e-6, atol=1e-6)  # float32 logits
        for a, b in zip(pk["history"][n], sep["history"][n]):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
            assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
    # the members' losses are their own: the packed models differ as the separate ones do
    w = {n: m.fc.weight.detach() for n, m in pk["models"].items()}
    for a in w:
        for b in w:
            if a < b:
                assert (w[a] - w[b]).abs().max() > 1e-5, f"{a} and {b} trained alike"
    assert pk["history"]["kd"][0]["loss"] != pytest.approx(pk["history"]["tau2"][0]["loss"], rel=1e-3)


def test_packed_with_augmented_teacher_forward_and_mixup(splits):
    base, teacher = _model(0), _model(9)
    recipe = replace(RECIPE, epochs=1, augment=True, mixup_alpha=0.2)

    def members():
        return {"baseline": Member(copy.deepcopy(base), make_loss("baseline", 4.0, 0.9)),
                "kd": Member(copy.deepcopy(base), make_loss("uncalibrated", 4.0, 0.9), True)}

    sep = _run(splits, "off", members(), recipe, teacher=copy.deepcopy(teacher))
    pk = _run(splits, "on", members(), recipe, teacher=copy.deepcopy(teacher))
    for n in sep["models"]:
        _assert_close_state(pk["models"][n], sep["models"][n])


def test_packed_nan_member_fails_alone(splits):
    def nan_loss(s, y, t=None):
        return F.cross_entropy(s, y) * float("nan")

    base = _model(0)
    members = {"good": Member(copy.deepcopy(base), make_loss("baseline", 4.0, 0.9)),
               "diverged": Member(copy.deepcopy(base), nan_loss),
               "good2": Member(copy.deepcopy(base), make_kd_loss(4.0, 0.9), True)}
    lines = []
    out = train_group(members, splits, RECIPE, 7, _engine("on"), teacher_logits=_teacher_logits(splits),
                      log=lines.append)
    assert set(out["failed"]) == {"diverged"} and "epoch 1" in out["failed"]["diverged"]
    assert any("FAILED" in line for line in lines)
    assert out["history"]["diverged"] == [] and len(out["history"]["good"]) == 2
    alone = train_group({"good": Member(copy.deepcopy(base), make_loss("baseline", 4.0, 0.9))},
                        splits, RECIPE, 7, _engine("off"), log=lambda line: None)
    _assert_close_state(out["models"]["good"], alone["models"]["good"])
    assert all(torch.isfinite(p).all() for p in out["models"]["good2"].parameters())


def test_packed_resume_matches_straight_run_and_checkpoints_cross_settings(splits, tmp_path):
    base = _model(0)
    t = _teacher_logits(splits)
    n = len(splits.train_y)

    def interrupted(pack, ckpt):
        def log(line):
            if "epoch 2/" in line:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            _run(splits, pack, _members(base, n), teacher_logits=t, checkpoint=ckpt, log=log)
        assert ckpt.exists()

    straight = _run(splits, "on", _members(base, n), teacher_logits=t)
    interrupted("on", tmp_path / "a.pt")
    lines = []
    resumed = _run(splits, "on", _members(_model(5), n), teacher_logits=t,
                   checkpoint=tmp_path / "a.pt", log=lines.append)
    assert any("resumed from epoch 1" in line for line in lines)
    for name in straight["models"]:  # same setting: bit for bit
        for key, v in straight["models"][name].state_dict().items():
            assert torch.equal(v, resumed["models"][name].state_dict()[key]), (name, key)
    # a packed run's checkpoint resumes a separate run, and the reverse (momentum included)
    interrupted("on", tmp_path / "b.pt")
    cross = _run(splits, "off", _members(_model(5), n), teacher_logits=t, checkpoint=tmp_path / "b.pt")
    interrupted("off", tmp_path / "c.pt")
    back = _run(splits, "on", _members(_model(5), n), teacher_logits=t, checkpoint=tmp_path / "c.pt")
    for name in straight["models"]:
        _assert_close_state(cross["models"][name], straight["models"][name])
        _assert_close_state(back["models"][name], straight["models"][name])


def test_pack_setting_is_checked():
    assert not _engine("auto").packs(5)  # CPU: the separate loops measured faster
    assert _engine("on").packs(2) and not _engine("on").packs(1) and not _engine("off").packs(5)
    with pytest.raises(ValueError, match="pack_students"):
        make_engine("cpu", "off", pack_students="yes")
