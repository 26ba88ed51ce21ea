"""The training loop: reproducibility, paired members, resume, divergence, predict."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from kdcal.distill import make_loss
from kdcal.models import build_model
from kdcal.train import Member, Recipe, make_engine, predict, train_group

RECIPE = dict(batch_size=64, lr=0.05)


def _ce(s, y, t=None):
    return F.cross_entropy(s, y)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("resnet8", in_channels=1, num_classes=10)


def _train(splits, engine, epochs=2, seed=0, init_seed=0, **kw):
    members = {"m": Member(_model(init_seed), _ce)}
    kw.setdefault("log", lambda line: None)
    out = train_group(members, splits, Recipe(epochs=epochs, **RECIPE), seed, engine, **kw)
    return out


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def _history_core(h):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in h]


def test_engine_cpu_off():
    engine = make_engine("cpu", "off")
    assert engine.device.type == "cpu" and engine.amp_dtype is None
    assert make_engine("cpu", "bf16").amp_dtype == torch.bfloat16


def test_reproducible(splits, cpu_engine):
    a = _train(splits, cpu_engine)
    b = _train(splits, cpu_engine)
    _assert_same_state(a["models"]["m"], b["models"]["m"])
    assert _history_core(a["history"]["m"]) == _history_core(b["history"]["m"])
    assert [e["epoch"] for e in a["history"]["m"]] == [1, 2]
    assert a["failed"] == {}
    # training moved the weights, and another seed gives other weights
    fresh = _model(0)
    assert not torch.equal(fresh.fc.weight, a["models"]["m"].fc.weight.detach())
    c = _train(splits, cpu_engine, seed=1)
    assert not torch.equal(a["models"]["m"].fc.weight, c["models"]["m"].fc.weight)


def test_reproducible_with_augmentation(splits, cpu_engine):
    recipe = Recipe(epochs=1, augment=True, **RECIPE)
    outs = [train_group({"m": Member(_model(0), _ce)}, splits, recipe, 0, cpu_engine,
                        log=lambda line: None) for _ in range(2)]
    _assert_same_state(outs[0]["models"]["m"], outs[1]["models"]["m"])


def test_paired_members_train_identically(splits, cpu_engine):
    base = _model(0)
    members = {"a": Member(copy.deepcopy(base), _ce),
               "b": Member(copy.deepcopy(base), make_loss("baseline", 4.0, 0.9))}
    out = train_group(members, splits, Recipe(epochs=2, **RECIPE), 0, cpu_engine,
                      log=lambda line: None)
    _assert_same_state(out["models"]["a"], out["models"]["b"])
    # and each equals the same model trained alone
    alone = _train(splits, cpu_engine)
    _assert_same_state(out["models"]["a"], alone["models"]["m"])


def test_distillation_members_differ_from_baseline(splits, cpu_engine):
    base = _model(0)
    teacher_logits = torch.randn(len(splits.train_y), 10, generator=torch.Generator().manual_seed(0))
    members = {"baseline": Member(copy.deepcopy(base), make_loss("baseline", 4.0, 0.9)),
               "kd": Member(copy.deepcopy(base), make_loss("uncalibrated", 4.0, 0.9), True)}
    out = train_group(members, splits, Recipe(epochs=1, **RECIPE), 0, cpu_engine,
                      teacher_logits=teacher_logits, log=lambda line: None)
    assert not torch.equal(out["models"]["baseline"].fc.weight, out["models"]["kd"].fc.weight)
    with pytest.raises(ValueError, match="teacher"):
        train_group({"kd": Member(_model(0), make_loss("compose", 4.0, 0.9, 2.0), True)}, splits,
                    Recipe(epochs=1, **RECIPE), 0, cpu_engine, log=lambda line: None)


def test_resume_after_interruption_matches_straight_run(splits, cpu_engine, tmp_path):
    ckpt = tmp_path / "train.pt"
    lines = []

    def interrupting_log(line):
        lines.append(line)
        # the epoch-1 checkpoint is written after epoch 1's lines; stop during epoch 2's
        if "epoch 2/" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(splits, cpu_engine, checkpoint=ckpt, log=interrupting_log)
    assert ckpt.exists()
    assert any("epoch 1/2" in line for line in lines)

    resumed_lines = []
    resumed = _train(splits, cpu_engine, checkpoint=ckpt, init_seed=123, log=resumed_lines.append)
    assert any("resumed from epoch 1" in line for line in resumed_lines)
    assert not any("epoch 1/2" in line for line in resumed_lines)

    straight = _train(splits, cpu_engine)
    _assert_same_state(resumed["models"]["m"], straight["models"]["m"])
    assert _history_core(resumed["history"]["m"]) == _history_core(straight["history"]["m"])


def test_finished_checkpoint_is_not_retrained(splits, cpu_engine, tmp_path):
    ckpt = tmp_path / "train.pt"
    first = _train(splits, cpu_engine, epochs=1, checkpoint=ckpt)
    lines = []
    again = _train(splits, cpu_engine, epochs=1, checkpoint=ckpt, init_seed=5, log=lines.append)
    assert not any("epoch 1/1" in line for line in lines)
    _assert_same_state(first["models"]["m"], again["models"]["m"])


def test_nan_loss_fails_only_that_member(splits, cpu_engine):
    def nan_loss(s, y, t=None):
        return F.cross_entropy(s, y) * float("nan")

    base = _model(0)
    members = {"good": Member(copy.deepcopy(base), _ce),
               "diverged": Member(copy.deepcopy(base), nan_loss)}
    lines = []
    out = train_group(members, splits, Recipe(epochs=2, **RECIPE), 7, cpu_engine, log=lines.append)
    assert set(out["failed"]) == {"diverged"}
    msg = out["failed"]["diverged"]
    assert "diverged" in msg and "seed 7" in msg and "epoch 1" in msg
    assert any("FAILED" in line and "diverged" in line for line in lines)
    assert out["history"]["diverged"] == []
    assert [e["epoch"] for e in out["history"]["good"]] == [1, 2]
    # the healthy member is unaffected by its diverged neighbour
    alone = train_group({"good": Member(copy.deepcopy(base), _ce)}, splits,
                        Recipe(epochs=2, **RECIPE), 7, cpu_engine, log=lambda line: None)
    _assert_same_state(out["models"]["good"], alone["models"]["good"])


def test_all_members_failing_stops_early(splits, cpu_engine):
    def nan_loss(s, y, t=None):
        return F.cross_entropy(s, y) * float("nan")

    out = train_group({"x": Member(_model(0), nan_loss)}, splits, Recipe(epochs=3, **RECIPE), 0,
                      cpu_engine, log=lambda line: None)
    assert set(out["failed"]) == {"x"} and "epoch 1" in out["failed"]["x"]


def test_predict_float32_logits(splits, cpu_engine):
    model = _model(0)
    model = cpu_engine.prepare(model)
    logits = predict(model, splits.test_x, splits, cpu_engine, batch_size=10)
    assert logits.dtype == torch.float32 and logits.shape == (len(splits.test_y), 10)
    assert logits.device.type == "cpu" and torch.isfinite(logits).all()
    assert not model.training
    again = predict(model, splits.test_x, splits, cpu_engine, batch_size=1000)
    assert torch.allclose(logits, again, atol=1e-5)


def test_predict_bf16_engine_returns_float32(splits):
    engine = make_engine("cpu", "bf16")
    model = engine.prepare(_model(0))
    logits = predict(model, splits.test_x[:8], splits, engine)
    assert logits.dtype == torch.float32 and logits.shape == (8, 10)


def test_cosine_schedule():
    r = Recipe(epochs=2, lr=0.1)
    assert r.lr_at(0, 0, 4) == pytest.approx(0.1)
    assert r.lr_at(1, 0, 4) == pytest.approx(0.05)
    assert r.lr_at(1, 3, 4) < r.lr_at(1, 2, 4)
    step = Recipe(epochs=10, lr=0.1, schedule="step", milestones=[3, 6], gamma=0.1)
    assert [step.lr_at(e, 0, 4) for e in (0, 3, 6)] == pytest.approx([0.1, 0.01, 0.001])


def test_tiny_splits_shapes(splits):
    s = splits
    assert len(s.train_y) == 256 and len(s.val_y) == 64
    assert s.train_x.shape[1:] == (1, 16, 16) and s.train_x.dtype == torch.uint8


def test_member_own_teacher_targets_replace_the_shared_ones(splits, cpu_engine):
    """A calibrated-target student reads its own teacher rows; equal rows give equal training."""
    n = len(splits.train_y)
    shared = torch.randn(n, 10, generator=torch.Generator().manual_seed(1))
    other = torch.randn(n, 10, generator=torch.Generator().manual_seed(2))
    loss = make_loss("uncalibrated", tau=4.0, alpha=0.9)
    members = {"shared": Member(_model(), loss, True),
               "same_rows": Member(_model(), loss, True, teacher_logits=shared.clone()),
               "other_rows": Member(_model(), loss, True, teacher_logits=other)}
    out = train_group(members, splits, Recipe(epochs=1, batch_size=64), 0, cpu_engine,
                      teacher_logits=shared, log=lambda s: None)
    _assert_same_state(out["models"]["shared"], out["models"]["same_rows"])
    a = out["models"]["shared"].state_dict()["fc.weight"]
    b = out["models"]["other_rows"].state_dict()["fc.weight"]
    assert not torch.equal(a, b)


def test_own_targets_refuse_augmented_inputs(splits, cpu_engine):
    n = len(splits.train_y)
    m = {"s": Member(_model(), make_loss("uncalibrated", 4.0, 0.9), True,
                     teacher_logits=torch.zeros(n, 10))}
    with pytest.raises(ValueError, match="augment"):
        train_group(m, splits, Recipe(epochs=1, batch_size=64, augment=True), 0, cpu_engine,
                    teacher=_model(), log=lambda s: None)


def test_early_stop_is_the_full_runs_trajectory_cut_short(splits, cpu_engine):
    """stop_epoch keeps the full run's schedule: epoch k of both runs is the same model."""
    from dataclasses import replace

    full = Recipe(epochs=3, batch_size=64)
    histories = []
    for recipe in (full, replace(full, stop_epoch=1)):
        out = train_group({"m": Member(_model(), _ce)}, splits, recipe, 0, cpu_engine,
                          log=lambda s: None)
        histories.append(out["history"]["m"])
    assert len(histories[1]) == 1
    assert _history_core(histories[1]) == _history_core(histories[0][:1])


def test_mixup_is_seeded_and_changes_training(splits, cpu_engine):
    def run(alpha):
        out = train_group({"m": Member(_model(), _ce)}, splits,
                          Recipe(epochs=1, batch_size=64, mixup_alpha=alpha), 0, cpu_engine,
                          log=lambda s: None)
        return out["models"]["m"]

    a, b, plain = run(0.2), run(0.2), run(0.0)
    _assert_same_state(a, b)
    assert not torch.equal(a.state_dict()["fc.weight"], plain.state_dict()["fc.weight"])


@pytest.mark.parametrize("pack", ["off", "on"])
def test_compile_mode_reaches_torch_compile(splits, monkeypatch, pack):
    """compile_mode (reduce-overhead: CUDA graphs) is what torch.compile gets, packed or not; an
    unknown mode fails before any work, naming it."""
    import kdcal.train as train

    seen = []

    def fake_compile(net, mode=None):
        seen.append(mode)
        return net

    monkeypatch.setattr(train.torch, "compile", fake_compile)
    engine = make_engine("cpu", "off", compile=True, pack_students=pack, compile_mode="reduce-overhead")
    members = {n: Member(_model(0), _ce) for n in ("a", "b")}
    train_group(members, splits, Recipe(epochs=1, **RECIPE), 0, engine, log=lambda line: None)
    assert seen == ["reduce-overhead"] * (1 if pack == "on" else 2)
    seen.clear()
    train_group({"m": Member(_model(0), _ce)}, splits, Recipe(epochs=1, **RECIPE), 0,
                make_engine("cpu", "off", pack_students=pack), log=lambda line: None)
    assert seen == []  # compile off: never compiled
    with pytest.raises(ValueError, match="unknown compile_mode 'fast'; valid: default, reduce-overhead"):
        make_engine("cpu", "off", compile=True, compile_mode="fast")
