"""Where the study's trainings run: in this process, in local worker processes, or as Ray tasks.

A stage hands over its independent trainings as :class:`Task` s, each producing some runs; a task
names its training function by reference (a module-level function) and carries its arguments, so
this module needs nothing of the study's. With ``executor="local"`` and ``workers`` 0 or 1 they
run here, in order, as the stages always did. With ``workers=N > 1`` they run side by side in N
spawned processes that write straight into the study folder (every write is atomic, and two tasks
never share a run); a script that runs them needs the ``if __name__ == "__main__"`` guard of
``spawn``. The Ray executor sends each one, with the study files it reads, to a worker
that trains into a private temporary study folder and returns the files of its runs; this process
(the driver) writes them into the real study folder, ``metrics.json`` last, and skips runs already
done. So no shared filesystem is needed, a retried or duplicated task never doubles or corrupts a
result (run ids are the unit), and a worker lost mid-task costs only that task, which Ray runs again.

Every task trains with the driver's device and bf16 setting and the config's thread count (see
``config.training_threads``), so the numbers do not depend on the executor nor on the number of
workers. A task that raises is reported in one line naming it, after the others finished.

Ray is imported only on the Ray path: the local one works without it installed.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import RAY_MISSING, ConfigError, StudyConfig, training_threads
from .plan import duration, remaining_seconds, task_estimates
from .store import Study, atomic_write_bytes
from .train import make_engine

MAX_RETRIES = 3  # attempts after a worker or node is lost mid-task


class ExecutorError(RuntimeError):
    """The cluster is unreachable or a task failed there; one line naming what and where."""


@dataclass
class Task:
    """One independent training: ``fn(cfg, study, *args, log=...)`` makes the runs ``runs``.

    ``fn`` is a module-level function (workers import it by name) that does its own set-up from
    ``cfg`` (engine, threads, data); ``args`` are plain data.

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
    cost: float = 0.0  # relative work (any unit): side by side, the largest start first


def largest_first(tasks: list[Task]) -> list[Task]:
    """The order to hand tasks to parallel workers: by cost, largest first, ties in plan order.

    Started in plan order, the largest teacher of the last seed trains alone at the end while the
    other worker idles; largest first leaves only small tasks for the tail (LPT scheduling).
    Each task is seeded on its own, so the order changes no result, only the log's order.
    """
    return sorted(tasks, key=lambda t: -t.cost)


def run_tasks(cfg: StudyConfig, study: Study, tasks: list[Task], desc: str, log=print) -> None:
    """Run every task whose runs are not all done, with the executor ``cfg.executor``."""
    todo = []
    for task in tasks:
        if all(study.is_done(rid) for rid in task.runs):
            for rid in task.runs:
                log(f"[{rid}] done, skipped")
        else:
            todo.append(task)
    estimates = _plan_estimates(cfg)
    eta = _eta(cfg, todo, estimates)
    if eta is not None:
        log(f"[{desc}] {len(todo)} tasks, plan: ~{eta} (kdcal plan)")
    if cfg.executor == "ray":
        _run_on_ray(cfg, study, largest_first(todo), desc, log)
    elif cfg.workers > 1 and len(todo) > 1:
        _run_in_workers(cfg, study, largest_first(todo), desc, log)
    else:  # one by one here: the thread count is training_threads(cfg), as in the workers
        for task in todo:
            task.fn(cfg, study, *task.args, log=log)


def _plan_estimates(cfg: StudyConfig) -> dict:
    """Seconds per task label from ``kdcal plan`` (empty when it has no estimate)."""
    try:
        return task_estimates(cfg)
    except (ValueError, KeyError, OSError):
        return {}


def _eta(cfg: StudyConfig, tasks: list[Task], estimates: dict) -> str | None:
    """The plan's estimate for these tasks as text, for the stage's progress bar and log."""
    seconds = remaining_seconds(cfg, [t.label for t in tasks], estimates)
    return None if seconds is None else duration(seconds)


def _show_eta(bar, cfg: StudyConfig, tasks: list[Task], estimates: dict) -> None:
    eta = _eta(cfg, tasks, estimates)
    if eta is not None:
        bar.set_postfix_str(f"plan ETA ~{eta}")


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
    CPU thread count changes floating-point results, so every task uses the config's
    (``training_threads``; the driver's, torch's default, when that is 0), which makes the table
    equal to the in-process executor's.
    """
    import torch

    threads = training_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    engine = make_engine(cfg.device, cfg.amp, cfg.channels_last, cfg.compile)
    return dataclasses.replace(cfg, device=engine.device.type,
                               amp="bf16" if engine.amp_dtype is torch.bfloat16 else "off",
                               threads=threads or torch.get_num_threads())


def task_resources(cfg: StudyConfig) -> dict:
    """What one task asks of the cluster: a GPU on CUDA, else the CPU threads it trains with."""
    if cfg.device == "cuda":
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": cfg.threads}


# ---------------------------------------------------------------- local worker processes
def execute_in_place(cfg: StudyConfig, fn: Callable, args: tuple, root: str) -> dict:
    """Run one task in a worker process, writing straight into the study folder at ``root``;
    return its log lines and, when it raised, the error in one line (the traceback is logged)."""
    lines: list[str] = []
    try:
        fn(cfg, Study(root), *args, log=lines.append)
    except Exception as exc:
        lines += traceback.format_exc().rstrip().splitlines()
        first = str(exc).strip().splitlines()
        return {"log": lines, "error": f"{type(exc).__name__}: {first[0] if first else ''}"}
    return {"log": lines, "error": None}


def _worker_init(lock_owner: str, driver: int) -> None:
    """A worker works for the driver's lock, leaves Ctrl-C to the driver (which stops it), and
    exits when the driver is gone (killed): no orphan keeps training."""
    import signal

    if lock_owner:
        os.environ["KDCAL_LOCK_OWNER"] = lock_owner
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == driver:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _stop_workers(pool) -> None:
    """Cancel what has not started and terminate the workers now (a Ctrl-C or an error here)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def _run_in_workers(cfg: StudyConfig, study: Study, tasks: list[Task], desc: str, log) -> None:
    """Run the tasks in ``cfg.workers`` spawned processes; log each one's lines as it finishes,
    then raise one line for the failures, after every other task has finished."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    wcfg = task_config(cfg)
    lock = study.root / ".lock"
    owner = os.environ.get("KDCAL_LOCK_OWNER") or (lock.read_text().strip() if lock.exists() else "")
    pool = ProcessPoolExecutor(max_workers=min(cfg.workers, len(tasks)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(owner, os.getpid()))
    failures, total, done = [], len(tasks), 0
    bar = tqdm(total=total, desc=desc, unit="task")
    estimates, left = _plan_estimates(cfg), list(tasks)
    _show_eta(bar, cfg, left, estimates)
    try:
        with _environment(TQDM_DISABLE="1"):  # no progress bars from the workers' trainings
            pending = {pool.submit(execute_in_place, wcfg, t.fn, t.args, str(study.root)): t
                       for t in tasks}
        for future in as_completed(pending):
            task, done = pending[future], done + 1
            label = task.label or task.runs[0]
            try:
                result = future.result()
            except Exception as exc:  # the worker died (killed, out of memory): no result
                first = str(exc).strip().splitlines()
                result = {"log": [], "error": f"{type(exc).__name__}: {first[0] if first else ''}"}
            for line in result["log"]:
                log(line)
            if result["error"]:
                failures.append(f"{label}: {result['error']}")
                log(f"[{desc}] FAILED {failures[-1]}")
            left.remove(task)
            _show_eta(bar, cfg, left, estimates)
            bar.update(1)
            log(f"[{desc}] {done}/{total} tasks done ({label})")
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        bar.close()
    pool.shutdown()
    if failures:
        raise ExecutorError(f"{len(failures)} of {total} {desc} tasks failed in local workers; "
                            f"first: {failures[0]}")


@contextmanager
def _environment(**values: str):
    """Set environment variables for the processes started inside, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


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
    estimates = _plan_estimates(cfg)
    _show_eta(bar, cfg, list(pending.values()), estimates)
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
        _show_eta(bar, cfg, list(pending.values()), estimates)
        bar.update(1)
        log(f"[{desc}] {total - len(pending)}/{total} tasks done ({task.label})")
    bar.close()
    if failures:
        raise ExecutorError(f"{len(failures)} of {total} {desc} tasks failed on Ray; first: {failures[0]}")
