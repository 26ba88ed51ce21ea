"""Guards on the study's design: each test fails when one invariant the results rest on breaks.

- Students of one group (one teacher and seed) and the baseline of that seed start from the same
  weights and see the same batches: the comparison between modes is paired.
- Differences against the baseline pair each student with its own seed's baseline.
- Every write in the study folder is atomic: a failure mid-write leaves the old file (or none).
- The training loop is plain SGD: each step starts from zeroed gradients.

Each was broken on purpose once (see the docstrings) and the test went red.
"""
from __future__ import annotations

import copy
import io

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from kdcal import analysis, config, store, students, study
from kdcal.data import epoch_batches
from kdcal.store import Study, read_json, save_arrays, write_json
from kdcal.train import Member, Recipe, train_group

from conftest import tiny_splits

# The first optimizer built in a process imports torch._dynamo (seconds): pay it at import, once,
# not inside each test (`make mutate` forks every mutant's test run from a collected process).
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


# ---------------------------------------------------------------- a. paired student groups
# tiny images and batches: the test needs the first steps only, not learning
GROUP_CFG = {"teachers": ["resnet8"], "seeds": [0, 1], "student_epochs": 1, "amp": "off",
             "synthetic_size": 8, "student_batch_size": 8, "threads": 1, "synthetic_classes": 4,
             "modes": ["uncalibrated", "compose", "replace"], "tau_grid": [2.0],
             "teacher_temperature_grid": [2.0], "teacher_variants": []}
STEPS_SEEN = 2  # batches recorded per member before the training is stopped


class _Enough(Exception):
    """Raised from inside the training loop once every member has been seen."""


def _fake_teachers(cfg, root) -> Study:
    """Teacher runs as later stages read them (logits, a fitted T), without training any."""
    st, splits = Study(root), study.load_splits(cfg)
    rng = np.random.default_rng(0)
    for rid, _, _ in study.teacher_runs(cfg):
        n = {"train": len(splits.train_y), "val": len(splits.val_y), "test": len(splits.test_y)}
        save_arrays({f"{k}_logits": rng.normal(size=(v, splits.num_classes)).astype(np.float32)
                     for k, v in n.items()}, st.run_dir(rid) / "logits.npz")
        write_json({"temperature": 1.5}, st.run_dir(rid) / "calibration.json")
    return st


def _record_group(monkeypatch, cfg, st: Study, todo: list[dict]) -> dict:
    """Run the real ``_student_group_task`` up to a few training steps; return, per member, its
    weights before the first step and the inputs of its first forwards, and the loop's seed."""
    real = train_group  # kdcal.train's, never an earlier recording wrapper
    seen = {}

    def recording(members, splits, recipe, seed, engine, *args, **kw):
        seen["seed"] = seed
        seen["init"] = {n: copy.deepcopy(m.model.state_dict()) for n, m in members.items()}
        seen["losses"] = {n: m.loss for n, m in members.items()}
        seen["batches"] = batches = {n: [] for n in members}

        def hook(name):
            def record(module, inputs):
                if module.training:
                    batches[name].append(inputs[0].detach().clone())
                    if all(len(b) >= STEPS_SEEN for b in batches.values()):
                        raise _Enough
            return record

        for n, m in members.items():
            m.model.register_forward_pre_hook(hook(n))
        return real(members, splits, recipe, seed, engine, *args, **kw)

    monkeypatch.setattr(students, "train_group", recording)
    with pytest.raises(_Enough):
        students._student_group_task(cfg, st, todo, log=lambda *_: None)
    return seen


def _assert_all_equal(states: dict, what: str):
    names = list(states)
    for n in names[1:]:
        for k, v in states[names[0]].items():
            assert torch.equal(v, states[n][k]), f"{what}: {n} differs from {names[0]} at {k}"


def test_students_of_a_group_start_from_one_init_and_see_one_batch_order(tmp_path, monkeypatch):
    """Broken on purpose: ``_seed_all(seed + i)`` per member in ``_student_group_task``."""
    cfg = config.resolve("smoke", GROUP_CFG)
    st = _fake_teachers(cfg, tmp_path)
    plan = study.student_plan(cfg, tmp_path)
    groups = {}
    for p in plan:
        groups.setdefault(p["group"], []).append(p)
    kd_group = next(g for g in groups.values() if g[0]["teacher_rid"] and g[0]["seed"] == 0)
    assert len(kd_group) >= 4, [p["key"] for p in kd_group]  # modes, tau and temperature controls
    seen = _record_group(monkeypatch, cfg, st, kd_group)
    assert seen["seed"] == 0
    assert sorted(seen["init"]) == sorted(p["key"] for p in kd_group)
    _assert_all_equal(seen["init"], "initial weights")
    batches = seen["batches"]
    _assert_all_equal({n: dict(enumerate(b[:STEPS_SEEN])) for n, b in batches.items()}, "batches")
    first = next(iter(batches.values()))
    assert not torch.equal(first[0], first[1])  # two different batches, not one repeated

    # each member's loss is its planned (tau, teacher temperature) at the config's alpha
    from kdcal.distill import kd_loss
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.arange(6) % 4
    for p in kd_group:
        c = p["config"]
        expected = kd_loss(s, t, y, c["kd_tau"], cfg.alpha, c["teacher_temperature"])
        assert torch.allclose(seen["losses"][p["key"]](s, y, t), expected), p["key"]

    # the baseline of the same seed starts from those weights too; another seed does not
    base = _record_group(monkeypatch, cfg, st, groups["baseline-s0"])
    assert base["seed"] == 0
    assert torch.allclose(next(iter(base["losses"].values()))(s, y, None), F.cross_entropy(s, y))
    _assert_all_equal({"kd": next(iter(seen["init"].values())),
                       "baseline": next(iter(base["init"].values()))}, "baseline vs KD init")
    assert torch.equal(next(iter(base["batches"].values()))[0], first[0])
    other = _record_group(monkeypatch, cfg, st, groups["baseline-s1"])
    assert other["seed"] == 1
    w0, w1 = next(iter(base["init"].values())), next(iter(other["init"].values()))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0 if w0[k].is_floating_point())


# ---------------------------------------------------------------- b. versus-baseline pairing
def _students_with_seed_shift(gain: float, shift: float) -> pd.DataFrame:
    """Baseline and KD students whose accuracy moves by ``shift`` per seed; KD = baseline + gain.
    Teacher "b" lost its seed-2 student (a diverged run), so the seeds are unbalanced."""
    rows = []
    for seed in range(4):
        base = 0.70 + shift * seed ** 2
        rows.append({"mode": "baseline", "teacher": "", "seed": seed, "acc": base})
        for teacher, extra in (("a", 0.0), ("b", 0.01)):
            if teacher == "b" and seed == 2:
                continue
            rows.append({"mode": "uncalibrated", "teacher": teacher, "seed": seed,
                         "acc": base + gain + extra})
    return pd.DataFrame(rows)


def test_versus_baseline_pairs_each_student_with_its_own_seed():
    """Broken on purpose: the mean baseline subtracted instead of the same seed's."""
    students = _students_with_seed_shift(gain=0.02, shift=0.05)
    d = analysis.paired_differences(students, "uncalibrated", "baseline", value="acc")
    assert {"comparison", "teacher", "mean", "ci_low", "ci_high", "n"} <= set(d.columns)
    d = d.set_index("teacher")
    assert set(d.index) == {"a", "b", "all"}
    assert d.loc["a", "mean"] == pytest.approx(0.02, abs=1e-12)
    assert d.loc["b", "mean"] == pytest.approx(0.03, abs=1e-12)
    assert d.loc["a", "n"] == 4 and d.loc["b", "n"] == 3
    assert 0.02 - 1e-12 <= d.loc["all", "mean"] <= 0.03 + 1e-12
    for teacher in ("a", "b"):  # a constant difference: a zero-width interval, not the seed spread
        lo, hi = d.loc[teacher, "ci_low"], d.loc[teacher, "ci_high"]
        assert np.isfinite(lo) and np.isfinite(hi) and hi - lo < 1e-9, (teacher, lo, hi)
    lo, hi = d.loc["all", "ci_low"], d.loc["all", "ci_high"]
    assert np.isfinite(lo) and np.isfinite(hi) and hi - lo < 0.05  # the seed shift spans 0.45


# ---------------------------------------------------------------- c. atomic writes
class _Crash(OSError):
    """A failure injected in the middle of writing a file."""


def _half_then_crash(data: bytes, file) -> None:
    """Write the first half of ``data`` to ``file`` (a path or a binary file), then fail."""
    if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__"):
        with open(file, "wb") as f:
            f.write(data[: len(data) // 2])
    else:
        file.write(data[: len(data) // 2])
    raise _Crash("disk full (injected)")


class _HalfFile(io.FileIO):
    """A file whose writes stop half-way with an error, as on a full disk or a kill."""

    def write(self, data):
        _half_then_crash(bytes(data), super())
        return 0  # not reached


def _crashing_open(file, mode="r", *args, **kw):
    if "w" in mode and "b" in mode:
        return _HalfFile(file, "w")
    return open(file, mode, *args, **kw)


_TORCH_SAVE, _SAVEZ = torch.save, np.savez  # the real ones, before any patch


def _crash_torch_save(obj, file, *args, **kw):
    buf = io.BytesIO()
    _TORCH_SAVE(obj, buf)
    _half_then_crash(buf.getvalue(), file)


def _crash_savez(file, *args, **arrays):
    buf = io.BytesIO()
    _SAVEZ(buf, *args, **arrays)
    _half_then_crash(buf.getvalue(), file)


WRITES = {
    "json": ("metrics.json", lambda p: write_json({"acc": 0.5, "rows": list(range(50))}, p),
             lambda p: read_json(p)),
    "csv": ("results.csv", lambda p: store.write_csv(pd.DataFrame({"acc": np.arange(50.0)}), p),
            lambda p: p.read_text()),
    "bytes": ("figure.png", lambda p: store.atomic_write_bytes(b"new!" * 100, p),
              lambda p: p.read_bytes()),
    "torch": ("model.pt", lambda p: store.atomic_torch_save({"w": torch.arange(500.0)}, p),
              lambda p: store.safe_torch_load(p)["w"].tolist()),
    "npz": ("logits.npz", lambda p: save_arrays({"logits": np.arange(500.0)}, p),
            lambda p: store.load_arrays(p)["logits"].tolist()),
}


def _inject(monkeypatch):
    """Every serializer and raw write of the store fails half-way through."""
    monkeypatch.setattr(store, "open", _crashing_open, raising=False)
    monkeypatch.setattr(store.torch, "save", _crash_torch_save)
    monkeypatch.setattr(store.np, "savez", _crash_savez)


@pytest.mark.parametrize("kind", list(WRITES))
def test_a_write_failing_midway_leaves_the_old_file(tmp_path, monkeypatch, kind):
    """Broken on purpose: writing straight to the final path (no temporary file and rename)."""
    name, write, read = WRITES[kind]
    path = tmp_path / "run" / name
    if kind == "csv":  # the old file: something else written the same way
        store.write_csv(pd.DataFrame({"old": [1, 2]}), path)
    elif kind == "bytes":
        store.atomic_write_bytes(b"old", path)
    elif kind == "torch":
        store.atomic_torch_save({"w": torch.zeros(3)}, path)
    elif kind == "npz":
        save_arrays({"logits": np.zeros(3)}, path)
    else:
        write_json({"acc": 0.1}, path)
    old_bytes, old_value = path.read_bytes(), read(path)
    with monkeypatch.context() as m:
        _inject(m)
        with pytest.raises(_Crash):
            write(path)
    assert path.read_bytes() == old_bytes
    assert read(path) == old_value
    write(path)  # and without the injected failure the new file lands whole
    assert path.read_bytes() != old_bytes


@pytest.mark.parametrize("kind", list(WRITES))
def test_a_first_write_failing_midway_leaves_no_file(tmp_path, monkeypatch, kind):
    name, write, _ = WRITES[kind]
    path = tmp_path / "run" / name
    with monkeypatch.context() as m:
        _inject(m)
        with pytest.raises(_Crash):
            write(path)
    assert not path.exists()


# ---------------------------------------------------------------- d. gradients zeroed each step
def _ce(s, y, t=None):
    return F.cross_entropy(s, y)


ZG_RECIPE = dict(batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4)


def _trained(splits, engine, steps_recipe: Recipe, init):
    model = copy.deepcopy(init)
    out = train_group({"m": Member(model, _ce)}, splits, steps_recipe, 0, engine,
                      log=lambda *_: None)
    return out["models"]["m"]


def _reference_sgd(model, splits, engine, recipe: Recipe, seed: int) -> torch.nn.Module:
    """Nesterov SGD with weight decay written out by hand (PyTorch's formulas), one epoch."""
    model = engine.prepare(copy.deepcopy(model)).train()
    params = [p for p in model.parameters()]
    bufs = [None] * len(params)
    batches = epoch_batches(len(splits.train_y), recipe.batch_size, seed, 0)
    for step, idx in enumerate(batches):
        lr = recipe.lr_at(0, step, len(batches))
        xb = engine.inputs(splits.normalize(splits.train_x[idx]))
        loss = _ce(model(xb).float(), splits.train_y[idx])
        grads = torch.autograd.grad(loss, params)  # fresh gradients: nothing accumulates
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads)):
                g = g + recipe.weight_decay * p
                bufs[i] = g.clone() if bufs[i] is None else recipe.momentum * bufs[i] + g
                p -= lr * (g + recipe.momentum * bufs[i])
    return model


def test_one_epoch_equals_hand_written_sgd(cpu_engine):
    """Broken on purpose: ``zero_grad`` removed from the loop (gradients accumulate)."""
    splits = tiny_splits(n_train=48, val_size=16, size=8)  # three batches of 16
    torch.manual_seed(0)
    from kdcal.models import build_model
    init = build_model("resnet8", in_channels=1, num_classes=10)
    recipe = Recipe(epochs=1, **ZG_RECIPE)
    trained = _trained(splits, cpu_engine, recipe, init)
    reference = _reference_sgd(init, splits, cpu_engine, recipe, seed=0)
    sa, sb = trained.state_dict(), reference.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-5), k
    assert any(not torch.equal(sa[k], init.state_dict()[k]) for k in sa)  # it did train


def test_training_without_zero_grad_gives_other_weights(cpu_engine, monkeypatch):
    splits = tiny_splits(n_train=48, val_size=16, size=8)
    torch.manual_seed(0)
    from kdcal.models import build_model
    init = build_model("resnet8", in_channels=1, num_classes=10)
    recipe = Recipe(epochs=1, **ZG_RECIPE)
    real = _trained(splits, cpu_engine, recipe, init)
    with monkeypatch.context() as m:
        m.setattr(torch.optim.Optimizer, "zero_grad", lambda self, set_to_none=True: None)
        m.setattr(torch.nn.Module, "zero_grad", lambda self, set_to_none=True: None)
        accumulated = _trained(splits, cpu_engine, recipe, init)
    diff = max(float((real.state_dict()[k].float() - accumulated.state_dict()[k].float()).abs().max())
               for k in real.state_dict())
    assert diff > 1e-3


# ---------------------------------------------------------------- d. what a student group trains
class _Stop(Exception):
    """Raised by a stand-in train_group once it has seen its arguments."""


def _group_arguments(monkeypatch, cfg, st: Study, todo: list[dict], log) -> dict:
    seen = {}

    def capture(members, splits, recipe, seed, engine, *args, **kw):
        seen.update(members=members, seed=seed, args=args, kw=kw)
        raise _Stop

    monkeypatch.setattr(students, "train_group", capture)
    with pytest.raises(_Stop):
        students._student_group_task(cfg, st, todo, log=log)
    return seen


def test_a_student_group_gets_its_teacher_targets_checkpoint_and_log(tmp_path, monkeypatch):
    """Each member's loss needs the teacher (but the baseline's); a cal- member distills on its
    fitted calibrator's targets of the teacher's training logits; the loop gets the group's
    checkpoint path, its label and the caller's log; every run's config is recorded."""
    from kdcal.calibration import TemperatureCalibrator
    cfg = config.resolve("smoke", {**GROUP_CFG, "seeds": [0], "tau_grid": [], "calibrators":
                                   ["temperature"], "teacher_temperature_grid": [],
                                   "modes": ["uncalibrated", "cal-temperature"]})
    st = _fake_teachers(cfg, tmp_path)
    groups = {}
    for p in study.student_plan(cfg, tmp_path):
        groups.setdefault(p["group"], []).append(p)
    todo = next(g for g in groups.values() if g[0]["teacher_rid"])
    rid = todo[0]["teacher_rid"]
    z = store.load_arrays(st.run_dir(rid) / "logits.npz")
    splits = study.load_splits(cfg)
    cal = TemperatureCalibrator().fit(z["val_logits"], splits.val_y.numpy())
    write_json({"state": cal.state()}, st.run_dir(rid) / "calibrators" / "temperature.json")

    def log(*_):
        pass

    seen = _group_arguments(monkeypatch, cfg, st, todo, log)
    assert seen["args"][0] == st.root / students._group_checkpoint(todo[0]["group"], todo)
    assert seen["kw"]["desc"] == "students of resnet8 seed 0"
    assert seen["kw"]["log"] is log and seen["kw"]["teacher"] is None  # no augmentation
    members = seen["members"]
    assert sorted(members) == ["cal-temperature", "uncalibrated"]
    assert all(m.needs_teacher for m in members.values())
    assert members["uncalibrated"].teacher_logits is None  # the shared teacher logits
    expected = torch.from_numpy(cal.target_logits(z["train_logits"])).float()
    assert torch.equal(members["cal-temperature"].teacher_logits, expected)
    for p in todo:
        assert read_json(st.run_dir(p["rid"]) / "config.json") == p["config"]

    base = _group_arguments(monkeypatch, cfg, st, groups["baseline-s0"], log)
    assert [m.needs_teacher for m in base["members"].values()] == [False]


def test_two_students_of_one_name_in_a_group_refused(tmp_path, monkeypatch):
    cfg = config.resolve("smoke", {**GROUP_CFG, "seeds": [0]})
    st = _fake_teachers(cfg, tmp_path)
    base = next(p for p in study.student_plan(cfg, tmp_path) if p["mode"] == "baseline")
    with pytest.raises(RuntimeError, match=r"^two planned students named 'baseline' in the "
                                           r"group of baseline-s0$"):
        _group_arguments(monkeypatch, cfg, st, [base, base], lambda *_: None)


@pytest.mark.parametrize("augment,transfer", [(True, 0), (False, 16)])
def test_the_loop_gets_the_teacher_model_only_to_label_augmented_images(tmp_path, monkeypatch,
                                                                       augment, transfer):
    """With augmentation the teacher must label each augmented batch, so the loop gets its model;
    on transfer images alone the model labels them once, before the loop (fixed targets), and
    the loop gets none."""
    over = {**GROUP_CFG, "seeds": [0], "augment": augment, "transfer_size": transfer}
    if transfer:
        over["train_size"] = 32
    cfg = config.resolve("smoke", over)
    st = _fake_teachers(cfg, tmp_path)
    teacher = torch.nn.Identity()
    monkeypatch.setattr(students, "load_model", lambda *_: teacher)
    monkeypatch.setattr(students, "predict", lambda model, x, *_: torch.zeros(len(x), 4))
    groups = {}
    for p in study.student_plan(cfg, tmp_path):
        groups.setdefault(p["group"], []).append(p)
    todo = next(g for g in groups.values() if g[0]["teacher_rid"])
    seen = _group_arguments(monkeypatch, cfg, st, todo, lambda *_: None)
    assert seen["kw"]["teacher"] is (teacher if augment else None)
    assert seen["kw"]["teacher_logits"] is not None
