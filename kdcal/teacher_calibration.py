"""Stage 02 (notebook 02): temperature scaling fitted on each teacher's validation logits, the
other calibrators beside it, and what the temperature does on the images the students learn
from (``distill-<images>.json``)."""
from __future__ import annotations

import pandas as pd

from . import metrics
from .calibration import CalibrationError, fit_temperature
from .calibrators import CALIBRATORS, make_calibrator
from .config import StudyConfig
from .runs import engine_for, for_seed, load_model, load_splits, teacher_runs
from .store import Study, load_arrays, read_json, write_json
from .train import predict

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
                c = calibrate_run(study, rid, cfg)
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


def calibrate_run(study: Study, rid: str, cfg: StudyConfig) -> dict:
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


def distill_path(run, cfg: StudyConfig):
    return run / f"distill-{students_images(cfg)}.json"


def _calibrate_on_students_images(study: Study, rid: str, cfg: StudyConfig,
                                  z: dict | None = None) -> None:
    """The mechanism: what the teacher's temperature does to the targets its students actually
    see (``distill-<images>.json``: ECE and NLL before and after, on those images)."""
    run = study.run_dir(rid)
    path, calibration = distill_path(run, cfg), read_json(run / "calibration.json")
    if path.exists() or distill_in_calibration(calibration):
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
            seen = distill_path(study.run_dir(rid), cfg)
            d = read_json(seen) if seen.exists() else distill_in_calibration(c)
            rows.append({"run_id": rid, "arch": arch, "seed": seed, "temperature": c["temperature"],
                         **{f"{k}_before": v for k, v in c["test_before"].items()},
                         **{f"{k}_after": v for k, v in c["test_after"].items()},
                         **{f"train_{k}_cal": c["train_after"][k] for k in ("ece", "nll")
                            if "train_after" in c},
                         **{f"distill_{k}": d["before"][k] for k in ("acc", "ece", "nll") if d},
                         **{f"distill_{k}_cal": d["after"][k] for k in ("ece", "nll") if d}})
    return pd.DataFrame(rows)


def distill_in_calibration(c: dict) -> dict:
    """Runs calibrated before distill-<images>.json existed (kdcal up to 87a9cc6) kept the
    students' images' numbers in calibration.json: those of the one design that ran there."""
    return ({"before": c["distill_before"], "after": c["distill_after"]}
            if "distill_before" in c else {})


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
