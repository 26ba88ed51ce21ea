"""Nothing lost, nothing silent: kills, typos and broken files end in a clear message and a
complete study after the rerun, with every earlier result intact."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import kdcal
from kdcal import config, study
from kdcal.store import Study, StoreError, save_arrays, write_json

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict:
    """Bytes of every finished run's metrics plus results.csv: what must never be lost."""
    files = sorted(folder.glob("runs/*/metrics.json")) + [folder / "results.csv"]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files if p.exists()}


def one_line_error(proc, needle, code=1):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert lines and needle in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[-1]


def test_sigkill_mid_training_then_rerun_gives_the_uninterrupted_table(smoke_study, tmp_path):
    """The shared smoke study is the uninterrupted reference; the victim starts from its teachers
    (students removed), is killed mid-way through the students and run again."""
    victim = tmp_path / "victim"
    shutil.copytree(smoke_study, victim)
    for run in victim.glob("runs/student-*"):
        shutil.rmtree(run)
    (victim / "results.csv").unlink()
    proc = subprocess.Popen([sys.executable, "-m", "kdcal", "run", "--profile", "smoke",
                             "--out", str(victim)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    # Kill as soon as a student group has an epoch checkpoint: mid-training, teachers done.
    while time.time() < deadline and not list(victim.glob("runs/group-*.pt")):
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole session: runner, notebook kernel, workers
    proc.wait()
    done_before = snapshot(victim)
    assert list(victim.glob("runs/group-*.pt")), "no checkpoint left to resume from"

    rerun = kdcal("run", "--profile", "smoke", "--out", str(victim))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (victim / "log.txt").read_text()  # the training log, not the notebook
    assert "resumed from epoch" in log
    for name, data in done_before.items():  # nothing finished was redone or changed
        if name != "results.csv":
            assert (victim / name).read_bytes() == data, name
    assert (victim / "results.csv").read_bytes() == (smoke_study / "results.csv").read_bytes()


def test_second_run_on_a_locked_study_names_the_holder(smoke_copy):
    before = snapshot(smoke_copy)
    holder = f"pid {os.getpid()} on {socket.gethostname()}"  # a live process holds it
    (smoke_copy / ".lock").write_text(holder)
    proc = kdcal("run", "--profile", "smoke", "--out", str(smoke_copy), timeout=120)
    line = one_line_error(proc, "is in use by")
    assert holder in line
    assert snapshot(smoke_copy) == before


def test_stale_lock_of_a_dead_process_is_taken_over(smoke_rerun):
    """The shared rerun started over the lock of a dead process (conftest's ``smoke_rerun``)."""
    study, rerun = smoke_rerun
    assert rerun["returncode"] == 0, rerun["stderr"]
    assert not (study / ".lock").exists()


def test_bad_values_fail_before_work_and_keep_results(smoke_copy):
    before = snapshot(smoke_copy)
    cases = [
        (["--set", "seeds=0,0"], "seeds has duplicates"),
        (["--set", "val_size=100000"], "val_size=100000 must be below synthetic_train"),
        (["--set", "device=cuda"], "device='cuda'"),
        (["--set", "dataset=imagenet"], "dataset='imagenet' is not valid; valid: fmnist"),
        (["--set", "modes=uncalibrated,sharpen"], "mode='sharpen' is not valid"),
        (["--set", "student_epochs=0"], "student_epochs=0 is out of range"),
        (["--set", "tau"], "--set expects key=value"),
    ]
    for args, needle in cases:
        if "cuda" in needle and __import__("torch").cuda.is_available():
            continue
        one_line_error(kdcal("run", "--profile", "smoke", *args, "--out", str(smoke_copy),
                             timeout=120), needle, code=2)
        assert snapshot(smoke_copy) == before, args


def test_corrupt_resume_checkpoint_is_named_and_the_rerun_recovers(smoke_copy, smoke_study):
    teacher = sorted(smoke_copy.glob("runs/teacher-resnet14-s1-*"))[0]
    (teacher / "metrics.json").unlink()  # as if killed before it finished
    (teacher / "train.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    kept = snapshot(smoke_copy)
    proc = kdcal("run", "--profile", "smoke", "--out", str(smoke_copy))
    line = one_line_error(proc, "01_train_teachers.ipynb failed in cell")
    assert "corrupt checkpoint" in line and str(teacher / "train.pt") in line
    assert (smoke_copy / "01_train_teachers.ipynb").exists(), "partial notebook kept for inspection"
    assert snapshot(smoke_copy) == kept
    (teacher / "train.pt").unlink()  # what the message tells the user to do
    assert kdcal("run", "--profile", "smoke", "--out", str(smoke_copy)).returncode == 0
    assert (smoke_copy / "results.csv").read_bytes() == (smoke_study / "results.csv").read_bytes()


def test_corrupt_logits_fail_the_calibration_cell_naming_the_file(smoke_copy):
    teacher = sorted(smoke_copy.glob("runs/teacher-resnet8-s0-*"))[0]
    (teacher / "calibration.json").unlink()
    data = (teacher / "logits.npz").read_bytes()
    (teacher / "logits.npz").write_bytes(data[: len(data) // 3])  # truncated
    kept = snapshot(smoke_copy)
    proc = kdcal("run", "--profile", "smoke", "--out", str(smoke_copy))
    line = one_line_error(proc, "02_calibrate_teachers.ipynb failed in cell")
    assert "corrupt array file" in line and "logits.npz" in line
    assert snapshot(smoke_copy) == kept


def test_checkpoints_are_never_unpickled_as_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    import torch

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(StoreError, match="evil.pt"):
        from kdcal.store import safe_torch_load
        safe_torch_load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_diverging_teacher_stops_alone_with_model_seed_and_epoch(tmp_path):
    """A NaN loss stops that run, names it, and leaves the other runs and their results."""
    cfg = config.resolve("smoke", {"teacher_epochs": 1, "workers": 0})  # in-process: the patch holds
    calls = {"n": 0}

    import kdcal.teachers as st  # the stage that builds the teachers' loss

    real = st.make_loss

    def poisoned(mode, tau, alpha, fitted_t=1.0):
        loss = real(mode, tau, alpha, fitted_t)
        calls["n"] += 1
        if calls["n"] == 2:  # the second teacher trained: resnet14 seed 0
            return lambda s, y, t=None: loss(s, y, t) * float("nan")
        return loss

    st.make_loss = poisoned
    try:
        lines = []
        table = study.train_teachers(cfg, tmp_path, log=lines.append)
    finally:
        st.make_loss = real
    failure = [l for l in lines if "FAILED" in l]
    assert failure and "resnet14 (seed 0)" in failure[0] and "epoch 1" in failure[0]
    assert sorted(zip(table["arch"], table["seed"])) == [("resnet14", 1), ("resnet8", 0), ("resnet8", 1)]
    cal = study.calibrate_teachers(cfg, tmp_path, log=lines.append)
    assert len(cal) == 3 and any("skipped: training failed" in l for l in lines)


def test_corrupt_dataset_file_is_named(tmp_path):
    import gzip

    from kdcal.data import FMNIST_FILES, DatasetError, load_dataset

    for name in FMNIST_FILES:
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(b"\x00" * 64)
    good = (tmp_path / f"{FMNIST_FILES[0]}.gz").read_bytes()
    (tmp_path / f"{FMNIST_FILES[0]}.gz").write_bytes(good[:20])  # truncated gzip
    with pytest.raises(DatasetError, match=FMNIST_FILES[0]):
        load_dataset("fmnist", root=tmp_path, download=False)


def test_a_teacher_that_never_learned_is_failed_not_fatal(tmp_path):
    """A teacher stuck at chance (constant logits: resnet20 without batch norm did this in a
    regimes-quick cell) has no temperature. Calibration marks it failed in one line and goes on;
    it teaches nobody; the other teachers are calibrated and teach."""
    cfg = config.resolve("smoke", {"teachers": ["resnet8", "resnet14"], "seeds": [0]})
    st = Study(tmp_path)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, 400)  # never class 9, the class its constant output favours
    (stuck, _, _), (good, _, _) = study.teacher_runs(cfg)
    for rid in (stuck, good):
        if rid == stuck:
            logits = np.tile(np.linspace(-0.1, 0.1, 10), (400, 1))  # the same output for every image
        else:
            logits = rng.normal(size=(400, 10)) + 3 * np.eye(10)[labels]
        run = st.run_dir(rid)
        run.mkdir(parents=True)
        save_arrays({"val_logits": logits[:200], "val_labels": labels[:200],
                     "test_logits": logits[200:], "test_labels": labels[200:]}, run / "logits.npz")
        write_json({"acc": 0.1}, run / "metrics.json")
    lines = []
    study.calibrate_teachers(cfg, tmp_path, log=lines.append)
    assert (st.run_dir(stuck) / "failed.json").exists()
    assert not (st.run_dir(stuck) / "calibration.json").exists()
    assert (st.run_dir(good) / "calibration.json").exists()
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and "resnet8 seed 0 not calibrated" in failed[0]
    teachers = {p["teacher_rid"] for p in study.student_plan(cfg, tmp_path)}
    assert good in teachers and stuck not in teachers
    again = []
    study.calibrate_teachers(cfg, tmp_path, log=again.append)  # a rerun skips it, names why
    assert any(line.startswith(f"[{stuck}] skipped: not calibrated") for line in again)
