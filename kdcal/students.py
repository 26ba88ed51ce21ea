"""Stage 03 (notebook 03): one student per (teacher, mode, seed) and the no-KD baseline, the
students of one teacher and seed trained together in one loop on the same batches."""
from __future__ import annotations

import time

import pandas as pd
import torch

from . import budget
from .calibrators import CALIBRATORS
from .config import StudyConfig, sweep_taus
from .data import as_transfer
from .distill import make_kd_loss, make_loss, mode_temperatures
from .executor import Task, run_tasks
from .models import build_model, count_params
from .runs import (amp_name, engine_for, finish_model, for_seed, load_model, load_splits,
                   recipe_config, seed_all, student_data_config, student_recipe, teacher_runs,
                   training_cost)
from .store import Study, load_arrays, read_json, run_id, write_json
from .train import Engine, Member, predict, train_group

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
            "recipe": recipe_config(student_recipe(cfg)), "amp": amp_name(engine)}


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
            variants += [("tau_sweep", v, (v, 1.0)) for v in sweep_taus(cfg)]
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
        seed_all(seed)  # every mode starts from the same weights: a paired comparison
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
        finish_model(study, p["rid"], out["models"][key], splits, engine, cfg,
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
