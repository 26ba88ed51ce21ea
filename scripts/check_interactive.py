"""The interactive path as a new user meets it (issue 15, "Done when"), timed per notebook.

On a fresh clone of the repository's HEAD, each notebook runs top to bottom with its own
parameter cell (papermill injects nothing; cwd notebooks/, as JupyterLab runs it). Two phases:

  alone     02, 04 and 05, each on an empty scratch folder: they read the committed reference
            run (bundle, results.csv, regimes_results.csv) and train nothing
  in-order  01 to 05 in order on one scratch folder (the tutorial profile: real training)

Then ``git status --porcelain`` of the clone must be empty: the notebooks wrote only into the
gitignored scratch folder. Exit status 1 when a notebook fails or a committed file changed.

    python scripts/check_interactive.py [--phases alone,in-order] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
ALONE = ["02_calibrate_teachers", "04_analyze", "05_regimes"]
IN_ORDER = ["01_train_teachers", "02_calibrate_teachers", "03_distill_students", "04_analyze",
            "05_regimes"]
SCRATCH = Path("outputs") / "scratch"  # the notebooks' default study_dir, from notebooks/


def fresh_clone(dest: Path) -> Path:
    clone = dest / "clone"
    subprocess.run(["git", "clone", "--quiet", "--local", str(PROJECT), str(clone)], check=True)
    return clone


def run_notebook(clone: Path, name: str, out_dir: Path) -> float:
    """Execute one notebook as committed (no parameters) and return its seconds."""
    import papermill as pm

    os.environ["PYTHONPATH"] = os.pathsep.join([str(clone), os.environ.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    pm.execute_notebook(str(clone / "notebooks" / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                        cwd=str(clone / "notebooks"), kernel_name="python3", progress_bar=False)
    return time.perf_counter() - t0


def changed_files(clone: Path) -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def check(phases: list[str], work: Path) -> dict[str, float]:
    clone = fresh_clone(work)
    times: dict[str, float] = {}
    for phase in phases:
        names = ALONE if phase == "alone" else IN_ORDER
        shutil.rmtree(clone / SCRATCH, ignore_errors=True)
        out_dir = work / phase
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            if phase == "alone":  # each one alone: a scratch folder with no runs
                shutil.rmtree(clone / SCRATCH, ignore_errors=True)
            seconds = run_notebook(clone, name, out_dir)
            times[f"{phase} {name}"] = seconds
            print(f"{phase:9s} {name:24s} {seconds:7.1f} s", flush=True)
    changed = changed_files(clone)
    if changed:
        raise SystemExit("committed files changed:\n" + "\n".join(changed))
    print("git status --porcelain: clean (only the gitignored scratch folder was written)")
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="alone,in-order",
                        help="comma-separated: alone, in-order (default both)")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    bad = [p for p in phases if p not in ("alone", "in-order")]
    if bad:
        parser.error(f"unknown phase {bad[0]!r}; valid: alone, in-order")
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
        times = check(phases, work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            times = check(phases, Path(tmp))
    for phase in phases:
        total = sum(s for k, s in times.items() if k.startswith(phase + " "))
        print(f"{phase}: {total:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
