"""Shared helpers for the kdcal unit tests: tiny data, a deterministic CPU engine."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

# Under pytest-xdist two workers share the two cores; torch's and BLAS's thread pools, two threads
# each, then spin against each other: two 8-epoch trainings of the tutorial side by side took 152 s
# at two threads each and 66 s at one (2026-12-07). One thread per worker, and for the runs the
# tests start (the variables are inherited); set before numpy and torch are imported, which read
# them once. A plain `pytest` keeps the machine's default. A test that sets more threads itself
# (test_evidence_design refits at its study's count) would still spin: OpenMP's passive wait puts
# an idle thread to sleep instead (same results; a two-thread training beside a busy core took
# half the CPU time, 7.0 s against 14.2 s, 2026-12-07).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _pool in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_pool] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np
import pytest
import torch
from filelock import FileLock

from kdcal.data import make_splits, make_synthetic
from kdcal.train import make_engine


def tiny_splits(n_train: int = 256, val_size: int = 64, size: int = 16, seed: int = 0):
    """``n_train`` training images (after carving ``val_size`` out), 1 channel, 10 classes."""
    ds = make_synthetic(n_train=n_train + val_size, n_test=32, size=size, seed=seed)
    return make_splits(ds, val_size=val_size, split_seed=0)


@pytest.fixture
def splits():
    return tiny_splits()


@pytest.fixture
def cpu_engine():
    return make_engine("cpu", "off")


@contextmanager
def few_threads():
    """Torch's intra-op threads at the machine's count but at most 2, restored after: the count
    every test trains at (session fixtures, set up before `_few_threads`, enter it themselves)."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch's intra-op threads small and fixed so runs are fast and comparable."""
    with few_threads():
        yield


def kdcal(*args, cwd=None, timeout=900, **popen):
    """Run the real command line in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "kdcal", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                          **popen)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder built once per test session and shared by the xdist workers: they share one
    temporary folder, and the first to need it runs ``build(folder)`` under a file lock while the
    other waits. A build that failed part-way is started again. Read only for the tests."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's own
    home = shared / f"{name}-shared"
    with FileLock(str(shared / f"{name}-shared.lock")):
        if not (home / "complete").exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir()
            build(home)
            (home / "complete").touch()
    return home


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """One complete `kdcal run --profile smoke`, shared by the end-to-end tests (read only: a test
    that writes into a study takes `smoke_copy`), built once per test session (`built_once`; the
    run itself uses both cores)."""
    def build(home):
        proc = kdcal("run", "--profile", "smoke", "--out", str(home / "study"))
        assert proc.returncode == 0, proc.stderr[-3000:]

    return built_once(tmp_path_factory, "smoke", build) / "study"


@pytest.fixture(scope="session")
def smoke_rerun(smoke_study, tmp_path_factory):
    """The finished smoke study run again by `kdcal run`, over the stale lock of a dead process:
    one rerun read by the rerun test (nothing retrained, the same table) and the stale-lock test
    (the lock taken over), each of which used to pay for its own. Its ``rerun.json`` holds the
    exit code and the end of stderr."""
    def build(home):
        study = home / "study"
        shutil.copytree(smoke_study, study)
        dead = subprocess.Popen(["true"])
        dead.wait()  # its pid is now free: the lock's holder is gone
        (study / ".lock").write_text(f"pid {dead.pid} on {socket.gethostname()}")
        proc = kdcal("run", "--profile", "smoke", "--out", str(study))
        (home / "rerun.json").write_text(json.dumps(
            {"returncode": proc.returncode, "stderr": proc.stderr[-3000:]}))

    home = built_once(tmp_path_factory, "smoke-rerun", build)
    return home / "study", json.loads((home / "rerun.json").read_text())


@pytest.fixture
def smoke_copy(smoke_study, tmp_path):
    """A private copy of the finished smoke study, free to damage."""
    dst = tmp_path / "study"
    shutil.copytree(smoke_study, dst)
    return dst


def assert_close_state(a, b, **tol):
    """Two models' state dicts equal: floats to ``tol`` (torch.testing.assert_close), the rest
    exactly; the differing tensor is named."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if sa[k].is_floating_point():
            torch.testing.assert_close(sa[k], sb[k], **tol, msg=f"{k} differs")
        else:
            assert torch.equal(sa[k], sb[k]), f"{k} differs"

def ece_nll_by_numpy(logits: np.ndarray, labels: np.ndarray, bins: int) -> tuple[float, float]:
    """Top-1 ECE over equal-width bins, and NLL, by numpy."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    conf, hit = p.max(axis=1), p.argmax(axis=1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece = sum(abs(hit[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    return float(ece), float(-logp[np.arange(len(labels)), labels].mean())


def shaffer_by_hand(p_zero, p_equiv):
    """Both tests of every claim in one step-down (Shaffer's, with the logical constraint that
    a claim's two nulls cannot both be true): all p-values sorted; at each step the multiplier
    is the number of claims with a test not yet passed. Returns the adjusted (zero, equiv)."""
    tests = [(p, i, k) for k, ps in enumerate((p_zero, p_equiv)) for i, p in enumerate(ps)
             if np.isfinite(p)]
    tests.sort(key=lambda t: t[0])
    left = {i: sum(1 for t in tests if t[1] == i) for i in {t[1] for t in tests}}
    out = [np.full(len(p_zero), np.nan), np.full(len(p_zero), np.nan)]
    running = 0.0
    for p, i, k in tests:
        running = max(running, min(1.0, sum(1 for n in left.values() if n) * p))
        out[k][i] = running
        left[i] -= 1
    return out
