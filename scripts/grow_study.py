"""Grow a committed study by more seeds, one full rerun at a time, each added as soon as it ends.

    python scripts/grow_study.py --study outputs/evidence-transfer --seeds 10 11

Each seed runs as `kdcal run --profile P --set seeds=S --out RUNS/P-sS` with the study's own
profile and overrides, from the study's code: this checkout when its kdcal sources hash as the
study's, else a git worktree at the study's commit with its own venv (made once: `kdcal add`
refuses seeds of other code). Then this checkout's `kdcal add` and `kdcal analyse` fold the seed
in, so a session that ends mid-way loses at most the seed in progress, and a rerun of the same
command resumes that seed's folder (kdcal run skips finished runs) and skips seeds already added.
Every step's wall time goes to RUNS/grow.log (the BENCHMARKS rows). Run it alone on the CPU.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcal import bundle, grow, plan  # noqa: E402
from kdcal.store import read_json  # noqa: E402


def study_code(study: Path) -> dict:
    """The study's profile, overrides, seeds and code (source hash, commit), from its folder."""
    try:
        info = grow.study_bundle(study)
    except grow.GrowError as e:
        raise SystemExit(f"grow_study: {e}") from None
    if info is None:
        raise SystemExit(f"grow_study: {study} has no bundle (only studies written by kdcal run grow)")
    meta = read_json(study / "study.json")
    return {"profile": meta["profile"], "overrides": meta.get("overrides", {}),
            "seeds": set(info["config"]["seeds"]), **info["code"]}


def kdcal_at(code: dict, worktree: Path | None, log) -> tuple[list[str], Path]:
    """The command that runs kdcal as the study's code, and the folder to run it in: this
    checkout's own when it hashes the same, else a worktree at the study's commit (created and
    installed on first use)."""
    if bundle.code_fingerprint()["source_hash"] == code["source_hash"]:
        return [sys.executable, "-m", "kdcal"], ROOT
    if not code.get("git_commit"):
        raise SystemExit("grow_study: the study's code differs from this checkout's and it records "
                         "no git commit to check out")
    tree = worktree or ROOT.parent / f"kdcal-at-{code['git_commit'][:7]}"
    if not tree.exists():
        log(f"worktree {tree} at {code['git_commit'][:12]} (the study's code)")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                        code["git_commit"]], check=True)
    if not (tree / ".venv" / "bin" / "kdcal").exists():
        log(f"installing {tree}/.venv (make install)")
        subprocess.run(["make", "-C", str(tree), "install"], check=True)
    return [str(tree / ".venv" / "bin" / "kdcal")], tree


def set_args(overrides: dict, seed: int) -> list[str]:
    """The study's overrides (but its seeds) as --set arguments, plus the one seed."""
    out = []
    for key, value in sorted(overrides.items()):
        if key not in ("seeds", "control_seeds"):
            # strings as they are (config keeps a str field's text), the rest as literals
            out += ["--set", f"{key}={value if isinstance(value, str) else repr(value)}"]
    return out + ["--set", f"seeds={seed}"]


def stage_times(run_dir: Path) -> str:
    """'01 teachers 1150 s, ...': the stage walls kdcal plan fits its step times to, from the run's
    log and timing.json; a log without them is said, not fatal (the seed is still added)."""
    try:
        walls = plan.measured_walls(run_dir)
    except (OSError, KeyError, ValueError) as e:
        return f"stage times not readable from its log: {e!r}"
    return ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in walls.items())


def grow_by(study: Path, seeds: list[int], runs: Path, worktree: Path | None = None) -> list[int]:
    """Run, add and analyse each seed not yet in the study, in order; returns the seeds added."""
    runs.mkdir(parents=True, exist_ok=True)
    logfile = runs / "grow.log"

    def log(line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
        print(stamped, flush=True)
        with logfile.open("a") as f:
            f.write(stamped + "\n")

    code = study_code(study)
    kdcal, where = kdcal_at(code, worktree, log)
    here = [sys.executable, "-m", "kdcal"]
    added = []
    for seed in seeds:
        if seed in code["seeds"]:
            log(f"seed {seed}: already in {study}, skipped")
            continue
        out = runs / f"{code['profile']}-s{seed}"
        log(f"seed {seed}: kdcal run --profile {code['profile']} into {out}")
        start = time.monotonic()
        with (runs / f"{out.name}.out").open("a") as sink:
            rc = subprocess.run([*kdcal, "run", "--profile", code["profile"],
                                 *set_args(code["overrides"], seed), "--out", str(out)],
                                stdout=sink, stderr=subprocess.STDOUT, cwd=where).returncode
        wall = time.monotonic() - start
        if rc != 0:
            log(f"seed {seed}: kdcal run failed (rc {rc}) after {wall:.0f} s; see {out.name}.out; "
                "rerun this command to resume it")
            raise SystemExit(rc)
        log(f"seed {seed}: run {wall:.0f} s ({stage_times(out)})")
        start = time.monotonic()
        for step in (["add", "--bundle", str(out), "--study", str(study)], ["analyse", "--study", str(study)]):
            proc = subprocess.run([*here, *step], capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                log(f"seed {seed}: kdcal {step[0]} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
                raise SystemExit(proc.returncode)
        log(f"seed {seed}: add + analyse {time.monotonic() - start:.0f} s")
        code["seeds"].add(seed)
        added.append(seed)
    return added


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, required=True, help="a study folder with a bundle")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="the seeds to run and add")
    p.add_argument("--runs", type=Path, default=ROOT.parent / "runs",
                   help="where each seed's run folder and the log go (default ../runs)")
    p.add_argument("--worktree", type=Path, help="the study's code checkout (default ../kdcal-at-<commit>)")
    a = p.parse_args(argv)
    added = grow_by(a.study.resolve(), a.seeds, a.runs.resolve(), a.worktree)
    print(f"grow_study: added seeds {added} to {a.study}")


if __name__ == "__main__":
    main()
