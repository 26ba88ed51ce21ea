"""The study's parameters as one validated object; the named profiles live in kdcal.profiles.

Every value a notebook or the runner uses comes from :func:`resolve`, so a typo or an out-of-range
value fails before any work starts, with a one-line message that lists what is valid.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import re
from dataclasses import dataclass, field, fields

from .calibrators import CALIBRATORS
from .budget import student_epochs
from .data import DATASETS, TRAIN_POOL
from .distill import KD_MODES, TAU_ARM_MODES, arm_name, split_mode
from .models import ARCHS, NORMS
from .profiles import PROFILES
from .train import COMPILE_MODES, PACK_CHOICES

MODES = KD_MODES
# config keys a regime may vary (notebook 05), one at a time
REGIME_FACTORS = ("tau", "label_noise", "train_size", "transfer_size", "teachers", "teacher_epochs",
                  "teacher_weight_decay", "teacher_norm", "dataset")
TEACHER_VARIANTS = ("label_smoothing", "mixup", "early_stop")
SCHEDULES = ("cosine", "step")
DEVICES = ("cpu", "cuda", "auto")
AMP = ("auto", "off", "bf16")
EXECUTORS = ("local", "ray")
RAY_MISSING = "executor='ray' needs Ray: pip install 'kdcal[ray]'"


class ConfigError(ValueError):
    """A user error in a profile, key or value; the CLI prints it as one line."""


@dataclass
class StudyConfig:
    # data
    dataset: str = "fmnist"
    data_root: str = ""  # "" = $KDCAL_DATA or ./data
    download: bool = True
    train_size: int = 0  # 0 = every training image not in validation
    val_size: int = 5000
    test_size: int = 0  # 0 = the whole test set
    split_seed: int = 0
    # true: seed s draws its own train/validation split (split_seed + s), so every seed is an
    # independent rerun of the whole pipeline; false: every seed shares the split of split_seed
    split_per_seed: bool = False
    synthetic_size: int = 16
    synthetic_train: int = 1200
    synthetic_test: int = 400
    synthetic_channels: int = 1
    synthetic_classes: int = 10
    # regime factors (notebook 05): symmetric noise in the teachers' training labels only; a
    # transfer split (students distill on images the teachers never saw, taken after train_size)
    label_noise: float = 0.0
    transfer_size: int = 0
    # models
    teachers: list = field(default_factory=lambda: ["resnet8", "resnet14", "resnet20", "resnet44"])
    student: str = "resnet8"
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    # optimisation (teachers)
    teacher_epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list = field(default_factory=list)  # epochs where step schedule multiplies by gamma
    gamma: float = 0.1
    augment: bool = False
    teacher_weight_decay: float = -1.0  # -1 = weight_decay; the teachers' own, a calibration factor
    teacher_norm: str = "batch"  # batch | none: batch norm as a calibration factor (Guo et al. 2017)
    # distillation (students)
    student_epochs: int = 30
    # a step budget instead: 0 = student_epochs; N > 0 = the students and the no-KD baseline all
    # train the fewest whole epochs that reach N optimizer steps (kdcal.budget), e.g. the steps
    # of the teacher of the student's architecture, so no comparison is a budget difference
    student_steps: int = 0
    student_batch_size: int = 0  # 0 = batch_size
    student_lr: float = 0.1
    student_milestones: list = field(default_factory=list)
    tau: float = 4.0
    alpha: float = 0.9  # KD weight; CE weight is 1 - alpha
    modes: list = field(default_factory=lambda: list(MODES))
    # controls (uncalibrated KD at other taus, tuned on validation accuracy) and the sweep of the
    # teacher's temperature multiplier at fixed tau; [] = off. control_seeds [] = every seed.
    tau_grid: list = field(default_factory=list)
    teacher_temperature_grid: list = field(default_factory=list)
    control_seeds: list = field(default_factory=list)
    # calibration: temperature scaling always runs (it sets T for the KD modes); these are
    # compared beside it on the teachers
    calibrators: list = field(default_factory=lambda: ["temperature", "histogram"])
    # calibration by training: extra teacher rows trained with label smoothing, with mixup, or
    # stopped early (after early_stop_epochs, 0 = half of teacher_epochs); [] = off
    teacher_variants: list = field(default_factory=list)
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2
    early_stop_epochs: int = 0
    # regimes (notebook 05): {config key: [levels]}, each level one cell that differs from this
    # config in that key alone; {} = no notebook 05. regime_mode is the calibrated KD mode whose
    # paired difference to uncalibrated KD is mapped.
    regimes: dict = field(default_factory=dict)
    regime_mode: str = "compose"
    # metrics
    ece_bins: int = 15
    # engine
    device: str = "cpu"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    compile_mode: str = "default"  # with compile: default, reduce-overhead (CUDA graphs), max-autotune
    # the students of one teacher and seed as one packed network (never part of run ids: it
    # changes results in the last bits only, so byte-identical tables need the same setting):
    # auto = packed on CUDA, separate loops on a CPU (measured faster there)
    pack_students: str = "auto"
    # the teachers of one architecture across the seeds as one packed program, each seed with
    # its own split, batches and initialisation (kdcal.packed_seeds); never part of run ids,
    # for the same reason: auto = packed on CUDA, one training per teacher and seed on a CPU
    pack_teachers: str = "auto"
    threads: int = 0  # CPU threads per training; 0 = 1 with workers > 1, else torch's default
    eval_batch_size: int = 1000  # prediction only; on 2 CPU cores 1000 runs about 2x faster than 256
    # where the trainings run (never part of run ids): local = in this process; ray = one Ray
    # task per training, on the cluster at ray_address ("" = start or join a local one, "auto",
    # HOST:PORT or ray://HOST:PORT)
    executor: str = "local"
    ray_address: str = ""
    # local executor: 0 or 1 = the trainings run one by one in this process; N > 1 = N worker
    # processes, each training with `threads` threads (1 when 0). Never part of run ids.
    workers: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


_ALL_CALIBRATORS = tuple(CALIBRATORS)


def _coerce(name: str, value, default):
    """Parse ``--set`` strings into the type of the field's default."""
    if isinstance(default, bool) and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if isinstance(default, list):  # allow teachers=resnet8,resnet20
                value = [v for v in value.split(",") if v]
                if all(v.lstrip("-").isdigit() for v in value):
                    value = [int(v) for v in value]
            else:
                raise ConfigError(f"{name}={value!r} is not a valid {type(default).__name__}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(default, list) and isinstance(value, (tuple, int, str)):
        value = list(value) if isinstance(value, tuple) else [value]
    if type(value) is not type(default):
        raise ConfigError(f"{name} must be a {type(default).__name__}, got {value!r}")
    return value


def parse_sets(items) -> dict:
    """``["key=value", ...]`` from the command line into a dict of strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def resolve(profile: str = "quick", overrides: dict | None = None) -> StudyConfig:
    """Profile plus overrides, type-checked and validated."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    defaults = StudyConfig()
    valid = {f.name for f in fields(StudyConfig)}
    values = dict(PROFILES[profile])
    for key, value in (overrides or {}).items():
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid: {', '.join(sorted(valid))}")
        values[key] = _coerce(key, value, getattr(defaults, key))
    cfg = StudyConfig(**values)
    validate(cfg)
    return cfg


def training_threads(cfg: StudyConfig) -> int:
    """The CPU threads of every training, 0 = torch's default. A part of the config, not of
    the machine's load: the thread count changes floating-point results, so a study's numbers
    are the same whatever runs it, as long as this is."""
    return cfg.threads or (1 if cfg.workers > 1 else 0)


def _choice(name, value, valid):
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; valid: {', '.join(map(str, valid))}")


def _range(name, value, lo, hi=None, lo_open=False):
    bad = value <= lo if lo_open else value < lo
    if bad or (hi is not None and value > hi):
        top = f"{hi}]" if hi is not None else "inf)"
        span = f"({lo}, {top}" if lo_open else f"[{lo}, {top}"
        raise ConfigError(f"{name}={value!r} is out of range; valid: {span}")


def _check_executor(cfg: StudyConfig) -> None:
    _choice("executor", cfg.executor, EXECUTORS)
    if cfg.ray_address not in ("", "auto") and not re.fullmatch(r"(ray://)?[^\s:/]+:\d+",
                                                               cfg.ray_address):
        raise ConfigError(f"ray_address={cfg.ray_address!r} is not valid; valid: '' (local "
                          "instance), auto, HOST:PORT, ray://HOST:PORT")
    if cfg.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(RAY_MISSING)


def validate(cfg: StudyConfig) -> None:
    _choice("dataset", cfg.dataset, DATASETS)
    _check_executor(cfg)
    _choice("schedule", cfg.schedule, SCHEDULES)
    _choice("device", cfg.device, DEVICES)
    _choice("amp", cfg.amp, AMP)
    _choice("pack_students", cfg.pack_students, PACK_CHOICES)
    _choice("pack_teachers", cfg.pack_teachers, PACK_CHOICES)
    _choice("compile_mode", cfg.compile_mode, COMPILE_MODES)
    for arch in [*cfg.teachers, cfg.student]:
        _choice("architecture", arch, list(ARCHS))
    if not cfg.teachers:
        raise ConfigError("teachers is empty; give at least one architecture")
    if len(set(cfg.teachers)) != len(cfg.teachers):
        raise ConfigError(f"teachers has duplicates: {cfg.teachers}")
    if not cfg.seeds or not all(isinstance(s, int) and s >= 0 for s in cfg.seeds):
        raise ConfigError(f"seeds must be a non-empty list of non-negative integers, got {cfg.seeds}")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds has duplicates: {cfg.seeds}")
    calibrated_targets = [f"cal-{name}" for name in cfg.calibrators]
    for mode in cfg.modes:
        if "@" in mode:
            _check_arm(mode, cfg.tau)
            continue
        _choice("mode", mode, [*MODES, *calibrated_targets])
        if mode.startswith("cal-") and cfg.augment:
            raise ConfigError(f"mode {mode!r} distills from a calibrator's fixed targets and needs "
                              "augment=false")
    for name in cfg.calibrators:
        _choice("calibrator", name, _ALL_CALIBRATORS)
    for variant in cfg.teacher_variants:
        _choice("teacher variant", variant, TEACHER_VARIANTS)
    _range("label_smoothing", cfg.label_smoothing, 0, 1)
    _range("mixup_alpha", cfg.mixup_alpha, 0, lo_open=True)
    if not 0 <= cfg.early_stop_epochs < cfg.teacher_epochs:
        raise ConfigError(f"early_stop_epochs={cfg.early_stop_epochs} is out of range; valid: "
                          f"[0, {cfg.teacher_epochs - 1}] (0 = half of teacher_epochs)")
    for name in ("tau_grid", "teacher_temperature_grid"):
        grid = getattr(cfg, name)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100
                   for v in grid):
            raise ConfigError(f"{name} must be numbers in (0, 100], got {grid}")
        setattr(cfg, name, [float(v) for v in grid])
    if not set(cfg.control_seeds) <= set(cfg.seeds):
        raise ConfigError(f"control_seeds {cfg.control_seeds} must be among seeds {cfg.seeds}")
    for name in ("teacher_epochs", "student_epochs", "batch_size", "ece_bins", "eval_batch_size",
                 "val_size", "synthetic_size", "synthetic_train", "synthetic_test",
                 "synthetic_channels", "synthetic_classes"):
        _range(name, getattr(cfg, name), 1)
    for name in ("train_size", "test_size", "split_seed", "threads", "student_batch_size",
                 "workers", "student_steps"):
        _range(name, getattr(cfg, name), 0)
    for name in ("lr", "student_lr", "tau"):
        _range(name, getattr(cfg, name), 0, lo_open=True)
    _range("alpha", cfg.alpha, 0, 1)
    _range("momentum", cfg.momentum, 0, 1)
    _range("weight_decay", cfg.weight_decay, 0)
    _range("gamma", cfg.gamma, 0, 1, lo_open=True)
    for name, epochs in (("milestones", cfg.teacher_epochs),
                         ("student_milestones", student_epochs(cfg))):
        ms = getattr(cfg, name)
        if not all(isinstance(m, int) and 0 < m < epochs for m in ms) or ms != sorted(ms):
            raise ConfigError(f"{name} must be increasing epochs in 1..{epochs - 1}, got {ms}")
    if cfg.dataset == "synthetic" and cfg.val_size >= cfg.synthetic_train:
        raise ConfigError(f"val_size={cfg.val_size} must be below synthetic_train={cfg.synthetic_train}")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device='cuda' but no CUDA GPU is visible; valid here: cpu, auto")
    _validate_regime_factors(cfg)
    regime_cells(cfg)  # every cell must be a valid study too


def _check_arm(mode: str, tau: float) -> None:
    """An arm ``<mode>@<tau>``: a mode with a tau of its own, spelt one way, not the config's tau."""
    base = mode.partition("@")[0]
    _choice("mode of an arm", base, TAU_ARM_MODES)
    try:
        own = split_mode(mode)[1]
    except ValueError:
        own = float("nan")
    if not 0 < own <= 100:  # NaN too
        raise ConfigError(f"mode {mode!r}: the tau after @ must be a number in (0, 100]")
    if mode != arm_name(base, own):
        raise ConfigError(f"mode {mode!r} must be spelt {arm_name(base, own)!r}")
    if own == tau:
        raise ConfigError(f"mode {mode!r} is {base!r} at the config's tau={tau:g}: use {base!r}")


def sweep_taus(cfg: StudyConfig) -> list[float]:
    """The taus of the uncalibrated tau sweep (the tuned-tau control's candidates beside tau
    itself): ``tau_grid`` without ``tau`` and without the taus that an ``uncalibrated@<tau>`` arm
    trains already (the same student, never trained twice)."""
    arms = {split_mode(m)[1] for m in cfg.modes if split_mode(m)[0] == "uncalibrated"}
    return [v for v in cfg.tau_grid if v != cfg.tau and v not in arms]


def _validate_regime_factors(cfg: StudyConfig) -> None:
    if not (isinstance(cfg.label_noise, float) and 0 <= cfg.label_noise < 1):
        raise ConfigError(f"label_noise={cfg.label_noise!r} is out of range; valid: [0, 1)")
    _range("transfer_size", cfg.transfer_size, 0)
    if cfg.transfer_size and not cfg.train_size:
        raise ConfigError("transfer_size > 0 needs train_size > 0, so that teachers train on the "
                          "same images with and without a transfer split")
    pool = cfg.synthetic_train if cfg.dataset == "synthetic" else TRAIN_POOL[cfg.dataset]
    used = cfg.val_size + cfg.train_size + cfg.transfer_size
    if used > pool or cfg.val_size >= pool:
        raise ConfigError(f"val_size + train_size + transfer_size = {used} exceeds the {pool} "
                          f"training images of {cfg.dataset}")
    if cfg.teacher_weight_decay != -1.0:
        _range("teacher_weight_decay", cfg.teacher_weight_decay, 0)
    _choice("teacher_norm", cfg.teacher_norm, NORMS)
    _choice("regime_mode", cfg.regime_mode,
            [m for m in MODES if m not in ("baseline", "uncalibrated")] +
            [f"cal-{name}" for name in cfg.calibrators])


def regime_cells(cfg: StudyConfig) -> list[tuple[str, object, StudyConfig]]:
    """(factor, level, config) of every regime cell, the base first as ("base", None, ...).

    A cell is the base config with one key changed, distilled in two modes only: uncalibrated
    and ``regime_mode``. Levels equal to the base value are the base cell itself.
    """
    if not isinstance(cfg.regimes, dict):
        raise ConfigError(f"regimes must be a dict of config key -> list of levels, got {cfg.regimes!r}")
    common = dict(regimes={}, modes=["uncalibrated", cfg.regime_mode], tau_grid=[],
                  teacher_temperature_grid=[], teacher_variants=[])
    cells = [("base", None, dataclasses.replace(cfg, **common))] if cfg.regimes else []
    defaults = StudyConfig()
    for factor, levels in cfg.regimes.items():
        _choice("regime factor", factor, REGIME_FACTORS)
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"regimes[{factor!r}] must be a non-empty list of levels, got {levels!r}")
        for level in levels:
            value = _coerce(f"regimes[{factor!r}]", level, getattr(defaults, factor))
            if value == getattr(cfg, factor):
                continue
            cell = dataclasses.replace(cfg, **common, **{factor: value})
            try:
                validate(cell)
            except ConfigError as exc:
                raise ConfigError(f"regimes[{factor!r}] level {level!r}: {exc}") from None
            cells.append((factor, value, cell))
    return cells
