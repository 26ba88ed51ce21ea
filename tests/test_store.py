"""The study folder: run ids, atomic writes, safe loads, the lock."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdcal import store
from kdcal.store import (Study, StoreError, load_arrays, read_json, run_id, safe_torch_load,
                         save_arrays, write_json)


class Arbitrary:
    """Any pickled object that is not tensors and plain containers."""

    def __init__(self):
        self.payload = [1, 2, 3]


@pytest.fixture(autouse=True)
def _no_lock_owner(monkeypatch):
    monkeypatch.delenv("KDCAL_LOCK_OWNER", raising=False)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ---------------------------------------------------------------- run ids
def test_run_id_stable_and_key_order_independent():
    a = {"arch": "resnet8", "seed": 0, "recipe": {"lr": 0.1, "epochs": 2}}
    b = {"recipe": {"epochs": 2, "lr": 0.1}, "seed": 0, "arch": "resnet8"}
    assert run_id("teacher", "resnet8-s0", a) == run_id("teacher", "resnet8-s0", b)
    assert run_id("teacher", "resnet8-s0", a) == run_id("teacher", "resnet8-s0", dict(a))
    rid = run_id("teacher", "resnet8-s0", a)
    assert rid.startswith("teacher-resnet8-s0-")


def test_run_id_changes_with_config():
    a = {"arch": "resnet8", "seed": 0, "recipe": {"lr": 0.1, "epochs": 2}}
    ids = {run_id("teacher", "x", a),
           run_id("teacher", "x", {**a, "seed": 1}),
           run_id("teacher", "x", {**a, "recipe": {"lr": 0.1, "epochs": 3}}),
           run_id("teacher", "x", {**a, "extra": None})}
    assert len(ids) == 4


# ---------------------------------------------------------------- JSON
def test_json_roundtrip_atomic(tmp_path):
    obj = {"b": [1, 2.5, "x"], "a": {"nested": True, "none": None}, "f": 0.1}
    path = tmp_path / "sub" / "metrics.json"
    write_json(obj, path)
    assert read_json(path) == obj
    write_json({"replaced": 1}, path)
    assert read_json(path) == {"replaced": 1}
    assert _leftovers(path.parent) == []


def test_json_numpy_scalars(tmp_path):
    write_json({"x": np.float32(0.5), "y": np.float64(2.0)}, tmp_path / "a.json")
    assert read_json(tmp_path / "a.json") == {"x": 0.5, "y": 2.0}


def test_corrupt_json_names_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"acc": 0.9')
    with pytest.raises(StoreError, match="metrics.json"):
        read_json(path)


# ---------------------------------------------------------------- arrays
def test_arrays_roundtrip(tmp_path):
    arrays = {"logits": np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32),
              "labels": np.arange(5), "t": torch.arange(4.0)}
    path = tmp_path / "run" / "logits.npz"
    save_arrays(arrays, path)
    out = load_arrays(path)
    assert set(out) == {"logits", "labels", "t"}
    assert np.array_equal(out["logits"], arrays["logits"]) and out["logits"].dtype == np.float32
    assert np.array_equal(out["labels"], np.arange(5))
    assert np.array_equal(out["t"], np.arange(4.0, dtype=np.float32))
    assert sorted(p.name for p in path.parent.iterdir()) == ["logits.npz"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_npz_names_file(tmp_path, damage):
    path = tmp_path / "logits.npz"
    save_arrays({"a": np.arange(1000)}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not an npz file at all")
    with pytest.raises(StoreError) as info:
        load_arrays(path)
    assert str(path) in str(info.value)


def test_npz_with_pickled_object_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(StoreError, match="obj.npz"):
        load_arrays(path)


# ---------------------------------------------------------------- checkpoints
def test_torch_roundtrip(tmp_path):
    obj = {"epoch": 3, "models": {"a": {"w": torch.arange(6.0).reshape(2, 3)}},
           "history": {"a": [{"loss": 0.5}]}, "failed": {}}
    path = tmp_path / "ckpt" / "train.pt"
    store.atomic_torch_save(obj, path)
    out = safe_torch_load(path)
    assert out["epoch"] == 3 and out["history"] == obj["history"]
    assert torch.equal(out["models"]["a"]["w"], obj["models"]["a"]["w"])
    assert _leftovers(path.parent) == []


def test_truncated_checkpoint_names_file(tmp_path):
    path = tmp_path / "train.pt"
    torch.save({"w": torch.randn(100, 100)}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StoreError) as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)


def test_checkpoint_with_arbitrary_object_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Arbitrary()}, path)
    with pytest.raises(StoreError) as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- Study and its lock
def test_study_runs(tmp_path):
    study = Study(tmp_path / "study")
    rid = run_id("teacher", "resnet8-s0", {"seed": 0})
    assert not study.is_done(rid)
    d = study.begin_run(rid, {"seed": 0})
    assert d == study.runs / rid and read_json(d / "config.json") == {"seed": 0}
    write_json({"acc": 1.0}, d / "metrics.json")
    assert study.is_done(rid)


def test_lock_written_and_released(tmp_path):
    study = Study(tmp_path / "study")
    lock = study.root / ".lock"
    with study.lock():
        assert lock.read_text().strip() == f"pid {os.getpid()} on {socket.gethostname()}"
    assert not lock.exists()
    with study.lock():  # can be taken again
        pass
    assert not lock.exists()


def test_lock_released_on_error(tmp_path):
    study = Study(tmp_path / "study")
    with pytest.raises(RuntimeError, match="boom"):
        with study.lock():
            raise RuntimeError("boom")
    assert not (study.root / ".lock").exists()


def test_second_holder_refused_with_holder_named(tmp_path):
    study = Study(tmp_path / "study")
    with study.lock():
        with pytest.raises(StoreError) as info:
            with Study(tmp_path / "study").lock():
                pass
        msg = str(info.value)
        assert f"pid {os.getpid()}" in msg and socket.gethostname() in msg
        assert (study.root / ".lock").exists()  # the refused attempt did not remove the lock
    assert not (study.root / ".lock").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    pytest.skip("pid of a finished child was reused at once")


def test_stale_lock_of_dead_pid_taken_over(tmp_path):
    study = Study(tmp_path / "study")
    study.root.mkdir(parents=True)
    lock = study.root / ".lock"
    lock.write_text(f"pid {_dead_pid()} on {socket.gethostname()}")
    with study.lock():
        assert lock.read_text().strip() == f"pid {os.getpid()} on {socket.gethostname()}"
    assert not lock.exists()


def test_lock_of_other_host_not_taken_over(tmp_path):
    study = Study(tmp_path / "study")
    study.root.mkdir(parents=True)
    lock = study.root / ".lock"
    lock.write_text(f"pid {_dead_pid()} on some-other-host")
    with pytest.raises(StoreError, match="some-other-host"):
        with study.lock():
            pass
    assert lock.exists()


# ---------------------------------------------------------------- what mutation testing asked for
def test_csv_has_no_index_and_six_significant_digits(tmp_path):
    import pandas as pd

    store.write_csv(pd.DataFrame({"a": [1 / 3, 1e-7], "b": ["x", "y"]}), tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == "a,b\n0.333333,x\n1e-07,y\n"


def test_torch_save_creates_missing_folders(tmp_path):
    path = tmp_path / "runs" / "r1" / "deep" / "model.pt"
    store.atomic_torch_save({"w": torch.ones(2)}, path)
    assert safe_torch_load(path)["w"].tolist() == [1.0, 1.0]


def test_corrupt_checkpoint_error_names_the_error_type_and_its_first_line(tmp_path):
    path = tmp_path / "train.pt"
    path.write_bytes(b"not a checkpoint at all")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # what torch itself says, to compare with
        first = str(exc).splitlines()[0]
        kind = type(exc).__name__
    with pytest.raises(StoreError) as err:
        safe_torch_load(path)
    assert f"corrupt checkpoint {path}: {kind}: {first}  (delete it to retrain)" == str(err.value)
