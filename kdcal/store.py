"""The study folder: run ids, atomic writes, safe loads, the lock.

A run's id is its kind, a readable name and a hash of its full config, so a finished run is found
again on rerun and skipped, and a changed config never reuses a stale result. Every file is
written to a temporary name and renamed, so a kill leaves either the old file or the new one.
Nothing is unpickled as code: tensors load with ``weights_only=True``, arrays without pickle.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch


class StoreError(RuntimeError):
    """A study-folder file is unreadable or the folder is held by another run."""


def config_hash(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def run_id(kind: str, name: str, config: dict) -> str:
    return f"{kind}-{name}-{config_hash(config)}"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(data: bytes, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(obj, path: Path) -> None:
    atomic_write_bytes(json.dumps(obj, indent=1, sort_keys=True, default=float).encode(), path)


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise StoreError(f"corrupt file {path}: {exc}") from None


def atomic_torch_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def safe_torch_load(path: Path):
    """Load tensors and plain containers only; a damaged file is an error naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise StoreError(f"corrupt checkpoint {path}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}  (delete it to retrain)") from None


def save_arrays(arrays: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path).with_suffix(".npz")
    np.savez(tmp, **{k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                     for k, v in arrays.items()})
    os.replace(tmp, path)


def load_arrays(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as exc:
        raise StoreError(f"corrupt array file {path}: {exc}  (delete its run folder to redo it)") from None


def write_csv(frame, path: Path) -> None:
    atomic_write_bytes(frame.to_csv(index=False, float_format="%.6g").encode(), path)


class Study:
    """One study folder: ``runs/<run id>/``, ``figures/``, ``results.csv``, executed notebooks."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.figures = self.root / "figures"

    def run_dir(self, rid: str) -> Path:
        return self.runs / rid

    def is_done(self, rid: str, marker: str = "metrics.json") -> bool:
        return (self.run_dir(rid) / marker).exists()

    def begin_run(self, rid: str, config: dict) -> Path:
        d = self.run_dir(rid)
        d.mkdir(parents=True, exist_ok=True)
        write_json(config, d / "config.json")
        return d

    @contextmanager
    def lock(self):
        """Hold ``.lock`` while writing; a second holder gets an error naming the first."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        me = f"pid {os.getpid()} on {socket.gethostname()}"
        if path.exists() and path.read_text().strip() == os.environ.get("KDCAL_LOCK_OWNER"):
            yield  # a notebook kernel working for the `kdcal run` that holds the lock
            return
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                holder = path.read_text().strip() if path.exists() else ""
                if holder and not _holder_alive(holder):
                    path.unlink(missing_ok=True)  # stale lock from a killed run
                    continue
                raise StoreError(f"study folder {self.root} is in use by {holder or 'another run'}; "
                                 f"wait for it, or delete {path} if that process is gone") from None
        else:
            raise StoreError(f"could not take the lock {path}")
        with os.fdopen(fd, "w") as f:
            f.write(me)
        try:
            yield
        finally:
            if path.exists() and path.read_text().strip() == me:
                path.unlink()


def _holder_alive(holder: str) -> bool:
    parts = holder.split()
    try:
        pid, host = int(parts[1]), parts[3]
    except (IndexError, ValueError):
        return True
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
