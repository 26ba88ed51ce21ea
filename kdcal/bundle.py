"""The interactive path: a small bundle of a finished study, and notebooks that read it.

A study's ``runs/`` (checkpoints, float32 logits) stays out of git, so on a fresh clone notebooks
02-05 would have nothing to read. ``kdcal run`` therefore ends by writing ``bundle/`` into the
study folder, committed with it: every run's json files (config, metrics, calibration,
calibrators) and the teachers' logits, compressed, in float16 where that keeps the test metrics
within ``TOLERANCE``; no model checkpoints. A notebook whose study folder holds none of its
profile's runs seeds that (scratch) folder from the committed bundle and reads the reference
run's config from it, so it runs in seconds and never writes over the committed outputs.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import io
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .config import StudyConfig, validate
from .regimes import run_regimes
from .results import write_results
from .runs import amp_name, engine_for, teacher_runs
from .store import (Study, StoreError, atomic_write_bytes, load_arrays, read_json, save_arrays,
                    write_csv, write_json)
from .students import student_plan
from .teacher_variants import variant_runs

BUNDLE_NAME = "bundle"
FORMAT = 1
# the largest change of a test metric (accuracy, ECE, NLL, ...) that rounding logits may cause
TOLERANCE = 1e-3
JSON_FILES = ("config.json", "metrics.json", "calibration.json")
PROVENANCE = "provenance.csv"  # beside the bundle: which run made each seed, with which code
PROVENANCE_COLUMNS = ["seed", "bundle_id", "git_commit", "source_hash", "device", "host", "date"]


# ---------------------------------------------------------------- which runs a config owns
def teacher_ids(cfg: StudyConfig) -> list[str]:
    return [rid for rid, _, _ in teacher_runs(cfg)]


def study_run_ids(cfg: StudyConfig, study_dir) -> list[str]:
    """The finished runs of this config: teachers, teacher variants and students."""
    study = Study(study_dir)
    ids = teacher_ids(cfg) + [rid for rid, *_ in variant_runs(cfg)]
    ids += [p["rid"] for p in student_plan(cfg, study_dir)]
    return [rid for rid in dict.fromkeys(ids) if study.is_done(rid)]


def has_runs(cfg: StudyConfig, study_dir) -> bool:
    """Whether the study folder holds any finished teacher of this config."""
    study = Study(study_dir)
    return any(study.is_done(rid) for rid in teacher_ids(cfg))


# ---------------------------------------------------------------- export
def _amp_of(cfg: StudyConfig) -> str:
    return amp_name(engine_for(cfg))


def _compressed(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _small_logits(z: dict, n_bins: int) -> tuple[dict, float]:
    """The run's arrays with float16 logits and uint8 labels where the test metrics stay within
    TOLERANCE of the float32 ones (else float32 logits); and the largest metric change."""
    out = {k: (v.astype(np.uint8) if k.endswith("_labels") and v.max() < 256 else v)
           for k, v in z.items()}
    half = {k: v.astype(np.float16) for k, v in z.items() if k.endswith("_logits")}
    if any(not np.isfinite(v).all() for v in half.values()):
        return out, 0.0
    before = metrics.summarize(z["test_logits"], z["test_labels"], n_bins)
    after = metrics.summarize(half["test_logits"].astype(np.float32), z["test_labels"], n_bins)
    error = max(abs(before[k] - after[k]) for k in before)
    if error > TOLERANCE:
        return out, 0.0
    return {**out, **half}, error


PACKAGE = Path(__file__).resolve().parent


def code_fingerprint() -> dict:
    """The code that made a bundle: a hash of the kdcal sources (what bundles are compared by)
    and the git commit when the package sits in a git checkout ("" otherwise)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"source_hash": digest.hexdigest(), "git_commit": commit}


def runs_id(runs_dir: Path) -> str:
    """A bundle's id: a hash of its run files, names and bytes (the same runs, the same id)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(runs_dir).rglob("*") if p.is_file()):
        digest.update(path.relative_to(runs_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _provenance(cfg: StudyConfig, study_root: Path, bundle_id: str, code: dict,
                device: str) -> list[dict]:
    """One row per seed: the seeds the study's provenance.csv already records keep their row
    (a grown study re-exported by `kdcal run`), the others are this run's."""
    import pandas as pd

    known = {}
    path = study_root / "provenance.csv"
    if path.exists():
        known = {int(r["seed"]): r for r in pd.read_csv(path, dtype=str, keep_default_na=False)
                 .to_dict("records")}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return [{**known[s], "seed": s} if s in known else
            {"seed": s, "bundle_id": bundle_id, "git_commit": code["git_commit"],
             "source_hash": code["source_hash"], "device": device,
             "host": socket.gethostname(), "date": now}
            for s in cfg.seeds]


def export_bundle(cfg: StudyConfig, study_dir) -> Path:
    """Write ``bundle/`` into the study folder (replacing an older one) and return its path."""
    study = Study(study_dir)
    final = study.root / BUNDLE_NAME
    tmp = study.root / f".{BUNDLE_NAME}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    teachers, runs, worst = set(teacher_ids(cfg)), {}, 0.0
    for rid in study_run_ids(cfg, study.root):
        src, dst = study.run_dir(rid), tmp / "runs" / rid
        names = [n for n in JSON_FILES if (src / n).exists()]
        names += [str(p.relative_to(src)) for p in sorted((src / "calibrators").glob("*.json"))]
        names += [p.name for p in sorted(src.glob("distill-*.json"))]  # per students' images
        for name in names:
            atomic_write_bytes((src / name).read_bytes(), dst / name)
        if rid in teachers:
            arrays, error = _small_logits(load_arrays(src / "logits.npz"), cfg.ece_bins)
            atomic_write_bytes(_compressed(arrays), dst / "logits.npz")
            worst = max(worst, error)
        runs[rid] = read_json(src / "metrics.json").get("role", "")
    info = read_json(study.root / "study.json") if (study.root / "study.json").exists() else {}
    code, device = code_fingerprint(), engine_for(cfg).device.type
    write_json({"format": FORMAT, "profile": info.get("profile", ""),
                "overrides": info.get("overrides", {}), "config": cfg.to_dict(),
                "amp": _amp_of(cfg), "runs": runs, "max_metric_change": worst,
                "code": code, "device": device,
                "provenance": _provenance(cfg, study.root, runs_id(tmp / "runs"), code, device)},
               tmp / "bundle.json")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_bytes(provenance_csv(read_json(final / "bundle.json")["provenance"]),
                       study.root / PROVENANCE)
    return final


def provenance_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, PROVENANCE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["seed"]))
    return out.getvalue().encode()


# ---------------------------------------------------------------- read back
def _config_from(values: dict, amp: str | None = None) -> StudyConfig:
    """A stored config as a StudyConfig that only reads: local, CPU, the runs' own precision
    pinned (run ids name it; ``auto`` would resolve differently on another machine)."""
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    cfg = StudyConfig(**{k: v for k, v in values.items() if k in known})
    pinned = {"executor": "local", "device": "cpu", "ray_address": ""}
    if amp is not None:
        pinned["amp"] = "bf16" if amp == "bf16" else "off"
    cfg = dataclasses.replace(cfg, **pinned)
    validate(cfg)
    return cfg


def bundle_config(bundle_dir) -> StudyConfig:
    """The config of the study a bundle was exported from."""
    path = Path(bundle_dir) / "bundle.json"
    if not path.exists():
        raise StoreError(f"{bundle_dir} is not a kdcal bundle (no bundle.json)")
    info = read_json(path)
    if info.get("format") != FORMAT:
        raise StoreError(f"bundle {bundle_dir} has format {info.get('format')!r}; this kdcal reads {FORMAT}")
    return _config_from(info["config"], info["amp"])


def seed_from_bundle(bundle_dir, study_dir) -> StudyConfig:
    """Copy a bundle's runs into a study folder as ``runs/<id>/`` (float32 logits, int64 labels),
    skipping runs already there; return the bundle's config, under which the stage functions
    of kdcal.study find them."""
    bundle_dir = Path(bundle_dir)
    cfg = bundle_config(bundle_dir)
    study = Study(study_dir)
    with study.lock():
        for src in sorted((bundle_dir / "runs").iterdir()):
            if study.is_done(src.name):
                continue
            dst = study.run_dir(src.name)
            if (src / "logits.npz").exists():
                z = load_arrays(src / "logits.npz")
                save_arrays({k: v.astype(np.int64 if k.endswith("_labels") else np.float32)
                             for k, v in z.items()}, dst / "logits.npz")
            files = sorted(p for p in src.rglob("*.json") if p.name != "metrics.json")
            for path in files + [src / "metrics.json"]:  # metrics.json last: marks the run done
                atomic_write_bytes(path.read_bytes(), dst / path.relative_to(src))
    return cfg


# ---------------------------------------------------------------- the notebooks' entry points
def reference_config(reference) -> StudyConfig:
    """The config of a committed study folder: from its bundle, else from its study.json."""
    reference = Path(reference)
    if (reference / BUNDLE_NAME / "bundle.json").exists():
        return bundle_config(reference / BUNDLE_NAME)
    if not (reference / "study.json").exists():
        raise StoreError(f"reference {reference} is not a study folder (no bundle/ and no study.json)")
    return _config_from(read_json(reference / "study.json")["config"])


def open_study(cfg: StudyConfig, study_dir, reference="", seed: bool = True,
               log=print) -> StudyConfig:
    """The config a notebook works with. ``cfg`` when the study folder holds its teachers or no
    ``reference`` is given; else the reference study's, after seeding the study folder from the
    reference's bundle (when ``seed`` and there is one): the notebook then reads the reference
    run without training, and writes only into ``study_dir``."""
    if not reference or has_runs(cfg, study_dir):
        return cfg
    reference = Path(reference)
    if Path(study_dir).resolve() == reference.resolve():
        raise StoreError(f"study_dir and reference are the same folder ({reference}); "
                         "read the reference from a scratch study_dir")
    bundle = reference / BUNDLE_NAME
    if seed and (bundle / "bundle.json").exists():
        ref = seed_from_bundle(bundle, study_dir)
        how = f"its bundle was copied into {study_dir}"
    else:
        ref = reference_config(reference)
        how = "its tables are read"
    log(f"{study_dir} holds no runs of this profile (run notebook 01 first to train your own): "
        f"reading the reference run {reference} instead; {how}.")
    return ref


def study_results(cfg: StudyConfig, study_dir, reference="") -> pd.DataFrame:
    """Notebook 04's table: written from the runs when the study folder has them, else read from
    the reference's results.csv (and copied into the study folder); a study folder with a
    results.csv but no runs and no reference (``kdcal analyse``) is read as it is."""
    own = Study(study_dir).root / "results.csv"
    if not has_runs(cfg, study_dir) and not reference and own.exists():
        return pd.read_csv(own)  # a study without its runs (a clone, a grown study): its table
    if has_runs(cfg, study_dir) or not reference:
        return write_results(cfg, study_dir)
    return _copy_table(Path(reference) / "results.csv", study_dir)


def regime_results(cfg: StudyConfig, study_dir, reference="", log=print) -> pd.DataFrame:
    """Notebook 05's table, with its ``order`` column: every cell trained (or skipped when done)
    when the study folder holds the base runs, else the reference's regimes_results.csv."""
    own = Study(study_dir).root / "regimes_results.csv"
    if not has_runs(cfg, study_dir) and not reference and own.exists():
        return with_cell_order(pd.read_csv(own))  # analysed in place, nothing trained
    if has_runs(cfg, study_dir) or not reference:
        table = run_regimes(cfg, study_dir, log=log)
        write_csv(table.drop(columns=["order"]), Study(study_dir).root / "regimes_results.csv")
        return table
    table = _copy_table(Path(reference) / "regimes_results.csv", study_dir)
    return with_cell_order(table)


def with_cell_order(table: pd.DataFrame) -> pd.DataFrame:
    """regimes_results.csv lists cells in the grid's order; ``order`` numbers them so again."""
    if "cell" not in table:
        raise ValueError("the regimes table has no 'cell' column")
    order = {cell: i for i, cell in enumerate(dict.fromkeys(table["cell"]))}
    return table.assign(order=table["cell"].map(order))


def _copy_table(path: Path, study_dir) -> pd.DataFrame:
    if not path.exists():
        raise StoreError(f"{path} not found: run notebook 01 first, or point reference at a "
                         "committed study folder")
    atomic_write_bytes(path.read_bytes(), Study(study_dir).root / path.name)
    return pd.read_csv(path)
