"""Stage 01 (notebook 01): train every (teacher, seed) of the study, one task each or one packed
program per architecture, and read their metrics and training curves back."""
from __future__ import annotations

import time

import pandas as pd

from .config import StudyConfig
from .data import Splits, with_label_noise
from .distill import make_loss
from .executor import Task, run_tasks
from .models import build_model, count_params
from .packed_seeds import SeedMember, train_packed_seeds
from .runs import (engine_for, finish_model, for_seed, label_noise_seed, load_splits, seed_all,
                   teacher_recipe, teacher_run_config, teacher_runs, teacher_seed,
                   train_checkpoint, training_cost)
from .store import Study, read_json, write_json
from .train import Engine, Member, Recipe, packs, train_group

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
        return [Task(_teacher_task, (rid, arch, seed), [rid], checkpoints=[train_checkpoint(rid)],
                     label=f"teacher {arch} seed {seed}",
                     cost=training_cost(arch, cfg.teacher_epochs))
                for rid, arch, seed in runs]
    by_arch: dict[str, list[tuple[str, int]]] = {}
    for rid, arch, seed in runs:
        by_arch.setdefault(arch, []).append((rid, seed))
    return [Task(_packed_teacher_task, (arch, members), [rid for rid, _ in members],
                 checkpoints=[train_checkpoint(rid) for rid, _ in members],
                 label=f"teachers {arch} seeds {','.join(str(s) for _, s in members)} (packed)",
                 cost=training_cost(arch, cfg.teacher_epochs, len(members)))
            for arch, members in by_arch.items()]



def _teacher_task(cfg: StudyConfig, study: Study, rid: str, arch: str, seed: int,
                  log=print) -> None:
    """One teacher: a unit of work of the executor (in this process or on a Ray worker)."""
    engine = engine_for(cfg)
    splits = load_splits(for_seed(cfg, seed), engine)
    train_teacher_run(study, rid, teacher_run_config(cfg, arch, seed, engine), arch, seed,
                   make_loss("baseline", cfg.tau, cfg.alpha), teacher_recipe(cfg),
                   splits, engine, cfg, f"teacher {arch} seed {seed}", log,
                   keep_train_logits=True)


def train_teacher_run(study: Study, rid: str, config: dict, arch: str, seed: int, loss,
                   recipe: Recipe, splits: Splits, engine: Engine, cfg: StudyConfig, desc: str,
                   log, keep_train_logits: bool = False) -> None:
    """Train one teacher run unless it is done; a diverged loss leaves failed.json."""
    if study.is_done(rid):
        log(f"[{rid}] done, skipped")
        return
    run = study.begin_run(rid, config)
    seed_all(teacher_seed(seed))
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
    finish_model(study, rid, model, splits, engine, cfg,
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
        seed_all(teacher_seed(seed))
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

def teacher_table(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    study, rows = Study(study_dir), []
    for rid, _, _ in teacher_runs(cfg):
        if study.is_done(rid):
            m = read_json(study.run_dir(rid) / "metrics.json")
            rows.append({k: v for k, v in m.items() if k != "history"})
    return pd.DataFrame(rows)


def training_curves(cfg: StudyConfig, study_dir) -> pd.DataFrame:
    """Per-epoch loss and training accuracy of every finished teacher (long format), with its
    parameter count (``params``) where its metrics hold one."""
    study, rows = Study(study_dir), []
    for rid, arch, seed in teacher_runs(cfg):
        if study.is_done(rid):
            m = read_json(study.run_dir(rid) / "metrics.json")
            size = {"params": m["params"]} if "params" in m else {}
            for h in m["history"]:
                rows.append({"arch": arch, "seed": seed, **size, **h})
    return pd.DataFrame(rows)
