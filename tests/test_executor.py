"""The executors: local (in-process, or N worker processes) and Ray (a task per training, results
shipped back).

The artifact, config and worker-process tests need no Ray. The end-to-end tests start a real two-node Ray
cluster on this machine (a head and a worker, bound to 127.0.0.1, token auth with a private
token), run the smoke profile on it, and compare results.csv byte for byte with the local
executor's: every Ray task trains with the driver's device, bf16 setting and the config's CPU
thread count, so floating-point results are the same as in-process.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kdcal import config, executor, study, teachers
from kdcal.executor import Task, deliver, execute_in_scratch, pack_runs, run_tasks
from kdcal.store import Study, read_json, write_json

TINY = {"teachers": ["resnet8"], "seeds": [0], "teacher_epochs": 1, "student_epochs": 1,
        "teacher_variants": [], "tau_grid": [], "teacher_temperature_grid": []}


# ---------------------------------------------------------------- artifacts (no Ray)
def _fake_run(cfg, st: Study, rid: str, value: float, log=print) -> None:
    """A stand-in training: reads its resume checkpoint if shipped, writes a run, removes it."""
    ckpt = st.root / "runs" / f"{rid}.ckpt"
    resumed = ckpt.read_text() if ckpt.exists() else ""
    st.begin_run(rid, {"value": value})
    (st.run_dir(rid) / "sub").mkdir()
    (st.run_dir(rid) / "sub" / "extra.txt").write_text("x")
    write_json({"value": value, "resumed": resumed}, st.run_dir(rid) / "metrics.json")
    ckpt.unlink(missing_ok=True)
    log(f"[{rid}] trained")


def test_scratch_execution_ships_inputs_and_returns_runs_and_removed_checkpoints():
    cfg = config.resolve("smoke")
    out = execute_in_scratch(cfg, _fake_run, ("r1", 1.0), ["r1"], {"runs/r1.ckpt": b"epoch 3"},
                             ["runs/r1.ckpt"])
    files = out["runs"]["r1"]
    assert sorted(files) == ["config.json", "metrics.json", "sub/extra.txt"]
    assert json.loads(files["metrics.json"]) == {"value": 1.0, "resumed": "epoch 3"}
    assert out["removed"] == ["runs/r1.ckpt"] and out["log"] == ["[r1] trained"]


def test_delivery_writes_metrics_last_and_a_duplicate_changes_nothing(tmp_path, monkeypatch):
    target = Study(tmp_path / "study")
    (target.runs).mkdir(parents=True)
    (target.runs / "r1.ckpt").write_text("stale checkpoint")
    out = execute_in_scratch(config.resolve("smoke"), _fake_run, ("r1", 1.0), ["r1"], {},
                             ["runs/r1.ckpt"])
    order = []
    real = executor.atomic_write_bytes
    monkeypatch.setattr(executor, "atomic_write_bytes",
                        lambda data, path: (order.append(Path(path).name), real(data, path)))
    assert deliver(target, out["runs"], ["runs/r1.ckpt"]) == ["r1"]
    assert order[-1] == "metrics.json" and len(order) == 3
    assert not (target.runs / "r1.ckpt").exists()
    first = pack_runs(target, ["r1"])
    assert first == out["runs"]
    # the same run delivered again with other contents (a retried or duplicated task): kept as is
    again = execute_in_scratch(config.resolve("smoke"), _fake_run, ("r1", 2.0), ["r1"], {}, [])
    assert deliver(target, again["runs"]) == []
    assert pack_runs(target, ["r1"]) == first


def test_delivery_of_an_unfinished_run_leaves_it_not_done(tmp_path):
    target = Study(tmp_path)
    deliver(target, {"r1": {"config.json": b"{}", "failed.json": b'{"error": "nan"}'}})
    assert not target.is_done("r1") and (target.run_dir("r1") / "failed.json").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd"])
def test_artifact_paths_must_stay_inside_the_study(tmp_path, name):
    with pytest.raises(ValueError, match="must stay inside the study folder"):
        deliver(Study(tmp_path), {"r1": {name: b"x"}})


def _failing_run(cfg, st: Study, rid: str, value: float, log=print) -> None:
    log(f"[{rid}] starting")
    raise RuntimeError(f"boom in {rid}\nsecond line")


def _locking_run(cfg, st: Study, rid: str, value: float, log=print) -> None:
    """A task that takes the study lock, which the driver holds: a worker must get it."""
    with st.lock():
        _fake_run(cfg, st, rid, value, log=log)


def _sleeping_run(cfg, st: Study, rid: str, value: float, log=print) -> None:
    executor.atomic_write_bytes(str(os.getpid()).encode(), st.root / f"{rid}.started")  # whole
    time.sleep(value)


def test_local_executor_skips_done_runs_and_runs_the_rest_in_order(tmp_path):
    st, lines = Study(tmp_path), []
    _fake_run(None, st, "r0", 0.0, log=lambda *_: None)
    tasks = [Task(_fake_run, (rid, float(i)), [rid]) for i, rid in enumerate(["r0", "r1", "r2"])]
    run_tasks(config.resolve("smoke", {"workers": 0}), st, tasks, "fake", log=lines.append)
    assert lines == ["[r0] done, skipped", "[r1] trained", "[r2] trained"]


def test_a_teacher_trained_in_scratch_equals_the_local_one(tmp_path):
    """The Ray path's worker half without Ray: same files, same numbers, as in-process."""
    import numpy as np

    cfg = config.resolve("smoke", TINY)
    rid, arch, seed = study.teacher_runs(cfg)[0]
    local = Study(tmp_path / "local")
    run_tasks(cfg, local, [Task(teachers._teacher_task, (rid, arch, seed), [rid])], "t",
              log=lambda *_: None)
    out = execute_in_scratch(executor.task_config(cfg), teachers._teacher_task, (rid, arch, seed),
                             [rid], {}, [f"runs/{rid}/train.pt"])
    shipped = Study(tmp_path / "shipped")
    deliver(shipped, out["runs"])
    assert sorted(p.name for p in local.run_dir(rid).iterdir()) == \
        sorted(p.name for p in shipped.run_dir(rid).iterdir())
    a, b = read_json(local.run_dir(rid) / "metrics.json"), read_json(shipped.run_dir(rid) / "metrics.json")
    for m in (a, b):
        m.pop("train_seconds")
        for h in m["history"]:
            h.pop("seconds")
    assert a == b
    za, zb = (np.load(s.run_dir(rid) / "logits.npz") for s in (local, shipped))
    assert all(np.array_equal(za[k], zb[k]) for k in za.files)


# ---------------------------------------------------------------- local worker processes
def test_the_executor_never_imports_the_study():
    code = "import kdcal.executor, sys; assert 'kdcal.study' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_failing_task_in_a_worker_is_one_line_naming_it_after_the_others_finished(tmp_path):
    st, lines = Study(tmp_path), []
    tasks = [Task(_failing_run if rid == "r1" else _locking_run, (rid, float(i)), [rid],
                  label=f"fake {rid}") for i, rid in enumerate(["r0", "r1", "r2", "r3"])]
    cfg = config.resolve("smoke", {"workers": 2})
    with st.lock(), pytest.raises(executor.ExecutorError) as info:
        run_tasks(cfg, st, tasks, "fakes", log=lines.append)
    assert str(info.value) == ("1 of 4 fakes tasks failed in local workers; first: "
                               "fake r1: RuntimeError: boom in r1")
    assert all(st.is_done(rid) for rid in ("r0", "r2", "r3")) and not st.is_done("r1")
    assert "[fakes] FAILED fake r1: RuntimeError: boom in r1" in lines
    assert "[r1] starting" in lines and "[r2] trained" in lines  # the workers' lines come back
    assert sorted(x for x in lines if "tasks done" in x)[-1].startswith("[fakes] 4/4 tasks done")
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_stopping_the_driver_leaves_no_worker_behind(tmp_path, how):
    """Ctrl-C stops the workers at once; a killed driver's workers notice and exit."""
    import psutil

    # The driver is a terminal user's process: Ctrl-C raises KeyboardInterrupt there even when
    # this test runs in the background (`cmd &` starts with SIGINT ignored, which a child
    # inherits; that made this test hang in background suite runs). It dumps its threads'
    # stacks on SIGUSR1, so that a hang names where it hangs.
    code = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.path.insert(0, %r); import test_executor as t; "
            "from kdcal import config; from kdcal.executor import Task, run_tasks; "
            "from kdcal.store import Study; "
            "run_tasks(config.resolve('smoke', {'workers': 2}), Study(%r), "
            "[Task(t._sleeping_run, (r, 300.0), [r]) for r in ('a', 'b', 'c')], 'sleep')"
            % (str(Path(__file__).parent), str(tmp_path)))
    driver = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(list(tmp_path.glob("*.started"))) < 2:
        assert driver.poll() is None, driver.stderr.read()[-2000:]
        assert time.time() < deadline, "the workers never started"
        time.sleep(0.1)
    workers = [psutil.Process(int(p.read_text())) for p in tmp_path.glob("*.started")]
    if how == "ctrl-c":
        driver.send_signal(signal.SIGINT)
        try:
            driver.wait(timeout=120)
        except subprocess.TimeoutExpired:
            driver.send_signal(signal.SIGUSR1)
            time.sleep(3)
            driver.kill()
            pytest.fail(f"the driver did not exit within 120 s of SIGINT; its stderr and "
                        f"threads:\n{driver.stderr.read()[-8000:]}")
        assert driver.returncode != 0
        assert "KeyboardInterrupt" in driver.stderr.read()
    else:
        driver.kill()
        driver.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    for p in alive:
        p.kill()
    assert not alive, "a worker outlived its driver"
    assert not (tmp_path / "c.started").exists(), "a task started after the stop"


def test_workers_get_the_largest_tasks_first_ties_in_plan_order():
    tasks = [Task(_fake_run, (n, 0.0), [n], cost=c)
             for n, c in [("a", 1.0), ("b", 5.0), ("c", 1.0), ("d", 3.0), ("e", 5.0)]]
    assert [t.runs[0] for t in executor.largest_first(tasks)] == ["b", "e", "d", "a", "c"]
    assert [t.runs[0] for t in tasks] == ["a", "b", "c", "d", "e"]  # the plan is not reordered


def test_teacher_tasks_cost_what_their_training_costs():
    """Costs follow forward MACs x epochs, so the widest teacher of the last seed starts first,
    not last (where it would train alone while the other worker idles)."""
    cfg = config.resolve("evidence")
    tasks = study.teacher_tasks(cfg)
    assert [t.label for t in tasks][:2] == ["teacher resnet8 seed 0", "teacher resnet14 seed 0"]
    cost = {t.label.split()[1]: t.cost for t in tasks}
    assert cost["resnet8"] < cost["resnet14"] < cost["resnet20"] < cost["resnet32"]
    assert cost["resnet8"] < cost["resnet8x2"] < cost["resnet8x4"] < cost["resnet14x3"]
    assert study.training_cost("resnet8", 20) == 2 * study.training_cost("resnet8", 10)
    assert study.training_cost("resnet8", 10, models=3) == 3 * study.training_cost("resnet8", 10)
    first = executor.largest_first(tasks)
    assert {t.label for t in first[:5]} == {f"teacher resnet14x3 seed {s}" for s in range(5)}
    assert first[-1].label == "teacher resnet8 seed 4"


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_parallel_workers_give_the_same_study_byte_for_byte(tmp_path):
    """workers=2 (one thread per training) against one by one in this process, one thread."""
    import numpy as np

    small = {**TINY, "seeds": [0, 1], "modes": ["uncalibrated", "compose"], "calibrators": []}
    folders = {}
    for workers in (1, 2):
        cfg = config.resolve("smoke", {**small, "workers": workers, "threads": 0 if workers > 1 else 1})
        d = folders[workers] = tmp_path / f"w{workers}"
        for stage in (study.train_teachers, study.calibrate_teachers, study.distill_students):
            stage(cfg, d, log=lambda *_: None)
        study.write_results(cfg, d)
    one, two = folders[1], folders[2]
    assert (one / "results.csv").read_bytes() == (two / "results.csv").read_bytes()
    runs = sorted(p.name for p in (one / "runs").iterdir())
    assert runs == sorted(p.name for p in (two / "runs").iterdir()) and len(runs) == 2 + 2 * 3
    for rid in runs:
        a, b = (read_json(f / "runs" / rid / "metrics.json") for f in (one, two))
        for m in (a, b):
            m.pop("train_seconds")
            for h in m["history"]:
                h.pop("seconds")
        assert a == b, rid
        za, zb = (np.load(f / "runs" / rid / "logits.npz") for f in (one, two))
        assert all(np.array_equal(za[k], zb[k]) for k in za.files), rid


# ---------------------------------------------------------------- config
def test_executor_settings_are_validated_in_one_line(monkeypatch):
    with pytest.raises(config.ConfigError, match="executor='dask' is not valid; valid: local, ray"):
        config.resolve("smoke", {"executor": "dask"})
    with pytest.raises(config.ConfigError, match="ray_address='http://x' is not valid"):
        config.resolve("smoke", {"executor": "ray", "ray_address": "http://x"})
    for ok in ("", "auto", "10.0.0.5:6379", "head:6379", "ray://head:10001"):
        assert config.resolve("smoke", {"ray_address": ok}).ray_address == ok
    monkeypatch.setattr(config.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(config.ConfigError) as info:
        config.resolve("smoke", {"executor": "ray"})
    assert str(info.value) == "executor='ray' needs Ray: pip install 'kdcal[ray]'"
    with pytest.raises(config.ConfigError, match=r"workers=-1 is out of range; valid: \[0, inf\)"):
        config.resolve("smoke", {"workers": -1})


def test_executor_settings_never_enter_run_ids(tmp_path):
    local = config.resolve("smoke")
    ray_cfg = config.resolve("smoke", {"ray_address": "10.0.0.5:6379", "workers": 2})
    ray_cfg.executor = "ray"  # set directly: run ids must not depend on Ray being installed
    assert study.teacher_runs(local) == study.teacher_runs(ray_cfg)
    assert study.variant_runs(local) == study.variant_runs(ray_cfg)
    engine = study.engine_for(local)
    assert study.student_run_config(local, 0, "baseline", None, None, engine) == \
        study.student_run_config(ray_cfg, 0, "baseline", None, None, engine)


def test_worker_config_fixes_the_drivers_engine_and_threads():
    import torch

    cfg = executor.task_config(config.resolve("smoke", {"amp": "auto"}))
    assert cfg.device == "cpu" and cfg.amp in ("bf16", "off")
    assert cfg.threads == torch.get_num_threads()
    assert executor.task_resources(cfg) == {"num_cpus": cfg.threads}
    assert executor.task_config(config.resolve("smoke", {"threads": 1})).threads == 1
    # parallel workers train with one thread each unless told otherwise
    assert executor.task_config(config.resolve("smoke", {"workers": 2})).threads == 1
    assert executor.task_config(config.resolve("smoke", {"workers": 2, "threads": 3})).threads == 3


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_the_local_path_never_imports_ray(tmp_path):
    code = ("import sys; from kdcal import config, study; "
            f"cfg = config.resolve('smoke', {TINY!r}); d = {str(tmp_path)!r}; "
            "study.train_teachers(cfg, d, log=lambda *a: None); "
            "study.calibrate_teachers(cfg, d, log=lambda *a: None); "
            "study.compare_calibrators(cfg, d, log=lambda *a: None); "
            "study.distill_students(cfg, d, log=lambda *a: None); "
            "assert len(study.student_table(cfg, d)) == 5, 'students missing'; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---------------------------------------------------------------- a real Ray cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A head and a worker node started with `ray start --block`, each in its own session, so
    that the test can stop exactly these processes (and their workers) at the end."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env, self.nodes = root, env, {}
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _ports(self) -> list[str]:
        return ["--dashboard-agent-listen-port", str(_free_port()),
                "--dashboard-agent-grpc-port", str(_free_port()),
                "--runtime-env-agent-port", str(_free_port()),
                "--metrics-export-port", str(_free_port())]

    def start(self, name: str, args: list[str], attempts: int = 3) -> None:
        """Start a node; again on failure: Ray gives a node 30 s to register with its GCS,
        which a busy machine can miss."""
        for attempt in range(attempts):
            if self._start_once(name, args, attempt):
                return
        pytest.fail(f"Ray {name} did not start: {(self.root / f'{name}.log').read_text()[-3000:]}")

    def _start_once(self, name: str, args: list[str], attempt: int, timeout: float = 180) -> bool:
        ray = str(Path(sys.executable).with_name("ray"))
        log = self.root / f"{name}.log"
        # one CPU a node: two one-thread tasks at a time on these two cores, as the local executor
        # runs them, and half the worker processes (each job starts its own, each imports torch)
        cmd = [ray, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
               "--object-store-memory=200000000", "--disable-usage-stats", *self._ports(), *args]
        self.nodes[name] = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        deadline = time.time() + timeout
        while "block forever" not in log.read_text():
            if self.nodes[name].poll() is not None or time.time() > deadline:
                self.stop([name])  # what this attempt left behind
                return False
            time.sleep(0.5)
        return True

    def processes(self, name: str):
        import psutil

        root = psutil.Process(self.nodes[name].pid)
        return [root, *root.children(recursive=True)]

    def stop(self, names=None) -> None:
        """SIGTERM every process of these nodes (all by default): each `ray start`, its process
        group and its descendants (Ray's workers included), then SIGKILL what is left."""
        import psutil

        procs = []
        for name in names or list(self.nodes):
            node = self.nodes[name]
            try:
                procs += self.processes(name)
            except psutil.NoSuchProcess:
                pass
            try:
                os.killpg(node.pid, signal.SIGTERM)  # its session's group, if `ray start` is gone
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        for name in names or list(self.nodes):
            try:
                os.killpg(self.nodes[name].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.nodes[name].wait()


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="kr", dir="/tmp"))  # short: Ray's socket paths live here
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONWARNINGS": "ignore"}
    cluster = Cluster(root, env)
    try:
        cluster.start("head", ["--head", f"--port={cluster.port}", f"--temp-dir={root}",
                               "--include-dashboard=false",
                               f"--ray-client-server-port={_free_port()}"])
        cluster.start("worker", [f"--address={cluster.address}"])
        yield cluster
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _ray_run(cluster, out: Path, *overrides: str, **popen):
    args = [sys.executable, "-m", "kdcal", "run", "--profile", "smoke", "--set", "executor=ray",
            "--set", f"ray_address={cluster.address}", "--out", str(out)]
    args += [a for o in overrides for a in ("--set", o)]
    return subprocess.Popen(args, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _seed_rows(table: Path, seed: int) -> list[str]:
    """The header and the rows of one seed, as written (a row depends on its own seed only:
    test_grow's halves add up to the one run byte for byte)."""
    header, *rows = table.read_text().splitlines()
    column = header.split(",").index("seed")
    return [header] + [r for r in rows if r.split(",")[column] == str(seed)]


def _busy_task_on(cluster, node: str):
    """A worker process of ``node`` executing a kdcal task right now, or None."""
    import psutil

    for p in cluster.processes(node):
        try:
            if p.cmdline() and p.cmdline()[0].startswith("ray::execute_in_scratch"):
                return p
        except psutil.NoSuchProcess:
            continue
    return None


def _kill_a_busy_task_on_the_worker_node(cluster, proc) -> None:
    """SIGKILL the first Ray worker process seen executing a kdcal task on the worker node,
    while the driver ``proc`` runs."""
    deadline, victim = time.time() + 300, None
    while victim is None:
        assert proc.poll() is None, "the run finished before a task could be killed"
        assert time.time() < deadline, "no task ever ran on the worker node"
        victim = _busy_task_on(cluster, "worker")
        time.sleep(0.05)
    assert victim.cmdline()[0].startswith("ray::execute_in_scratch"), "no longer busy"
    os.kill(victim.pid, signal.SIGKILL)


@pytest.mark.slow
def test_smoke_on_ray_with_a_worker_killed_gives_the_local_table(ray_cluster, smoke_study, tmp_path):
    """Every stage of the smoke study through `kdcal run` on Ray, for seed 0 (half the training),
    with the first task seen running on the worker node killed mid-task: Ray retries it, and the
    rows are the local study's, byte for byte. (One run for both guarantees: each used to start
    its own driver and workers.)"""
    proc = _ray_run(ray_cluster, tmp_path / "study", "seeds=[0]")
    try:
        _kill_a_busy_task_on_the_worker_node(ray_cluster, proc)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    ray_table = (tmp_path / "study" / "results.csv").read_text().splitlines()
    assert len(ray_table) > 10 and ray_table == _seed_rows(smoke_study / "results.csv", 0)
    log = (tmp_path / "study" / "log.txt").read_text()  # the training log, not the notebook
    assert "[teachers] 2/2 tasks done" in log and "[student groups] 3/3 tasks done" in log
    assert not list((tmp_path / "study" / "runs").glob("group-*.pt")), "checkpoints left behind"
