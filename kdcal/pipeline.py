"""`kdcal run`: execute the numbered notebooks with papermill, in order, into the study folder."""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from .bundle import export_bundle, teacher_ids
from .config import StudyConfig, resolve
from .logfile import LOG_NAME
from .report import build_report, scope_note
from .store import Study, read_json, write_json
from .students import student_plan
from .teacher_variants import variant_runs

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT / "notebooks"
NOTEBOOKS = ["01_train_teachers.ipynb", "02_calibrate_teachers.ipynb",
             "03_distill_students.ipynb", "04_analyze.ipynb"]
REGIMES_NOTEBOOK = "05_regimes.ipynb"  # after 04, when the profile has a regimes grid
# notebooks that fall back to a committed reference run when their study folder has no runs;
# `kdcal run` switches that off: a batch run reads and writes its own folder only
READS_REFERENCE = {"02_calibrate_teachers.ipynb", "04_analyze.ipynb", REGIMES_NOTEBOOK}


class NotebookFailed(RuntimeError):
    """A cell raised; the message names the notebook, the cell and the error."""


def typed_overrides(cfg: StudyConfig, overrides: dict) -> dict:
    """The overrides as the validated values the notebooks will see (literals only)."""
    return {k: getattr(cfg, k) for k in overrides}


def _show_notebook_output() -> None:
    """Print the kernels' output as papermill relays it (training lines go to the study's log.txt)."""
    logger = logging.getLogger("papermill")
    if not any(getattr(h, "_kdcal", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._kdcal = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _execute(study: Study, name: str, profile: str, params: dict, cfg: StudyConfig,
             reference: dict, target: Path | None = None) -> None:
    """One notebook by papermill into the study folder (or ``target``); a failure names the cell."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    target = target or study.root / name
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / name), str(target), kernel_name="python3",
                            parameters={"profile": profile, "overrides": params,
                                        "study_dir": str(study.root), "executor": cfg.executor,
                                        "workers": cfg.workers, **reference},
                            cwd=str(NOTEBOOK_DIR), log_output=True, progress_bar=True)
    except PapermillExecutionError as exc:
        raise NotebookFailed(f"{name} failed in cell {exc.exec_count}: {exc.ename}: "
                             f"{exc.evalue} (partly executed notebook kept at {target})") from None


def report_title(profile: str) -> str:
    return f"Does a calibrated teacher teach better? kdcal study, profile {profile}"


def nothing_to_train(cfg: StudyConfig, study_dir) -> bool:
    """Whether the folder holds every run of the config, finished: what ``kdcal add`` leaves.
    Then notebooks 01-03 can be re-executed over all its seeds without training anything."""
    study = Study(study_dir)
    teachers = teacher_ids(cfg) + [rid for rid, *_ in variant_runs(cfg)]
    if not all(study.is_done(rid) for rid in teachers):  # students are planned from them
        return False
    return all(study.is_done(p["rid"]) for p in student_plan(cfg, study_dir))


def analyse_study(study_dir, log=print) -> Path:
    """Re-run the analysis (notebook 04, and 05 when the study has a regimes table) and the
    report on a study folder's own tables, training nothing: for a committed study on a fresh
    clone (no runs), or a study grown by ``kdcal add``. Where the folder holds every run (a
    grown study), notebooks 01-03 are re-executed too, so that every section shows every seed;
    otherwise they stay as they ran. The notebooks are executed aside and moved in only when
    all of them succeeded: a failing cell leaves the study's notebooks as they were."""
    study = Study(Path(study_dir).resolve())
    info = study.root / "study.json"
    if not info.exists() or not (study.root / "results.csv").exists():
        raise NotebookFailed(f"{study.root} is not a study folder (it needs study.json and "
                             "results.csv)")
    meta = read_json(info)
    profile, params = meta["profile"], meta.get("overrides", {})
    cfg = resolve(profile, params)
    _show_notebook_output()
    with study.lock():
        os.environ["KDCAL_LOCK_OWNER"] = (study.root / ".lock").read_text().strip()
        names = (NOTEBOOKS[:3] if nothing_to_train(cfg, study.root) else []) + [
            "04_analyze.ipynb"] + ([REGIMES_NOTEBOOK] if cfg.regimes and (
                study.root / "regimes_results.csv").exists() else [])
        aside = study.root / f".analyse{os.getpid()}"
        aside.mkdir(exist_ok=True)  # a failure keeps the partly executed notebook there
        for name in names:
            log(f"== {name} -> {study.root / name} (its own runs and tables, nothing trained)")
            _execute(study, name, profile, params, cfg,
                     {"reference": ""} if name in READS_REFERENCE else {}, aside / name)
        for name in names:
            os.replace(aside / name, study.root / name)
        shutil.rmtree(aside)
        notebooks = [n for n in NOTEBOOKS + [REGIMES_NOTEBOOK] if (study.root / n).exists()]
        report = build_report(study.root, notebooks, report_title(profile))
        log(f"== report: {report}")
    return study.root


def run_study(profile: str = "quick", overrides: dict | None = None, out: str | None = None,
              log=print) -> Path:
    cfg = resolve(profile, overrides or {})  # fails before any work starts
    params = typed_overrides(cfg, overrides or {})
    study = Study(Path(out or PROJECT / "outputs" / profile).resolve())
    _show_notebook_output()
    log(f"== {scope_note(profile)}")
    with study.lock():
        os.environ["KDCAL_LOCK_OWNER"] = (study.root / ".lock").read_text().strip()
        write_json({"profile": profile, "overrides": params, "config": cfg.to_dict()},
                   study.root / "study.json")
        t_start = time.perf_counter()
        log(f"== training log: {study.root / LOG_NAME} (follow it with tail -f)")
        notebooks = NOTEBOOKS + ([REGIMES_NOTEBOOK] if cfg.regimes else [])
        for name in notebooks:
            log(f"== {name} -> {study.root / name}")
            t0 = time.perf_counter()
            _execute(study, name, profile, params, cfg,
                     {"reference": ""} if name in READS_REFERENCE else {})
            log(f"== {name} done in {time.perf_counter() - t0:.0f}s")

        path = export_bundle(cfg, study.root)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        log(f"== bundle for the interactive path: {path} ({size:.1f} MB)")

        report = build_report(study.root, notebooks, report_title(profile))
        log(f"== report: {report}")
        write_json({"seconds": time.perf_counter() - t_start}, study.root / "timing.json")
    return study.root
