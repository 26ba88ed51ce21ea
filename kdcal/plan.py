"""`kdcal plan`: a profile's grid and its estimated time per stage, before anything runs.

The estimate is built from seconds per optimizer step measured on real runs, per architecture and
batch size, per model (``step_times.json``, derived from the committed runs' logs by
:func:`fit_from_logs`; ``scripts/fit_step_times.py`` rewrites it). A task (one teacher, or the
students of one teacher and seed) costs its steps times the step time, plus predicting its
val/test (and, for teachers, train) images and a fixed start-up; a stage is the schedule of its
tasks on the workers, largest first as the executor hands them out, plus a fixed part (the
notebook's kernel, figures). Unmeasured shapes scale by forward multiply-accumulates: linearly
with the batch on a CPU (compute-bound), not below the measured batch on a GPU (launch-bound:
BENCHMARKS measured under 0.5% of the card's peak at these sizes).
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import budget
from .config import PROFILES, TRAIN_POOL, StudyConfig, regime_cells, resolve, sweep_taus
from .models import forward_macs
from .runs import teacher_runs

STEP_TIMES = Path(__file__).with_name("step_times.json")
# (channels, image size, classes, test images) of each dataset, known without loading it
SHAPES = {"fmnist": (1, 28, 10, 10000), "cifar10": (3, 32, 10, 10000),
          "cifar100": (3, 32, 100, 10000)}
STAGES = ("01 teachers", "02 calibration", "03 students", "04 analysis", "05 regimes")


# ---------------------------------------------------------------- the grid
def shape(cfg: StudyConfig) -> tuple[int, int, int, int]:
    if cfg.dataset == "synthetic":
        return (cfg.synthetic_channels, cfg.synthetic_size, cfg.synthetic_classes,
                cfg.synthetic_test)
    return SHAPES[cfg.dataset]


def images(cfg: StudyConfig) -> dict:
    """How many images teachers and students train on, and how many are predicted."""
    pool = cfg.synthetic_train if cfg.dataset == "synthetic" else TRAIN_POOL[cfg.dataset]
    train = cfg.train_size or pool - cfg.val_size
    test = cfg.test_size or shape(cfg)[3]
    return {"teacher_train": train, "student_train": cfg.transfer_size or train,
            "val": cfg.val_size, "test": test}


def steps_per_epoch(n: int, batch: int) -> int:
    """As ``data.epoch_batches``: full batches only (one batch when n < batch)."""
    return max(1, n // batch)


def students_per_teacher(cfg: StudyConfig, seed: int) -> int:
    """As ``study.student_plan``: one per mode, plus the controls on control seeds."""
    n = len(cfg.modes)
    if not cfg.control_seeds or seed in cfg.control_seeds:
        n += len(sweep_taus(cfg))
        n += len([v for v in cfg.teacher_temperature_grid if v != 1.0])
    return n


@dataclass
class Job:
    """One task of the executor: ``models`` models of ``arch`` trained together."""
    label: str
    arch: str
    models: int
    epochs: int
    batch: int
    train_images: int
    predicted: int  # images predicted per model after training
    packed: bool = False
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return self.epochs * steps_per_epoch(self.train_images, self.batch)


def teacher_jobs(cfg: StudyConfig) -> list[Job]:
    n = images(cfg)
    predicted = n["teacher_train"] + n["val"] + n["test"]
    jobs = [Job(f"teacher {a} seed {s}", a, 1, cfg.teacher_epochs, cfg.batch_size,
                n["teacher_train"], predicted) for s in cfg.seeds for a in cfg.teachers]
    for variant in cfg.teacher_variants:
        epochs = cfg.teacher_epochs
        if variant == "early_stop":
            epochs = cfg.early_stop_epochs or max(1, cfg.teacher_epochs // 2)
        jobs += [Job(f"teacher {a} ({variant}) seed {s}", a, 1, epochs, cfg.batch_size,
                     n["teacher_train"], n["val"] + n["test"])
                 for s in cfg.seeds for a in cfg.teachers]
    return jobs


def student_jobs(cfg: StudyConfig, packs: bool) -> list[Job]:
    n = images(cfg)
    batch = cfg.student_batch_size or cfg.batch_size
    epochs = budget.student_epochs(cfg)  # as the study trains them: a step budget, when set
    jobs = [Job(f"students of no teacher seed {s}", cfg.student, 1, epochs, batch,
                n["student_train"], n["val"] + n["test"]) for s in cfg.seeds]
    for s in cfg.seeds:
        k = students_per_teacher(cfg, s)
        jobs += [Job(f"students of {a} seed {s}", cfg.student, k, epochs, batch,
                     n["student_train"], n["val"] + n["test"], packed=packs and k > 1)
                 for a in cfg.teachers]
    return jobs


def regime_jobs(cfg: StudyConfig, packs: bool) -> tuple[list[Job], list[Job]]:
    """The teachers and students notebook 05 adds to the base study (cells share runs)."""
    cells = regime_cells(cfg)
    if not cells:
        return [], []
    base_cell = cells[0][2]
    seen = {rid for rid, _, _ in teacher_runs(base_cell)}
    teachers, students = [], []
    for factor, level, cell in cells[1:]:
        new = {(a, s) for rid, a, s in teacher_runs(cell) if rid not in seen}
        seen |= {rid for rid, _, _ in teacher_runs(cell)}
        teachers += [j for j in teacher_jobs(dataclasses.replace(cell, teacher_variants=[]))
                     if (j.arch, int(j.label.rsplit(" ", 1)[1])) in new]
        students += [j for j in student_jobs(cell, packs) if j.models > 1]
    return teachers, students


# ---------------------------------------------------------------- step times
@lru_cache(maxsize=None)
def _macs(arch: str, channels: int, classes: int, size: int) -> int:
    return forward_macs(arch, channels, classes, size)


def load_step_times(path: Path = STEP_TIMES) -> dict:
    return json.loads(Path(path).read_text())


def step_seconds(table: dict, device: str, arch: str, batch: int, image: tuple, packed: bool
                 ) -> float:
    """Seconds per optimizer step of one model: measured, else scaled from the nearest row."""
    rows = [r for r in table["rows"] if r["device"] == device]
    if not rows:
        raise ValueError(f"no step times measured for device {device!r}; measured: "
                         f"{', '.join(sorted({r['device'] for r in table['rows']}))}")
    same = [r for r in rows if r["packed"] == packed] or rows
    channels, size, classes = image
    want = _macs(arch, channels, classes, size)

    def work(r):
        c, s, k = r["image"]
        return _macs(r["arch"], c, k, s) * r["batch"]

    ref = min(same, key=lambda r: (r["arch"] != arch, abs(math.log(work(r) / (want * batch)))))
    per_image = ref["seconds_per_step"] / ref["batch"] * want / (work(ref) / ref["batch"])
    if table["devices"][device]["batch_scaling"] == "floor":  # launch-bound below the measured batch
        return per_image * max(batch, ref["batch"])
    return per_image * batch


def job_seconds(job: Job, table: dict, device: str, image: tuple) -> float:
    const = table["devices"][device]
    step = step_seconds(table, device, job.arch, job.batch, image, job.packed)
    per_image = step / max(job.batch, 1)
    return (job.models * (job.steps * step + job.predicted * per_image * const["predict_ratio"])
            + const["task_seconds"])


def schedule(seconds: list[float], workers: int) -> float:
    """Wall time of tasks handed out largest first to ``workers`` (``executor.largest_first``)."""
    free = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(free, free[0] + s)
    return max(free)


# ---------------------------------------------------------------- the plan
@dataclass
class Plan:
    profile: str
    device: str
    workers: int
    stages: dict = field(default_factory=dict)  # name -> {"jobs": [...], "seconds": float}

    @property
    def seconds(self) -> float:
        return sum(s["seconds"] for s in self.stages.values())


def make_plan(cfg: StudyConfig, device: str | None = None, profile: str = "",
              table: dict | None = None) -> Plan:
    """The grid of ``cfg`` and its estimated seconds per stage on ``device`` (default: cfg's)."""
    table = table or load_step_times()
    device = device or cfg.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in table["devices"]:
        raise ValueError(f"no step times measured for device {device!r}; measured: "
                         f"{', '.join(table['devices'])}")
    const = table["devices"][device]
    packs = cfg.pack_students == "on" or (cfg.pack_students == "auto" and device == "cuda")
    workers = max(1, cfg.workers) if cfg.executor == "local" else max(1, cfg.workers)
    channels, size, classes, _ = shape(cfg)
    image = (channels, size, classes)
    plan = Plan(profile, device, workers)

    def stage(name, jobs, fixed):
        for j in jobs:
            j.seconds = job_seconds(j, table, device, image)
        wall = schedule([j.seconds for j in jobs], workers) if jobs else 0.0
        plan.stages[name] = {"jobs": jobs, "seconds": wall + fixed}

    n_teachers = len(cfg.seeds) * len(cfg.teachers) * (1 + len(cfg.teacher_variants))
    stage("01 teachers", teacher_jobs(cfg), const["stage_seconds"])
    stage("02 calibration", [], const["calibration_seconds"]
          + const["calibration_per_teacher"] * n_teachers * len(cfg.calibrators))
    stage("03 students", student_jobs(cfg, packs), const["stage_seconds"])
    stage("04 analysis", [], const["analysis_seconds"])
    if cfg.regimes:
        teachers, students = regime_jobs(cfg, packs)
        cells = len(regime_cells(cfg))
        for j in teachers + students:
            j.seconds = job_seconds(j, table, device, image)
        plan.stages["05 regimes"] = {
            "jobs": teachers + students,
            "seconds": schedule([j.seconds for j in teachers], workers)
            + schedule([j.seconds for j in students], workers)
            + cells * const["calibration_seconds"] + const["stage_seconds"]}
    return plan


def plan_profile(profile: str, overrides: dict | None = None, device: str | None = None) -> Plan:
    """The plan of a profile; a profile meant for another device still plans on this machine."""
    overrides = dict(overrides or {})
    wanted = device or overrides.get("device") or PROFILES[profile].get("device", "cpu") \
        if profile in PROFILES else None
    cfg = resolve(profile, {**overrides, "device": "cpu"})  # no GPU needed to plan for one
    return make_plan(cfg, wanted, profile)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def format_plan(plan: Plan) -> str:
    lines = [f"plan for profile {plan.profile or '(config)'} on {plan.device}, {plan.workers} "
             f"worker(s) (step times: {STEP_TIMES.name}, measured; an estimate, not a promise)"]
    for name, stage in plan.stages.items():
        jobs = stage["jobs"]
        lines.append(f"  {name:<15} {_duration(stage['seconds']):>12}")
        groups = defaultdict(lambda: [0, 0, 0, set()])
        for j in jobs:
            kind = "teachers" if j.label.startswith("teacher") else "students"
            g = groups[(kind, j.arch, j.epochs, j.batch)]
            g[0] += j.models
            g[1] += j.models * j.steps
            g[2] += 1
        for (kind, arch, epochs, batch), (models, steps, tasks, _) in groups.items():
            lines.append(f"      {models:4d} {kind} {arch}, {epochs} epochs at batch {batch}: "
                         f"{steps:,} optimizer steps in {tasks} task(s)")
    lines.append(f"  {'total':<15} {_duration(plan.seconds):>12}")
    return "\n".join(lines)


def counts(cfg: StudyConfig) -> dict:
    """Teachers, students (and of them the controls), calibrators, per the config."""
    students = sum(1 + len(cfg.teachers) * students_per_teacher(cfg, s) for s in cfg.seeds)
    base = len(cfg.seeds) * (1 + len(cfg.teachers) * len(cfg.modes))
    return {"teachers": len(cfg.seeds) * len(cfg.teachers),
            "teacher_variants": len(cfg.seeds) * len(cfg.teachers) * len(cfg.teacher_variants),
            "students": students, "controls": students - base,
            "calibrators": len(cfg.calibrators)}


def eta_seconds(cfg: StudyConfig, stage: str) -> float | None:
    """The plan's estimate for one stage of ``cfg`` (for progress bars); None when unknown."""
    try:
        return make_plan(cfg).stages[stage]["seconds"]
    except (ValueError, KeyError, OSError):
        return None


# ---------------------------------------------------------------- measuring, from committed logs
_EPOCH = re.compile(r"\[(teacher|students of) (.+?) seed (\d+)\] (.+?) epoch (\d+)/(\d+) .* "
                    r"([0-9.]+)s$")
_STAGE = re.compile(r"^(\S+ \S+) == (\S+)")
_DONE = re.compile(r"^(\S+ \S+) \[(teachers|student groups)\] \d+/\d+ tasks done")


def parse_log(path) -> dict:
    """Epoch lines of a study log: {(kind, who, seed, epoch): [(member, seconds), ...]}, the
    stage start and task-completion times (when the log has timestamps) and the seeds trained.

    Only the log's first run counts: a study grown by ``kdcal add`` and re-analysed (or a run
    resumed) appends later passes that train nothing or part of the grid, while ``timing.json``
    keeps the first run's wall; mixing them made the fit's analysis stage hours long."""
    import datetime as dt

    epochs, starts, last = defaultdict(list), {}, {}
    for line in Path(path).read_text().splitlines():
        m = _STAGE.match(line)
        if m:
            if m.group(2) in starts:  # a later pass over the same study
                break
            starts[m.group(2)] = dt.datetime.fromisoformat(m.group(1))
            continue
        m = _DONE.match(line)
        if m:
            last[m.group(2)] = dt.datetime.fromisoformat(m.group(1))
        m = _EPOCH.search(line)
        if m:
            kind, who, seed, member, epoch, _, seconds = m.groups()
            epochs[(kind, who, int(seed), int(epoch))].append((member, float(seconds)))
    return {"epochs": epochs, "starts": starts, "last_done": last,
            "seeds": sorted({seed for (_, _, seed, _) in epochs})}


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def measured_rows(log: dict, cfg: StudyConfig, device: str, workers: int, source: str
                  ) -> list[dict]:
    """Median seconds per step per model for every (arch, batch, packed) in one study's log."""
    n = images(cfg)
    channels, size, classes, _ = shape(cfg)
    samples = defaultdict(list)
    for (kind, who, seed, epoch), members in log["epochs"].items():
        if kind == "teacher":
            arch, batch, k = who.split(" ")[0], cfg.batch_size, 1
            train = n["teacher_train"]
        else:
            arch, batch, k = cfg.student, cfg.student_batch_size or cfg.batch_size, len(members)
            train = n["student_train"]
        packed = device == "cuda" and k > 1  # pack_students=auto
        seconds = members[0][1] / steps_per_epoch(train, batch) / k
        if epoch > 1:  # the first epoch pays warm-up (and on a GPU, kernel selection)
            samples[(arch, batch, packed)].append(seconds)
    return [{"device": device, "arch": a, "batch": b, "packed": p,
             "image": [channels, size, classes], "workers": workers,
             "seconds_per_step": round(_median(v), 6), "epochs_measured": len(v),
             "source": source} for (a, b, p), v in sorted(samples.items())]


def _config_of(study_dir: Path) -> StudyConfig:
    """A committed study's config: study.json (a kdcal run), or timing.json of a GPU slice
    (``scripts/gpu_slice.py``: the quick profile with the slice's overrides)."""
    if (study_dir / "study.json").exists():
        values = json.loads((study_dir / "study.json").read_text())["config"]
        return StudyConfig(**{k: v for k, v in values.items()
                              if k in {f.name for f in dataclasses.fields(StudyConfig)}})
    overrides = json.loads((study_dir / "timing.json").read_text())["config"]
    overrides = {k: v for k, v in overrides.items() if k not in ("device", "workers")}
    return dataclasses.replace(resolve("quick", overrides), workers=0)


def measured_walls(study_dir: Path) -> dict:
    """Seconds of the stages of a committed run, read from its log and timing.json."""
    timing = json.loads((study_dir / "timing.json").read_text())
    if isinstance(timing["seconds"], dict):  # a GPU slice: stages timed by the script itself
        s = timing["seconds"]
        return {"01 teachers": s["teachers"], "02 calibration": s["calibration"],
                "03 students": s["students"], "total": s["total"]}
    log = parse_log(study_dir / "log.txt")
    start, cal, students = (log["starts"][k] for k in ("01_train_teachers",
                                                         "02_calibrate_teachers",
                                                         "03_distill_students"))
    end = log["last_done"]["student groups"]
    return {"01 teachers": (cal - start).total_seconds(), "02 calibration": (students - cal).total_seconds(),
            "03 students": (end - students).total_seconds(),
            "04 analysis": timing["seconds"] - (end - start).total_seconds(),
            "total": timing["seconds"]}


# confirm-transfer's study folder was assembled by `kdcal add`: its log.txt trains nothing, so its
# seed 0's own run (log.txt, timing.json, study.json as that run wrote them) is kept beside it; it
# measures the width teachers and the tiny student (resnet8x0.125), whose steps cost far more than
# their share of multiply-accumulates
CPU_RUNS = ("outputs/quick", "outputs/evidence", "outputs/confirm-transfer/seed-logs/0")


def fit_from_logs(root: Path, cpu_runs=CPU_RUNS,
                  cuda_runs=("outputs/gpu-check",)) -> dict:
    """The step-time table and the per-task and per-stage constants, from committed runs.

    Step times: median over epochs 2.. of (epoch seconds / steps / models in the loop). The
    constants (a task's fixed start-up, predicting an image as a share of training on it, a
    stage's fixed part) minimise the squared relative error of the teacher and student stage
    walls of the runs; calibration and analysis are linear fits of their measured walls.
    """
    root = Path(root)
    table = {"rows": [], "devices": {}}
    walls = {}
    for device, runs in (("cpu", cpu_runs), ("cuda", cuda_runs)):
        for run in runs:
            log = parse_log(root / run / "log.txt")
            cfg = _config_of(root / run)
            if log["seeds"]:  # a grown study: the seeds its first run trained
                cfg = dataclasses.replace(cfg, seeds=log["seeds"])
            table["rows"] += measured_rows(log, cfg, device, cfg.workers, f"{run}/log.txt")
            walls[run] = (cfg, measured_walls(root / run))
    for device, runs in (("cpu", cpu_runs), ("cuda", cuda_runs)):
        table["devices"][device] = _fit_constants(table, device, [walls[r] for r in runs],
                                                  table["devices"].get("cpu"))
    return table


def _fit_constants(table: dict, device: str, runs: list, cpu: dict | None) -> dict:
    scaling = "floor" if device == "cuda" else "linear"
    notebooks = device == "cpu"  # the GPU slice ran the stages without notebooks
    best = None
    for r100 in range(0, 101, 2):
        for c10 in range(0, 301, 5):
            const = {"batch_scaling": scaling, "predict_ratio": r100 / 100,
                     "task_seconds": c10 / 10}
            probe = {"rows": table["rows"], "devices": {device: const}}
            pairs = []
            for cfg, wall in runs:
                image = shape(cfg)[:3]
                packs = device == "cuda" and cfg.pack_students != "off"
                for name, jobs in (("01 teachers", teacher_jobs(cfg)),
                                   ("03 students", student_jobs(cfg, packs))):
                    span = schedule([job_seconds(j, probe, device, image) for j in jobs],
                                    max(1, cfg.workers))
                    pairs.append((span, wall[name]))
            fixed = 0.0
            if notebooks:  # the stage constant minimising the relative error, in closed form
                fixed = sum((m - s) / m ** 2 for s, m in pairs) / sum(1 / m ** 2 for _, m in pairs)
                fixed = max(0.0, fixed)
            error = sum(((s + fixed) / m - 1) ** 2 for s, m in pairs)
            if best is None or error < best[0]:
                best = (error, {**const, "stage_seconds": round(fixed, 2)})
    const = best[1]
    if notebooks:
        (t1, w1), (t2, w2) = [(len(cfg.seeds) * len(cfg.teachers) * len(cfg.calibrators),
                               wall["02 calibration"]) for cfg, wall in runs[:2]]
        base, per = calibration_line((t1, w1), (t2, w2))
        const.update(calibration_seconds=round(base, 2),
                     calibration_per_teacher=round(per, 4),
                     analysis_seconds=round(sum(w["04 analysis"] for _, w in runs) / len(runs), 2))
    else:  # the notebooks' own parts (kernels, figures, tables) run on the CPU either way
        const.update({k: cpu[k] for k in ("stage_seconds", "calibration_seconds",
                                           "calibration_per_teacher", "analysis_seconds")})
    const["fit_relative_error"] = round(math.sqrt(best[0] / max(1, 2 * len(runs))), 4)
    return const


def calibration_line(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(seconds, seconds per teacher x calibrator) of the calibration stage through two runs'
    (fits, wall) points. Runs from machines of different speed can slope the line downwards;
    a fit never gets faster per teacher, so such a pair gives a flat line at their mean."""
    (t1, w1), (t2, w2) = a, b
    per = (w2 - w1) / (t2 - t1) if t2 != t1 else 0.0
    if per < 0:
        return (w1 + w2) / 2, 0.0
    return w1 - per * t1, per


# ---------------------------------------------------------------- the executor's ETA
def task_estimates(cfg: StudyConfig, table: dict | None = None) -> dict[str, float]:
    """Estimated seconds of every task of ``cfg`` by its executor label (``Task.label``)."""
    plan = make_plan(cfg, table=table)
    return {j.label: j.seconds for stage in plan.stages.values() for j in stage["jobs"]}


def remaining_seconds(cfg: StudyConfig, labels: list[str], estimates: dict[str, float]
                      ) -> float | None:
    """The plan's wall time of these tasks on the config's workers; None if one is unknown."""
    if not labels or any(label not in estimates for label in labels):
        return None
    return schedule([estimates[label] for label in labels], max(1, cfg.workers))


def duration(seconds: float) -> str:
    return _duration(seconds)
