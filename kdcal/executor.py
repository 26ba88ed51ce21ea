"""Where the study's trainings run: in this process (``local``) or as Ray tasks (``ray``).

A stage hands over its independent trainings as :class:`Task` s, each producing some runs. The
local executor calls them here, in order, as the stages always did. The Ray executor sends each
one, with the study files it reads, to a worker that trains into a private temporary study
folder and returns the files of its runs; this process (the driver) writes them into the real
study folder, ``metrics.json`` last, and skips runs already done. So no shared filesystem is
needed, a retried or duplicated task never doubles or corrupts a result (run ids are the unit),
and a worker lost mid-task costs only that task, which Ray runs again.

Ray is imported only on the Ray path: the local one works without it installed.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import RAY_MISSING, ConfigError, StudyConfig
from .store import Study, atomic_write_bytes

MAX_RETRIES = 3  # attempts after a worker or node is lost mid-task


class ExecutorError(RuntimeError):
    """The cluster is unreachable or a task failed there; one line naming what and where."""


@dataclass
class Task:
    """One independent training: ``fn(cfg, study, *args, log=...)`` makes the runs ``runs``.

    ``inputs`` are study-relative files it reads (shipped to a worker); ``checkpoints`` are
    study-relative resume files: shipped when present, and removed here when the task removed
    them (a finished training deletes its checkpoint).
    """
    fn: Callable
    args: tuple
    runs: list[str]
    inputs: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    label: str = ""


def run_tasks(cfg: StudyConfig, study: Study, tasks: list[Task], desc: str, log=print) -> None:
    """Run every task whose runs are not all done, with the executor ``cfg.executor``."""
    todo = []
    for task in tasks:
        if all(study.is_done(rid) for rid in task.runs):
            for rid in task.runs:
                log(f"[{rid}] done, skipped")
        else:
            todo.append(task)
    if cfg.executor == "ray":
        _run_on_ray(cfg, study, todo, desc, log)
    else:
        for task in todo:
            task.fn(cfg, study, *task.args, log=log)


# ---------------------------------------------------------------- artifacts, without Ray
def _check_relative(name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"artifact path {name!r} must stay inside the study folder")
    return path


def read_files(root: Path, names: list[str]) -> dict[str, bytes]:
    """The bytes of those of ``names`` (relative to ``root``) that exist."""
    return {n: (root / _check_relative(n)).read_bytes() for n in names
            if (root / _check_relative(n)).is_file()}


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        atomic_write_bytes(data, root / _check_relative(name))


def pack_runs(study: Study, rids: list[str]) -> dict[str, dict[str, bytes]]:
    """Every file of each run folder (including sub-folders), relative to that folder."""
    packed = {}
    for rid in rids:
        run = study.run_dir(rid)
        if run.is_dir():
            packed[rid] = {str(p.relative_to(run)): p.read_bytes()
                           for p in sorted(run.rglob("*")) if p.is_file()}
    return packed


def deliver(study: Study, runs: dict[str, dict[str, bytes]], removed: list[str] = ()) -> list[str]:
    """Write returned runs into ``study``; return the run ids written.

    A run already done here is left untouched (a retried or duplicated task). Each file is
    written atomically and ``metrics.json``, the done marker, last: a kill mid-delivery leaves
    the run not done, to be trained again, never a half-written result.
    """
    written = []
    for rid, files in runs.items():
        if study.is_done(rid):
            continue
        run = study.run_dir(rid)
        write_files(run, {n: d for n, d in files.items() if n != "metrics.json"})
        if "metrics.json" in files:
            write_files(run, {"metrics.json": files["metrics.json"]})
        written.append(rid)
    for name in removed:
        (study.root / _check_relative(name)).unlink(missing_ok=True)
    return written


def execute_in_scratch(cfg: StudyConfig, fn: Callable, args: tuple, runs: list[str],
                       files: dict[str, bytes], checkpoints: list[str]) -> dict:
    """Run one task in a private temporary study folder holding only ``files``; return its runs'
    files, the checkpoints it removed and its log lines. What a Ray worker executes."""
    with tempfile.TemporaryDirectory(prefix="kdcal-task-") as tmp:
        scratch = Study(tmp)
        write_files(scratch.root, files)
        lines: list[str] = []
        fn(cfg, scratch, *args, log=lines.append)
        return {"runs": pack_runs(scratch, runs), "log": lines,
                "removed": [c for c in checkpoints if c in files and not (scratch.root / c).exists()]}


def task_config(cfg: StudyConfig) -> StudyConfig:
    """The config a worker trains with: device, bf16 and threads fixed here on the driver.

    Run ids record the driver's engine (``amp``), so a worker must not choose its own; and the
    CPU thread count changes floating-point results, so every task uses the driver's (torch's
    default here when ``threads`` is 0), which makes the table equal to the local executor's.
    """
    import torch

    from .study import engine_for

    engine = engine_for(cfg)
    return dataclasses.replace(cfg, device=engine.device.type,
                               amp="bf16" if engine.amp_dtype is torch.bfloat16 else "off",
                               threads=cfg.threads or torch.get_num_threads())


def task_resources(cfg: StudyConfig) -> dict:
    """What one task asks of the cluster: a GPU on CUDA, else the CPU threads it trains with."""
    if cfg.device == "cuda":
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": cfg.threads}


# ---------------------------------------------------------------- Ray
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def connect(cfg: StudyConfig):
    """Join the cluster at ``cfg.ray_address`` ("" starts or joins a local one); return ray."""
    ray = _import_ray()
    if not ray.is_initialized():
        try:  # workers' lines come back with their task's result, in order, not interleaved
            ray.init(address=cfg.ray_address or None, log_to_driver=False,
                     logging_level="warning")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()
            raise ExecutorError(f"could not join the Ray cluster at "
                                f"{cfg.ray_address or 'a local instance'}: "
                                f"{first[0] if first else type(exc).__name__}") from None
    return ray


def _warn_if_unschedulable(ray, resources: dict, log) -> None:
    """Say so when no node is big enough for one task (Ray would wait for one forever)."""
    need = {"CPU": resources.get("num_cpus", 0), "GPU": resources.get("num_gpus", 0)}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
        log(f"warning: no node of the Ray cluster has {need['CPU']:g} CPUs"
            f"{' and a GPU' if need['GPU'] else ''} for one task; tasks wait until one joins "
            "(or set threads lower)")


def _run_on_ray(cfg: StudyConfig, study: Study, tasks: list[Task], desc: str, log) -> None:
    """Submit every task, deliver each result as it completes, then raise the first failure."""
    from tqdm.auto import tqdm

    if not tasks:
        return
    ray = connect(cfg)
    from ray.exceptions import RayError

    wcfg = task_config(cfg)
    resources = task_resources(wcfg)
    _warn_if_unschedulable(ray, resources, log)
    remote = ray.remote(execute_in_scratch).options(max_retries=MAX_RETRIES, **resources)
    pending = {}
    for task in tasks:
        files = read_files(study.root, [*task.inputs, *task.checkpoints])
        ref = remote.remote(wcfg, task.fn, task.args, task.runs, files, task.checkpoints)
        pending[ref] = task
    failures, total = [], len(pending)
    bar = tqdm(total=total, desc=desc, unit="task")
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        task = pending.pop(ref)
        try:
            result = ray.get(ref)
        except RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            first = str(cause).strip().splitlines()
            failures.append(f"{task.label or task.runs[0]}: {type(cause).__name__}: "
                            f"{first[0] if first else ''}")
            log(f"[{desc}] FAILED {failures[-1]}")
        else:
            for line in result["log"]:
                log(line)
            deliver(study, result["runs"], result["removed"])
        bar.update(1)
        log(f"[{desc}] {total - len(pending)}/{total} tasks done ({task.label})")
    bar.close()
    if failures:
        raise ExecutorError(f"{len(failures)} of {total} {desc} tasks failed on Ray; first: {failures[0]}")
