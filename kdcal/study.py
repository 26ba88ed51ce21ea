"""The four stages of the study, each reading the previous stage's runs from the study folder.

Notebooks call these functions; they hold no state between each other. Every model is a run in
``runs/`` whose id derives from its full config: done runs are skipped, interrupted ones resume.
"""
from __future__ import annotations

import dataclasses
import time
from functools import lru_cache

import pandas as pd
import torch

from . import budget, metrics
from .calibration import CalibrationError, fit_temperature
from .config import StudyConfig, training_threads
from .data import Splits, as_transfer, load_dataset, make_splits, with_label_noise
from .distill import make_kd_loss, make_loss, mode_temperatures
from .executor import Task, run_tasks
from .models import build_model, count_params, forward_macs
from .store import (Study, load_arrays, read_json, run_id, safe_torch_load, save_arrays,
                    atomic_torch_save, write_csv, write_json)
from .packed_seeds import SeedMember, train_packed_seeds
from .train import Engine, Member, Recipe, make_engine, packs, predict, train_group


# ---------------------------------------------------------------- shared set-up
def data_config(cfg: StudyConfig) -> dict:
    keys = ["dataset", "train_size", "val_size", "test_size", "split_seed"]
    if cfg.dataset == "synthetic":
        keys += ["synthetic_size", "synthetic_train", "synthetic_test", "synthetic_channels",
                 "synthetic_classes"]
    return {k: getattr(cfg, k) for k in keys}


# Teachers start from other weights, and see batches in another order, than the students of
# the same seed: the resnet8 teacher must not be its own student's starting point.
TEACHER_SEED_OFFSET = 10_000


def teacher_seed(seed: int) -> int:
    """The initialisation and batch-order seed of the teachers of study seed ``seed``."""
    return seed + TEACHER_SEED_OFFSET


def for_seed(cfg: StudyConfig, seed: int) -> StudyConfig:
    """The config as seen by one seed: its own split when ``split_per_seed`` is on."""
    if not cfg.split_per_seed:
        return cfg
    return dataclasses.replace(cfg, split_seed=cfg.split_seed + seed, split_per_seed=False)


def label_noise_seed(cfg: StudyConfig, seed: int) -> int:
    """Each seed draws its own noisy labels (a seed is an independent rerun)."""
    return cfg.split_seed * 100_003 + seed


def teacher_data_config(cfg: StudyConfig) -> dict:
    """The teachers' data: label noise enters only when on, so existing run ids stay."""
    return {**data_config(cfg), **({"label_noise": cfg.label_noise, "noise_draw": "per-seed"}
                                   if cfg.label_noise else {})}


def student_data_config(cfg: StudyConfig) -> dict:
    """The students' data: a transfer split, when on, replaces the teachers' training images."""
    return {**data_config(cfg), **({"transfer_size": cfg.transfer_size} if cfg.transfer_size else {})}


@lru_cache(maxsize=2)
def _splits(data_json: str, root: str, download: bool, device: str) -> Splits:
    import json

    d = json.loads(data_json)
    if d["dataset"] == "synthetic":
        ds = load_dataset("synthetic", n_train=d["synthetic_train"], n_test=d["synthetic_test"],
                          size=d["synthetic_size"], channels=d["synthetic_channels"],
                          num_classes=d["synthetic_classes"], seed=d["split_seed"])
    else:
        ds = load_dataset(d["dataset"], root or None, download)
    return make_splits(ds, d["val_size"], d["split_seed"], d["train_size"], d["test_size"], device,
                       d.get("transfer_size", 0))


def load_splits(cfg: StudyConfig, engine: Engine | None = None) -> Splits:
    import json

    engine = engine or engine_for(cfg)
    return _splits(json.dumps(student_data_config(cfg), sort_keys=True), cfg.data_root, cfg.download,
                   str(engine.device))


def engine_for(cfg: StudyConfig) -> Engine:
    if training_threads(cfg):
        torch.set_num_threads(training_threads(cfg))
    return make_engine(cfg.device, cfg.amp, cfg.channels_last, cfg.compile, cfg.pack_students,
                       cfg.compile_mode)


def _amp_name(engine: Engine) -> str:
    return "bf16" if engine.amp_dtype is torch.bfloat16 else "fp32"


def teacher_recipe(cfg: StudyConfig) -> Recipe:
    decay = cfg.weight_decay if cfg.teacher_weight_decay < 0 else cfg.teacher_weight_decay
    return Recipe(cfg.teacher_epochs, cfg.batch_size, cfg.lr, cfg.momentum, decay,
                  cfg.schedule, list(cfg.milestones), cfg.gamma, cfg.augment)


def student_recipe(cfg: StudyConfig) -> Recipe:
    return Recipe(budget.student_epochs(cfg), cfg.student_batch_size or cfg.batch_size, cfg.student_lr, cfg.momentum,
                  cfg.weight_decay, cfg.schedule, list(cfg.student_milestones), cfg.gamma,
                  cfg.augment)


def recipe_config(recipe: Recipe) -> dict:
    """The recipe as it enters run ids. Options added later are left out at their default
    (off), so adding an option never changes the ids, nor reruns, of existing studies."""
    config = dict(vars(recipe))
    for key in ("mixup_alpha", "stop_epoch"):
        if not config[key]:
            del config[key]
    return config


def teacher_run_config(cfg: StudyConfig, arch: str, seed: int, engine: Engine) -> dict:
    cfg = for_seed(cfg, seed)
    return {"role": "teacher", "arch": arch, "seed": seed, "init_seed": teacher_seed(seed),
            "data": teacher_data_config(cfg),
            "recipe": recipe_config(teacher_recipe(cfg)), "amp": _amp_name(engine),
            **({"norm": cfg.teacher_norm} if cfg.teacher_norm != "batch" else {})}


def teacher_runs(cfg: StudyConfig, engine: Engine | None = None) -> list[tuple[str, str, int]]:
    """(run id, arch, seed) of every teacher the config asks for."""
    engine = engine or engine_for(cfg)
    return [(run_id("teacher", f"{a}-s{s}", teacher_run_config(cfg, a, s, engine)), a, s)
            for s in cfg.seeds for a in cfg.teachers]


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)


# ---------------------------------------------------------------- 01 teachers
def train_teachers(cfg: StudyConfig, study_dir, log=print) -> pd.DataFrame:
    """Train every (teacher, seed) not already done; save checkpoint, logits and metrics."""
    study = Study(study_dir)
    with study.lock():
        run_tasks(cfg, study, teacher_tasks(cfg), "teachers", log)
    return teacher_table(cfg, study_dir)


def teacher_tasks(cfg: StudyConfig) -> list[Task]:
    """One task per (teacher, seed), in plan order, each with its relative cost; with
    ``pack_teachers`` one task per architecture, its seeds trained as one packed program."""
    runs = teacher_runs(cfg)
    if not packs(cfg.pack_teachers, engine_for(cfg).device, len(cfg.seeds), "pack_teachers"):
        return [Task(_teacher_task, (rid, arch, seed), [rid], checkpoints=[_train_checkpoint(rid)],
                     label=f"teacher {arch} seed {seed}",
                     cost=training_cost(arch, cfg.teacher_epochs))
                for rid, arch, seed in runs]
    by_arch: dict[str, list[tuple[str, int]]] = {}
    for rid, arch, seed in runs:
        by_arch.setdefault(arch, []).append((rid, seed))
    return [Task(_packed_teacher_task, (arch, members), [rid for rid, _ in members],
                 checkpoints=[_train_checkpoint(rid) for rid, _ in members],
                 label=f"teachers {arch} seeds {','.join(str(s) for _, s in members)} (packed)",
                 cost=training_cost(arch, cfg.teacher_epochs, len(members)))
            for arch, members in by_arch.items()]


@lru_cache(maxsize=None)
def _relative_macs(arch: str) -> int:
    """Forward multiply-accumulates on a 28x28 grey image: only the ratios between archs matter."""
    return forward_macs(arch, 1, 10, 28)


def training_cost(arch: str, epochs: int, models: int = 1) -> float:
    """Relative work of training ``models`` copies of ``arch`` for ``epochs`` (task ordering)."""
    return float(_relative_macs(arch) * epochs * models)


def _train_checkpoint(rid: str) -> str:
    """A teacher's epoch checkpoint, relative to the study folder."""
    return f"runs/{rid}/train.pt"


def _teacher_task(cfg: StudyConfig, study: Study, rid: str, arch: str, seed: int,
                  log=print) -> None:
    """One teacher: a unit of work of the executor (in this process or on a Ray worker)."""
    engine = engine_for(cfg)
    splits = load_splits(for_seed(cfg, seed), engine)
    _train_teacher(study, rid, teacher_run_config(cfg, arch, seed, engine), arch, seed,
                   make_loss("baseline", cfg.tau, cfg.alpha), teacher_recipe(cfg),
                   splits, engine, cfg, f"teacher {arch} seed {seed}", log,
                   keep_train_logits=True)


def _train_teacher(study: Study, rid: str, config: dict, arch: str, seed: int, loss,
                   recipe: Recipe, splits: Splits, engine: Engine, cfg: StudyConfig, desc: str,
                   log, keep_train_logits: bool = False) -> None:
    """Train one teacher run unless it is done; a diverged loss leaves failed.json."""
    if study.is_done(rid):
        log(f"[{rid}] done, skipped")
        return
    run = study.begin_run(rid, config)
    _seed_all(teacher_seed(seed))
    model = build_model(arch, splits.in_channels, splits.num_classes, cfg.teacher_norm)
    t0 = time.perf_counter()
    # one noise draw per seed, the same for every teacher of that seed
    noisy = with_label_noise(splits, cfg.label_noise, label_noise_seed(cfg, seed))
    out = train_group({arch: Member(model, loss)}, noisy, recipe, teacher_seed(seed), engine,
                      run / "train.pt", desc=desc, log=log, study_seed=seed)
    _record_teacher(study, rid, config, arch, seed, out["models"][arch], out["failed"].get(arch),
                    out["history"][arch], out["steps"][arch], time.perf_counter() - t0, splits,
                    engine, cfg, log, keep_train_logits)


def _record_teacher(study: Study, rid: str, config: dict, arch: str, seed: int, model,
                    failed: str | None, history: list, steps: int, seconds: float, splits: Splits,
                    engine: Engine, cfg: StudyConfig, log, keep_train_logits: bool) -> None:
    """A trained teacher's run: failed.json when it diverged, else its model, logits, metrics."""
    if failed:
        write_json({"error": failed}, study.run_dir(rid) / "failed.json")
        log(f"[{rid}] FAILED: {failed}; the other runs continue")
        return
    _finish_model(study, rid, model, splits, engine, cfg,
                  {"role": "teacher", "arch": arch, "seed": seed,
                   **({"variant": config["variant"]} if "variant" in config else {}),
                   "params": count_params(model), "steps": steps, "train_seconds": seconds,
                   "history": history}, keep_train_logits=keep_train_logits)


def _packed_teacher_task(cfg: StudyConfig, study: Study, arch: str, runs: list,
                         log=print) -> None:
    """The teachers of one architecture, one per seed in ``runs`` [(run id, seed)], as one
    packed program (kdcal.packed_seeds): each with its own split, label noise, initialisation
    and batch order, as :func:`_teacher_task` trains it alone. A unit of work of the executor."""
    engine = engine_for(cfg)
    members, todo = [], []
    for rid, seed in runs:
        if study.is_done(rid):
            log(f"[{rid}] done, skipped")
            continue
        splits = load_splits(for_seed(cfg, seed), engine)
        config = teacher_run_config(cfg, arch, seed, engine)
        run = study.begin_run(rid, config)
        _seed_all(teacher_seed(seed))
        model = build_model(arch, splits.in_channels, splits.num_classes, cfg.teacher_norm)
        noisy = with_label_noise(splits, cfg.label_noise, label_noise_seed(cfg, seed))
        members.append(SeedMember(arch, model, make_loss("baseline", cfg.tau, cfg.alpha), noisy,
                                  teacher_seed(seed), run / "train.pt", f"{arch} seed {seed}",
                                  seed))
        todo.append((rid, seed, config, splits))
    if not members:
        return
    t0 = time.perf_counter()
    outs = train_packed_seeds(members, teacher_recipe(cfg), engine,
                              f"teachers {arch} seeds {','.join(str(t[1]) for t in todo)}", log)
    seconds = (time.perf_counter() - t0) / len(members)  # each member's share
    for (rid, seed, config, splits), out in zip(todo, outs):
        _record_teacher(study, rid, config, arch, seed, out["model"], out["failed"],
                        out["history"], out["steps"], seconds, splits, engine, cfg, log,
                        keep_train_logits=True)


def variant_recipe(cfg: StudyConfig, variant: str) -> tuple[Recipe, float]:
    """(recipe, label smoothing) of a teacher calibrated by training."""
    recipe, smoothing = teacher_recipe(cfg), 0.0
    if variant == "label_smoothing":
        smoothing = cfg.label_smoothing
    elif variant == "mixup":
        recipe.mixup_alpha = cfg.mixup_alpha
    elif variant == "early_stop":
        recipe.stop_epoch = cfg.early_stop_epochs or max(1, cfg.teacher_epochs // 2)
    return recipe, smoothing


def variant_run_config(cfg: StudyConfig, arch: str, seed: int, variant: str,
                       engine: Engine) -> dict:
    recipe, smoothing = variant_recipe(cfg, variant)
    return {**teacher_run_config(cfg, arch, seed, engine), "variant": variant,
            "recipe": recipe_config(recipe), "label_smoothing": smoothing}


def variant_runs(cfg: StudyConfig, engine: Engine | None = None) -> list[tuple[str, str, int, str]]:
    """(run id, arch, seed, variant) of every teacher variant calibrated by training."""
    engine = engine or engine_for(cfg)
    return [(run_id("teacher", f"{arch}-{variant}-s{seed}",
                    variant_run_config(cfg, arch, seed, variant, engine)), arch, seed, variant)
            for variant in cfg.teacher_variants for _, arch, seed in teacher_runs(cfg, engine)]


def train_teacher_variants(cfg: StudyConfig, study_dir, log=print) -> pd.DataFrame:
    """Teachers calibrated by training (label smoothing, mixup, early stopping), with their own
    temperature fitted on validation like the others. They are compared, not distilled from."""
    study = Study(study_dir)
    runs = variant_runs(cfg)
    tasks = [Task(_variant_task, (rid, arch, seed, variant), [rid],
                  checkpoints=[_train_checkpoint(rid)],
                  label=f"teacher {arch} ({variant}) seed {seed}")
             for rid, arch, seed, variant in runs]
    with study.lock():
        run_tasks(cfg, study, tasks, "teacher variants", log)
        for rid, _, _, _ in runs:  # here, not on workers: cheap, and also after a kill
            if study.is_done(rid) and not (study.run_dir(rid) / "calibration.json").exists():
                _calibrate_run(study, rid, cfg)
    return variant_table(cfg, study_dir)


def _variant_task(cfg: StudyConfig, study: Study, rid: str, arch: str, seed: int, variant: str,
                  log=print) -> None:
    """One teacher calibrated by training: a unit of work of the executor."""
    import torch.nn.functional as F

    engine = engine_for(cfg)
    splits = load_splits(for_seed(cfg, seed), engine)
    recipe, smoothing = variant_recipe(cfg, variant)
    loss = lambda s, y, t=None, ls=smoothing: F.cross_entropy(s, y, label_smoothing=ls)  # noqa: E731
    _train_teacher(study, rid, variant_run_config(cfg, arch, seed, variant, engine),
                   arch, seed, loss, recipe, splits, engine, cfg,
                   f"teacher {arch} ({variant}) seed {seed}", log)


def variant_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """The standard teachers and their variants: metrics before and after temperature scaling."""
    study, rows = Study(study_dir), []
    runs = [(rid, arch, seed, "standard") for rid, arch, seed in teacher_runs(cfg)] + \
        variant_runs(cfg)
    for rid, arch, seed, variant in runs:
        run = study.run_dir(rid)
        if study.is_done(rid) and (run / "calibration.json").exists():
            m, c = read_json(run / "metrics.json"), read_json(run / "calibration.json")
            rows.append({"arch": arch, "params": m["params"], "steps": m.get("steps"),
                         "seed": seed, "variant": variant, "acc": m["acc"], "ece": m["ece"], "nll": m["nll"],
                         "temperature": c["temperature"], "ece_cal": c["test_after"]["ece"],
                         "nll_cal": c["test_after"]["nll"], "run_id": rid})
    return pd.DataFrame(rows)


def _finish_model(study: Study, rid: str, model, splits: Splits, engine: Engine,
                  cfg: StudyConfig, info: dict, keep_train_logits: bool = False,
                  teacher_logits: dict | None = None) -> dict:
    run = study.run_dir(rid)
    logits = {"val": predict(model, splits.val_x, splits, engine, cfg.eval_batch_size),
              "test": predict(model, splits.test_x, splits, engine, cfg.eval_batch_size)}
    if keep_train_logits:
        logits["train"] = predict(model, splits.train_x, splits, engine, cfg.eval_batch_size)
    model_cpu = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"model": model_cpu, "arch": info["arch"], "norm": getattr(model, "norm", "batch")},
                      run / "model.pt")
    labels = {"val_labels": splits.val_y.cpu(), "test_labels": splits.test_y.cpu()}
    if keep_train_logits:  # the (clean) labels of the images students learn from
        labels["train_labels"] = splits.train_y.cpu()
    save_arrays({**{f"{k}_logits": v for k, v in logits.items()}, **labels}, run / "logits.npz")
    test_y = splits.test_y.cpu()
    row = {**info, "run_id": rid, **metrics.summarize(logits["test"], test_y, cfg.ece_bins),
           "val_acc": metrics.accuracy(logits["val"], splits.val_y.cpu())}
    if keep_train_logits:  # does the teacher fit its training set, and how confidently?
        train = metrics.summarize(logits["train"], labels["train_labels"], cfg.ece_bins)
        row.update({f"train_{k}": train[k] for k in ("acc", "ece", "nll")})
    if teacher_logits is not None:
        row["agreement"] = metrics.agreement(logits["test"], teacher_logits["test"])
        row["kl_teacher"] = metrics.kl_teacher_student(logits["test"], teacher_logits["test"])
    write_json(row, run / "metrics.json")  # written last: marks the run done
    (run / "train.pt").unlink(missing_ok=True)
    return row


def teacher_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    study, rows = Study(study_dir), []
    for rid, _, _ in teacher_runs(cfg):
        if study.is_done(rid):
            m = read_json(study.run_dir(rid) / "metrics.json")
            rows.append({k: v for k, v in m.items() if k != "history"})
    return pd.DataFrame(rows)


def training_curves(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """Per-epoch loss and training accuracy of every finished teacher (long format)."""
    study, rows = Study(study_dir), []
    for rid, arch, seed in teacher_runs(cfg):
        if study.is_done(rid):
            for h in read_json(study.run_dir(rid) / "metrics.json")["history"]:
                rows.append({"arch": arch, "seed": seed, **h})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- 02 calibration
def calibrate_teachers(cfg: StudyConfig, study_dir, log=print) -> pd.DataFrame:
    """Fit temperature scaling on each teacher's validation logits; score test before and after."""
    study = Study(study_dir)
    with study.lock():
        for rid, arch, seed in teacher_runs(cfg):
            run = study.run_dir(rid)
            if (run / "failed.json").exists():  # diverged, or nothing to calibrate (below)
                why = read_json(run / "failed.json")["error"]
                log(f"[{rid}] skipped: {why}" if study.is_done(rid)
                    else f"[{rid}] skipped: training failed ({why})")
                continue
            if not study.is_done(rid):
                raise RuntimeError(f"teacher {arch} seed {seed} ({rid}) has not been trained; "
                                   "run notebook 01 first")
            if (run / "calibration.json").exists():
                _calibrate_on_students_images(study, rid, cfg)
                continue
            try:
                c = _calibrate_run(study, rid, cfg)
            except CalibrationError as exc:
                # a teacher that never learned (constant logits: a deep net without batch norm
                # can stay at chance) has no temperature; it teaches nobody, the others go on
                write_json({"error": f"not calibrated: {exc}"}, run / "failed.json")
                log(f"[{rid}] FAILED: teacher {arch} seed {seed} not calibrated ({exc}); it "
                    "teaches nobody, the other runs continue")
                continue
            log(f"[{rid}] T={c['temperature']:.3f} test ECE {c['test_before']['ece']:.4f} -> "
                f"{c['test_after']['ece']:.4f}")
    return calibration_table(cfg, study_dir)


def _calibrate_run(study: Study, rid: str, cfg: StudyConfig) -> dict:
    """Fit T on one run's validation logits; write and return its calibration.json."""
    run = study.run_dir(rid)
    z = load_arrays(run / "logits.npz")
    t = fit_temperature(z["val_logits"], z["val_labels"])
    result = {"method": "temperature", "temperature": t,
              "val_nll_before": metrics.nll(z["val_logits"], z["val_labels"]),
              "val_nll_after": metrics.nll(z["val_logits"] / t, z["val_labels"]),
              "test_before": metrics.summarize(z["test_logits"], z["test_labels"], cfg.ece_bins),
              "test_after": metrics.summarize(z["test_logits"] / t, z["test_labels"], cfg.ece_bins)}
    if "train_labels" in z:  # a teacher that teaches: T judged where its students learn too
        result["train_after"] = metrics.summarize(z["train_logits"] / t, z["train_labels"],
                                                  cfg.ece_bins)
    write_json(result, run / "calibration.json")
    _calibrate_on_students_images(study, rid, cfg, z)
    return result


def students_images(cfg: StudyConfig) -> str:
    """Which images a teacher's students learn from, as a file-name key: its own training images,
    or a transfer split of a given size. One teacher run serves both designs (the same run id),
    so what calibration does on the students' images is stored per design, never in the
    teacher's calibration.json."""
    return f"transfer{cfg.transfer_size}" if cfg.transfer_size else "own"


def _distill_path(run, cfg: StudyConfig):
    return run / f"distill-{students_images(cfg)}.json"


def _calibrate_on_students_images(study: Study, rid: str, cfg: StudyConfig,
                                  z: dict | None = None) -> None:
    """The mechanism: what the teacher's temperature does to the targets its students actually
    see (``distill-<images>.json``: ECE and NLL before and after, on those images)."""
    run = study.run_dir(rid)
    path, calibration = _distill_path(run, cfg), read_json(run / "calibration.json")
    if path.exists() or _distill_in_calibration(calibration):
        return  # measured already (by kdcal up to 87a9cc6: in calibration.json)
    z = load_arrays(run / "logits.npz") if z is None else z
    if "train_labels" not in z:  # a teacher that teaches nobody
        return
    t = calibration["temperature"]
    logits, labels = distill_logits(study, rid, cfg, z)
    write_json({"before": metrics.summarize(logits, labels, cfg.ece_bins),
                "after": metrics.summarize(logits / t, labels, cfg.ece_bins)}, path)


def distill_logits(study: Study, rid: str, cfg: StudyConfig, z: dict) -> tuple:
    """A teacher's logits and the true labels on the images its students learn from: its own
    training images (logits kept at training time), or with ``transfer_size`` the transfer
    split, predicted here as the students' group task predicts it."""
    if not cfg.transfer_size:
        return z["train_logits"], z["train_labels"]
    engine = engine_for(cfg)
    splits = load_splits(for_seed(cfg, read_json(study.run_dir(rid) / "config.json")["seed"]),
                         engine)
    model = engine.prepare(load_model(study, rid, splits))
    return (predict(model, splits.transfer_x, splits, engine, cfg.eval_batch_size),
            splits.transfer_y.cpu())


def compare_calibrators(cfg: StudyConfig, study_dir, log=print) -> pd.DataFrame:
    """Fit every calibrator of ``cfg.calibrators`` on each teacher's validation logits; score test."""
    from .calibration import make_calibrator

    study = Study(study_dir)
    with study.lock():
        for rid, arch, seed in teacher_runs(cfg):
            run = study.run_dir(rid)
            if not study.is_done(rid) or (run / "failed.json").exists():
                continue
            z = None
            for method in cfg.calibrators:
                path = run / "calibrators" / f"{method}.json"
                if path.exists():
                    continue
                z = z if z is not None else load_arrays(run / "logits.npz")
                cal = make_calibrator(method).fit(z["val_logits"], z["val_labels"])
                test = metrics.summarize_probs(cal.predict_proba(z["test_logits"]), z["test_labels"],
                                               cfg.ece_bins)
                write_json({"method": method, "state": cal.state(), "test": test}, path)
                log(f"[{rid}] {method}: test ECE {test['ece']:.4f}, NLL {test['nll']:.4f}")
    return calibrator_table(cfg, study_dir)


def calibrator_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """Long table: one row per teacher, seed and method (``uncalibrated`` for the raw softmax)."""
    study, rows = Study(study_dir), []
    for rid, arch, seed in teacher_runs(cfg):
        run = study.run_dir(rid)
        if not study.is_done(rid):
            continue
        m = read_json(run / "metrics.json")
        base = {"arch": arch, "params": m["params"], "seed": seed}
        rows.append({**base, "method": "uncalibrated",
                     **{k: m[k] for k in ("acc", "ece", "ace", "mce", "classwise_ece", "nll", "brier") if k in m}})
        for method in cfg.calibrators:
            path = run / "calibrators" / f"{method}.json"
            if path.exists():
                rows.append({**base, "method": method, **read_json(path)["test"]})
    return pd.DataFrame(rows)


def calibrator_panels(cfg: StudyConfig, study_dir, arch: str, seed: int):
    """(probs, labels, title) of one teacher's test predictions under every calibrator."""
    from .calibration import CALIBRATORS

    rid = next(r for r, a, s in teacher_runs(cfg) if a == arch and s == seed)
    run = Study(study_dir).run_dir(rid)
    z = load_arrays(run / "logits.npz")
    panels = [(metrics.softmax(z["test_logits"]), z["test_labels"], f"{arch} uncalibrated")]
    for method in cfg.calibrators:
        state = read_json(run / "calibrators" / f"{method}.json")["state"]
        cal = CALIBRATORS[method].from_state(state)
        panels.append((cal.predict_proba(z["test_logits"]), z["test_labels"], f"{arch} {method}"))
    return panels


def calibration_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    study, rows = Study(study_dir), []
    for rid, arch, seed in teacher_runs(cfg):
        path = study.run_dir(rid) / "calibration.json"
        if path.exists():
            c = read_json(path)
            seen = _distill_path(study.run_dir(rid), cfg)
            d = read_json(seen) if seen.exists() else _distill_in_calibration(c)
            rows.append({"run_id": rid, "arch": arch, "seed": seed, "temperature": c["temperature"],
                         **{f"{k}_before": v for k, v in c["test_before"].items()},
                         **{f"{k}_after": v for k, v in c["test_after"].items()},
                         **{f"train_{k}_cal": c["train_after"][k] for k in ("ece", "nll")
                            if "train_after" in c},
                         **{f"distill_{k}": d["before"][k] for k in ("acc", "ece", "nll") if d},
                         **{f"distill_{k}_cal": d["after"][k] for k in ("ece", "nll") if d}})
    return pd.DataFrame(rows)


def _distill_in_calibration(c: dict) -> dict:
    """Runs calibrated before distill-<images>.json existed (kdcal up to 87a9cc6) kept the
    students' images' numbers in calibration.json: those of the one design that ran there."""
    return ({"before": c["distill_before"], "after": c["distill_after"]}
            if "distill_before" in c else {})


# ---------------------------------------------------------------- 03 students
def student_run_config(cfg: StudyConfig, seed: int, mode: str, teacher_rid: str | None,
                       temperature: float | None, engine: Engine,
                       temperatures: tuple[float, float] | None = None) -> dict:
    """The full config of one student; ``temperatures`` (kd tau, teacher temperature) for sweeps."""
    kd_tau, teacher_t = (None, None)
    if temperatures is not None:
        kd_tau, teacher_t = temperatures
    elif mode != "baseline":
        kd_tau, teacher_t = mode_temperatures(mode, cfg.tau, temperature)
    return {"role": "student", "arch": cfg.student, "seed": seed, "mode": mode,
            "teacher_run": teacher_rid, "kd_tau": kd_tau, "teacher_temperature": teacher_t,
            "alpha": cfg.alpha if mode != "baseline" else None, "data": student_data_config(for_seed(cfg, seed)),
            "recipe": recipe_config(student_recipe(cfg)), "amp": _amp_name(engine)}


def student_plan(cfg: StudyConfig, study_dir, engine: Engine | None = None) -> list[dict]:
    """Every student the config asks for: its run id, group and loss parameters."""
    engine, study = engine or engine_for(cfg), Study(study_dir)
    plan = []
    for seed in cfg.seeds:
        rc = student_run_config(cfg, seed, "baseline", None, None, engine)
        plan.append({"rid": run_id("student", f"{cfg.student}-baseline-s{seed}", rc), "seed": seed,
                     "mode": "baseline", "key": "baseline", "teacher_rid": None, "teacher_arch": "",
                     "T": None, "group": f"baseline-s{seed}", "config": rc})
    for rid, arch, seed in teacher_runs(cfg, engine):
        cal = study.run_dir(rid) / "calibration.json"
        if (study.run_dir(rid) / "failed.json").exists() and not cal.exists():
            continue  # a diverged teacher teaches nobody; notebook 01 reported it
        if not cal.exists():
            raise RuntimeError(f"teacher {arch} seed {seed} ({rid}) is not calibrated; "
                               "run notebook 02 first")
        t = round(read_json(cal)["temperature"], 6)
        # cal-<method>: KD at tau from a calibrator's distribution (its targets, not T)
        variants = [(mode, None, (cfg.tau, 1.0) if mode.startswith("cal-") else None)
                    for mode in cfg.modes]
        if not cfg.control_seeds or seed in cfg.control_seeds:
            # controls: uncalibrated KD at other taus; the teacher's temperature swept at fixed tau
            variants += [("tau_sweep", v, (v, 1.0)) for v in cfg.tau_grid if v != cfg.tau]
            variants += [("temp_sweep", v, (cfg.tau, v)) for v in cfg.teacher_temperature_grid
                         if v != 1.0]
        for mode, value, temps in variants:
            rc = student_run_config(cfg, seed, mode, rid, t, engine, temps)
            if mode.startswith("cal-"):
                rc["calibrator"] = mode[4:]
            tag = mode if value is None else f"{mode}{value:g}"
            plan.append({"rid": run_id("student", f"{cfg.student}-{tag}-{arch}-s{seed}", rc),
                         "seed": seed, "mode": mode, "key": tag, "teacher_rid": rid,
                         "teacher_arch": arch, "T": t, "group": rid, "config": rc})
    return plan


def distill_students(cfg: StudyConfig, study_dir, log=print, plan: list[dict] | None = None
                     ) -> pd.DataFrame:
    """Train every planned student; those of one teacher and seed share batches and one loop.

    ``plan`` (default: this config's) may merge the plans of several configs whose students
    share data and recipe and differ only in their losses (the regimes of notebook 05).
    """
    study = Study(study_dir)
    plan = student_plan(cfg, study_dir) if plan is None else plan
    groups: dict[str, list[dict]] = {}
    planned = set()
    for p in plan:
        if p["rid"] in planned:
            continue
        planned.add(p["rid"])
        if study.is_done(p["rid"]):
            log(f"[{p['rid']}] done, skipped")
        else:
            groups.setdefault(p["group"], []).append(p)
    tasks = [Task(_student_group_task, (todo,), [p["rid"] for p in todo],
                  inputs=_teacher_files(cfg, todo), checkpoints=[_group_checkpoint(group, todo)],
                  label=f"students of {todo[0]['teacher_arch'] or 'no teacher'} seed {todo[0]['seed']}",
                  cost=training_cost(cfg.student, budget.student_epochs(cfg), len(todo)))
             for group, todo in groups.items()]
    with study.lock():
        run_tasks(cfg, study, tasks, "student groups", log)
    return student_table(cfg, study_dir)


def _group_checkpoint(group: str, todo: list[dict]) -> str:
    """A student group's epoch checkpoint, relative to the study folder."""
    return f"runs/group-{run_id('g', group, {'m': [p['rid'] for p in todo]})}.pt"


def _teacher_files(cfg: StudyConfig, todo: list[dict]) -> list[str]:
    """What a student group reads of its teacher's run: logits, the fitted calibrators of its
    cal- modes, and the model when inputs are augmented (a teacher forward per batch)."""
    rid = todo[0]["teacher_rid"]
    if not rid:
        return []
    files = [f"runs/{rid}/logits.npz"]
    files += [f"runs/{rid}/calibrators/{p['config']['calibrator']}.json" for p in todo
              if p["mode"].startswith("cal-")]
    # the model too when it must predict: augmented batches, or transfer images it never saw
    return files + ([f"runs/{rid}/model.pt"] if cfg.augment or cfg.transfer_size else [])


def _student_group_task(cfg: StudyConfig, study: Study, todo: list[dict], log=print) -> None:
    """All students of one teacher and seed (or the baselines of one seed) in one training loop:
    a unit of work of the executor (in this process or on a Ray worker).

    Every student and the no-KD baseline learn on the same images: with ``transfer_size`` the
    transfer split (images no teacher trained on, validated on or tested on), the baseline with
    those images' true labels and the students with the teacher's targets there (plus the same
    labels at weight 1 - alpha); else the teachers' own training images, with their clean labels.
    """
    engine = engine_for(cfg)
    group, seed = todo[0]["group"], todo[0]["seed"]
    splits = load_splits(for_seed(cfg, seed), engine)
    # students (and the baseline) learn on the transfer images when there are some, else on
    # the teachers' own
    train_splits = as_transfer(splits) if cfg.transfer_size else splits
    teacher_rid = todo[0]["teacher_rid"]
    teacher_logits, teacher_model = None, None
    if teacher_rid:
        z = load_arrays(study.run_dir(teacher_rid) / "logits.npz")
        teacher_logits = {"train": torch.from_numpy(z["train_logits"]),
                          "test": z["test_logits"]}
        if cfg.augment or cfg.transfer_size:
            teacher_model = load_model(study, teacher_rid, splits)
        if cfg.transfer_size:  # images the teacher never saw: its logits are computed here
            teacher_logits["train"] = predict(engine.prepare(teacher_model), train_splits.train_x,
                                              splits, engine, cfg.eval_batch_size)
    members, names = {}, {}
    for p in todo:
        names[p["rid"]] = name = _member_name(p, members, group)
        _seed_all(seed)  # every mode starts from the same weights: a paired comparison
        model = build_model(cfg.student, splits.in_channels, splits.num_classes)
        own = None
        if p["mode"] == "baseline":
            loss = make_loss("baseline", cfg.tau, cfg.alpha)
        else:  # the run config holds each student's (tau, teacher temperature)
            loss = make_kd_loss(p["config"]["kd_tau"], cfg.alpha,
                                p["config"]["teacher_temperature"])
        if p["mode"].startswith("cal-"):
            own = calibrated_targets(study, teacher_rid, p["config"]["calibrator"],
                                     teacher_logits["train"])
        members[name] = Member(model, loss, needs_teacher=p["mode"] != "baseline",
                               teacher_logits=own)
        study.begin_run(p["rid"], p["config"])
    ckpt = study.root / _group_checkpoint(group, todo)
    label = todo[0]["teacher_arch"] or "no teacher"
    t0 = time.perf_counter()
    out = train_group(members, train_splits, student_recipe(cfg), seed, engine, ckpt,
                      desc=f"students of {label} seed {seed}",
                      teacher=teacher_model if cfg.augment else None,
                      teacher_logits=teacher_logits["train"] if teacher_logits else None,
                      log=log)
    seconds = time.perf_counter() - t0
    for p in todo:
        key = names[p["rid"]]
        if key in out["failed"]:
            write_json({"error": out["failed"][key]}, study.run_dir(p["rid"]) / "failed.json")
            continue
        _finish_model(study, p["rid"], out["models"][key], splits, engine, cfg,
                      {"role": "student", "arch": cfg.student, "seed": seed,
                       "mode": p["mode"], "teacher_run": p["teacher_rid"],
                       "teacher": p["teacher_arch"], "temperature": p["T"],
                       "kd_tau": p["config"]["kd_tau"],
                       "teacher_temperature": p["config"]["teacher_temperature"],
                       "params": count_params(members[key].model), "steps": out["steps"][key],
                       "train_seconds": seconds / len(todo),
                       "history": out["history"][key]},
                      teacher_logits=teacher_logits)
    ckpt.unlink(missing_ok=True)


def _member_name(p: dict, members: dict, group: str) -> str:
    """The student's name in its training loop: its mode, plus its tau where students of several
    configs (notebook 05's tau cells) share the loop. Two students never share a name."""
    name = p["key"]
    if name in members and p["config"]["kd_tau"] is not None:
        name = f"{name} tau={p['config']['kd_tau']:g}"
    if name in members:
        raise RuntimeError(f"two planned students named {name!r} in the group of {group}")
    return name


def load_model(study: Study, rid: str, splits: Splits) -> torch.nn.Module:
    """A finished run's model, rebuilt from its checkpoint (weights only, no pickle)."""
    state = safe_torch_load(study.run_dir(rid) / "model.pt")
    model = build_model(state["arch"], splits.in_channels, splits.num_classes,
                        state.get("norm", "batch"))
    model.load_state_dict(state["model"])
    return model


def calibrated_targets(study: Study, teacher_rid: str, method: str, train_logits: torch.Tensor):
    """The teacher's distribution on the students' images under a calibrator fitted on
    validation only, as KD logits; a ``cal-<method>`` student distills from them at the same
    tau as uncalibrated KD (teacher temperature 1).

    Scaling calibrators (temperature, vector, matrix) hand over their calibrated logits g(z), as
    log-softmax: the student's targets are softmax(g(z) / tau). Probability-output calibrators
    (histogram, isotonic, beta) give p only: their logits are log max(p, 1e-12), so that at tau
    the targets are p^(1/tau) / sum_j p_j^(1/tau), the calibrated distribution softened at tau
    (``Calibrator.target_logits``; notebook 02).
    """
    from .calibration import CALIBRATORS

    path = study.run_dir(teacher_rid) / "calibrators" / f"{method}.json"
    if not path.exists():
        raise RuntimeError(f"calibrator {method!r} of {teacher_rid} is missing; run notebook 02 "
                           f"with {method!r} in calibrators")
    cal = CALIBRATORS[method].from_state(read_json(path)["state"])
    return torch.from_numpy(cal.target_logits(train_logits.numpy())).float()


def student_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    study, rows = Study(study_dir), []
    for p in student_plan(cfg, study_dir):
        if study.is_done(p["rid"]):
            m = read_json(study.run_dir(p["rid"]) / "metrics.json")
            rows.append({k: v for k, v in m.items() if k != "history"})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- 04 results
RESULT_COLUMNS = ["role", "arch", "params", "steps", "seed", "mode", "teacher", "teacher_params",
                  "acc", "ece", "nll", "brier", "temperature", "acc_cal", "ece_cal", "nll_cal",
                  "brier_cal", "train_acc", "train_ece", "train_ece_cal", "train_nll",
                  "train_nll_cal", "distill_acc", "distill_ece", "distill_ece_cal", "distill_nll",
                  "distill_nll_cal", "kd_tau", "teacher_temperature", "teacher_acc", "teacher_ece", "teacher_ece_cal",
                  "agreement", "kl_teacher", "val_acc", "run_id"]
# Wall-clock seconds stay in each run's metrics.json: results.csv is bitwise reproducible.
VOLATILE_COLUMNS = ["train_seconds"]


def results_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """One row per trained model, teachers with metrics before and after calibration."""
    teachers = teacher_table(cfg, study_dir)
    cal = calibration_table(cfg, study_dir)
    if len(teachers) and len(cal):
        after = cal[["run_id", "temperature"] + [c for c in cal if c.endswith("_after")
                                                 or c.startswith(("train_", "distill_"))]]
        after = after.rename(columns=lambda c: c.replace("_after", "_cal"))
        teachers = teachers.merge(after, on="run_id", how="left")
    teachers["mode"], teachers["teacher"] = "teacher", ""
    students = student_table(cfg, study_dir)
    if len(students) and len(teachers):
        info = teachers.set_index("run_id")
        tr = students["teacher_run"]
        students["teacher_params"] = tr.map(info["params"])
        students["teacher_acc"] = tr.map(info["acc"])
        students["teacher_ece"] = tr.map(info["ece"])
        if "ece_cal" in info:
            students["teacher_ece_cal"] = tr.map(info["ece_cal"])
    variants = variant_table(cfg, study_dir) if cfg.teacher_variants else pd.DataFrame()
    if len(variants):  # teachers calibrated by training: extra teacher rows, mode = the variant
        variants = variants[variants["variant"] != "standard"].rename(columns={"variant": "mode"})
        variants = variants.assign(role="teacher", teacher="")
    table = pd.concat([teachers, students, variants], ignore_index=True)
    cols = [c for c in RESULT_COLUMNS if c in table] + \
        [c for c in table if c not in RESULT_COLUMNS + VOLATILE_COLUMNS and c != "teacher_run"]
    return table[cols]


def write_results(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    table = results_table(cfg, study_dir)
    write_csv(table, Study(study_dir).root / "results.csv")
    return table


def architecture_table(cfg: StudyConfig, splits: Splits) -> pd.DataFrame:
    """Parameters and forward cost of the teachers and the student on this dataset's shapes."""

    rows = []
    for role, arch in [*(("teacher", a) for a in cfg.teachers), ("student", cfg.student)]:
        rows.append({"role": role, "arch": arch,
                     "params": count_params(arch, splits.in_channels, splits.num_classes),
                     "forward MMACs": forward_macs(arch, splits.in_channels, splits.num_classes,
                                                   splits.image_size) / 1e6})
    return pd.DataFrame(rows)


def reliability_panels(cfg: StudyConfig, study_dir, seed: int, archs: list[str] | None = None):
    """(probs, labels, title) for raw and temperature-scaled test predictions of some teachers."""
    panels = []
    for rid, arch, s in teacher_runs(cfg):
        if s != seed or (archs is not None and arch not in archs):
            continue
        run = Study(study_dir).run_dir(rid)
        z = load_arrays(run / "logits.npz")
        t = read_json(run / "calibration.json")["temperature"]
        panels.append((metrics.softmax(z["test_logits"]), z["test_labels"], f"{arch} raw"))
        panels.append((metrics.softmax(z["test_logits"] / t), z["test_labels"], f"{arch} T={t:.2f}"))
    return panels


def save_table(frame: pd.DataFrame, study_dir, name: str) -> None:
    """Write a derived table into the study folder atomically."""
    write_csv(frame, Study(study_dir).root / name)
