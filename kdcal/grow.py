"""Seeds added run by run: a study folder grows by the bundles of runs made elsewhere.

Every seed is an independent rerun, so a run of the same code and config with other seeds adds
up: ``kdcal run --set seeds=[5] --out X`` on any machine leaves ``X/bundle`` (its runs' json
files and teacher logits, no checkpoints), and ``kdcal add --bundle X --study S`` adds its seeds
to S. The add refuses, in one line and before writing anything, a bundle from other code (the
hash of the kdcal sources differs), of another config (any key but the seeds that can change a
number), or with a seed S already holds. It stages everything in a temporary folder inside S and
then moves new files in: runs already in S are never rewritten. S then holds the grown
``bundle/``, ``runs/`` (for rerunning the notebooks: nothing left to train), ``results.csv``
and ``claims.csv`` rebuilt over every seed, ``provenance.csv`` (which run made each seed, with
which code, on what device and host, when) and ``study.json`` with the grown seeds.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .bundle import BUNDLE_NAME, FORMAT, PROVENANCE, provenance_csv, seed_from_bundle
from .claims import claims_table
from .config import StudyConfig, training_threads
from .results import results_table
from .store import Study, StoreError, atomic_write_bytes, read_json, write_csv, write_json

# where and how fast runs go, never what they compute: not compared
SCHEDULING_KEYS = ("executor", "ray_address", "data_root", "download", "workers", "threads")
# how the engine computes: changes results in the last bits only (never in run ids); compared
# unless the add is told to accept another engine (a CPU study grown by GPU seeds)
ENGINE_KEYS = ("device", "training_threads", "pack_students", "pack_teachers", "channels_last",
               "compile", "compile_mode", "eval_batch_size")


class GrowError(StoreError):
    """A bundle that cannot be added to a study; the message says why in one line."""


# ---------------------------------------------------------------- what is compared
def comparable(info: dict, allow_engine: bool = False) -> dict:
    """A bundle's config as it must match another's: without the seeds (and the control seeds,
    compared per seed), the scheduling keys, ``amp`` resolved as the runs used it."""
    config = info["config"]
    out = {k: v for k, v in config.items()
           if k not in ("seeds", "control_seeds", "amp", *SCHEDULING_KEYS)}
    out["training_threads"] = training_threads(StudyConfig(
        **{k: config[k] for k in ("workers", "threads") if k in config}))
    out["amp"] = info.get("amp")
    out["device"] = info.get("device", config.get("device"))
    if allow_engine:
        out = {k: v for k, v in out.items() if k not in ENGINE_KEYS}
    return out


def control_seeds(config: dict) -> set:
    """The seeds that train the controls ([] = every seed)."""
    return set(config.get("control_seeds") or config["seeds"])


def _differences(a: dict, b: dict) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if a.get(k, "<missing>") != b.get(k, "<missing>")]


# ---------------------------------------------------------------- reading
def bundle_dir(path) -> Path:
    """A bundle folder, or a study folder holding one."""
    path = Path(path)
    if not (path / "bundle.json").exists() and (path / BUNDLE_NAME / "bundle.json").exists():
        path = path / BUNDLE_NAME
    if not (path / "bundle.json").exists():
        raise GrowError(f"{path} is not a kdcal bundle (no bundle.json)")
    return path


def read_bundle(path) -> dict:
    path = bundle_dir(path)
    info = read_json(path / "bundle.json")
    if info.get("format") != FORMAT:
        raise GrowError(f"bundle {path} has format {info.get('format')!r}; this kdcal reads {FORMAT}")
    if "code" not in info or "provenance" not in info:
        raise GrowError(f"bundle {path} records no code fingerprint (exported by an older kdcal); "
                        "rerun its seeds with this code")
    return info


def study_bundle(study_dir) -> dict | None:
    """The study's own bundle info; None for an empty (or absent) folder."""
    root = Path(study_dir)
    if (root / BUNDLE_NAME / "bundle.json").exists():
        return read_bundle(root / BUNDLE_NAME)
    stray = [p.name for p in root.iterdir()] if root.exists() else []
    if stray:
        raise GrowError(f"{root} holds {', '.join(sorted(stray)[:3])} but no {BUNDLE_NAME}/: "
                        "seeds add only to a study with a bundle (kdcal run writes one) or to "
                        "an empty folder")
    return None


def check_addable(new: dict, old: dict | None, study_dir, allow_engine: bool = False) -> None:
    """Raise GrowError naming the first reason the bundle ``new`` cannot join the study."""
    root = Path(study_dir)
    if new["config"].get("regimes"):
        raise GrowError("the bundle has a regimes grid: seeds add to notebooks 01-04 only; "
                        "run notebook 05 on the grown study instead")
    for rid in new["runs"]:
        for where in (root / "runs" / rid, root / BUNDLE_NAME / "runs" / rid):
            if where.exists():
                raise GrowError(f"run {rid} of the bundle is already in {root} "
                                f"({where.relative_to(root)}): a seed is added once")
    if old is None:
        return
    if new["code"]["source_hash"] != old["code"]["source_hash"]:
        raise GrowError(f"the bundle comes from other code than the study (kdcal sources "
                        f"{new['code']['source_hash'][:12]}, commit {new['code']['git_commit'][:12] or '?'}; "
                        f"the study's: {old['code']['source_hash'][:12]}, commit "
                        f"{old['code']['git_commit'][:12] or '?'})")
    a, b = comparable(new, allow_engine), comparable(old, allow_engine)
    diff = _differences(a, b)
    if diff:
        k = diff[0]
        hint = " (or pass --allow-engine to accept another engine)" if k in ENGINE_KEYS else ""
        raise GrowError(f"the bundle's config differs from the study's in {', '.join(diff)}: "
                        f"{k}={a.get(k)!r} against {b.get(k)!r}{hint}")
    twice = sorted(set(new["config"]["seeds"]) & set(old["config"]["seeds"]))
    if twice:
        raise GrowError(f"seed {', '.join(map(str, twice))} is already in the study {root}: a "
                        "seed is added once")


# ---------------------------------------------------------------- growing
def grown_info(new: dict, old: dict | None) -> dict:
    """bundle.json of the study after the add: the union of seeds, runs and provenance."""
    if old is None:
        return new
    seeds = sorted(set(old["config"]["seeds"]) | set(new["config"]["seeds"]))
    controls = sorted(control_seeds(old["config"]) | control_seeds(new["config"]))
    config = {**old["config"], "seeds": seeds,
              "control_seeds": [] if controls == seeds else controls}
    overrides = {**old.get("overrides", {}), "seeds": seeds}
    if "control_seeds" in overrides or config["control_seeds"] != old["config"]["control_seeds"]:
        overrides["control_seeds"] = config["control_seeds"]
    provenance = sorted(old["provenance"] + new["provenance"], key=lambda r: r["seed"])
    return {**old, "config": config, "overrides": overrides, "runs": {**old["runs"], **new["runs"]},
            "provenance": provenance,
            "max_metric_change": max(old["max_metric_change"], new["max_metric_change"])}


def _tables(info: dict, bundle: Path, scratch: Path):
    """results.csv and claims.csv of the grown study, built from its grown bundle."""
    cfg = seed_from_bundle(bundle, scratch)
    assert sorted(cfg.seeds) == sorted(info["config"]["seeds"])
    results = results_table(cfg, scratch)
    return results, claims_table(results)


def add_bundle(bundle_path, study_dir, allow_engine: bool = False, log=print) -> list[int]:
    """Add a bundle's seeds to a study folder (empty or with a bundle); return the seeds added.

    Refusals write nothing. Everything new is built under ``.grow.tmp<pid>/`` in the study
    folder, then moved in; the run folders of the study are only ever added to.
    """
    src = bundle_dir(bundle_path)
    new = read_bundle(src)
    root = Path(study_dir)
    check_addable(new, study_bundle(root), root, allow_engine)  # before anything is written
    study = Study(root)
    with study.lock():
        old = study_bundle(root) if (root / BUNDLE_NAME).exists() else None
        check_addable(new, old, root, allow_engine)  # again, now that no one else writes
        info = grown_info(new, old)
        stage = root / f".grow.tmp{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        try:
            bundle = stage / BUNDLE_NAME
            if old is not None:
                shutil.copytree(root / BUNDLE_NAME, bundle)
            for run in sorted((src / "runs").iterdir()):
                shutil.copytree(run, bundle / "runs" / run.name)
            write_json(info, bundle / "bundle.json")
            results, claims = _tables(info, bundle, stage / "study")
            _commit(root, stage, info, results, claims)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    added = sorted(new["config"]["seeds"])
    log(f"added seed(s) {', '.join(map(str, added))} to {root}: now seeds "
        f"{info['config']['seeds']}; results.csv and claims.csv rebuilt")
    return added


def _commit(root: Path, stage: Path, info: dict, results, claims) -> None:
    """Move the staged files in: the new runs (new folders), then the bundle, then the tables."""
    (root / "runs").mkdir(parents=True, exist_ok=True)
    for run in sorted((stage / "study" / "runs").iterdir()):
        if not (root / "runs" / run.name).exists():  # the study's own runs stay as they are
            os.replace(run, root / "runs" / run.name)
    old = root / f".{BUNDLE_NAME}.old{os.getpid()}"
    if (root / BUNDLE_NAME).exists():
        os.replace(root / BUNDLE_NAME, old)
    os.replace(stage / BUNDLE_NAME, root / BUNDLE_NAME)
    shutil.rmtree(old, ignore_errors=True)
    write_csv(results, root / "results.csv")
    write_csv(claims, root / "claims.csv")
    atomic_write_bytes(provenance_csv(info["provenance"]), root / PROVENANCE)
    write_json({"profile": info.get("profile", ""), "overrides": info.get("overrides", {}),
                "config": info["config"]}, root / "study.json")

