"""Wall time of a profile's training grid: the local executor against Ray with N workers.

    python scripts/bench_ray.py [--profile smoke] [--workers 2] [--set key=value ...]

Runs the study's stages (teachers, teacher variants, calibration, students) three times, each
in a fresh process and a fresh temporary study folder:
  1. local, torch's default threads (what `kdcal run` does today);
  2. local, one thread per training (the same arithmetic as 3, so the same results.csv);
  3. Ray, a local instance with N CPUs: N trainings at a time, one thread each.
It prints the wall times, the speed-ups, and whether runs 2 and 3 wrote the same results.csv.
The notebooks' kernel start-ups are left out: they cost the same with either executor.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcal import config, study  # noqa: E402

STAGES = ("train_teachers", "train_teacher_variants", "calibrate_teachers",
          "compare_calibrators", "distill_students")


def run_grid(cfg: config.StudyConfig) -> tuple[float, bytes]:
    """Seconds for every stage of ``cfg`` into a fresh folder, and the results.csv it wrote."""
    with tempfile.TemporaryDirectory(prefix="kdcal-bench-") as out:
        t0 = time.perf_counter()
        for stage in STAGES:
            if stage != "train_teacher_variants" or cfg.teacher_variants:
                getattr(study, stage)(cfg, out, log=lambda *_: None)
        seconds = time.perf_counter() - t0
        study.write_results(cfg, out)
        return seconds, (Path(out) / "results.csv").read_bytes()


def start_ray(workers: int) -> float:
    """A private local Ray instance with ``workers`` CPUs; returns its start-up seconds."""
    # a private token, not one written to ~/.ray; Ray reads these when it is imported
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level="warning", object_store_memory=200_000_000)
    return time.perf_counter() - t0


def one_run(kind: str, profile: str, sets: dict, workers: int) -> dict:
    """One of the three runs, in this (fresh) process: torch's kernels choose their work split
    when first used, so the thread count is set before anything runs."""
    import hashlib

    import torch

    threads = torch.get_num_threads() if kind == "local" else 1
    torch.set_num_threads(threads)
    overrides = {**sets, **({} if kind == "local" else {"threads": 1})}
    startup = 0.0
    if kind == "ray":
        startup = start_ray(workers)
        overrides["executor"] = "ray"
    seconds, table = run_grid(config.resolve(profile, overrides))
    return {"seconds": seconds, "startup": startup, "threads": threads,
            "table": hashlib.sha1(table).hexdigest()}


def main(argv=None) -> int:
    import json
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--one", choices=["local", "local1", "ray"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sets = config.parse_sets(args.set)
    if args.one:
        print(json.dumps(one_run(args.one, args.profile, sets, args.workers)))
        return 0
    runs = {}
    for kind in ("local", "local1", "ray"):  # each in a fresh process
        cmd = [sys.executable, __file__, "--one", kind, "--profile", args.profile,
               "--workers", str(args.workers), *[f"--set={s}" for s in args.set]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        runs[kind] = json.loads(out.strip().splitlines()[-1])
    import torch

    local, one, ray = runs["local"], runs["local1"], runs["ray"]
    print(f"profile {args.profile} {sets or ''}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"local, {local['threads']} threads (default): {local['seconds']:7.1f} s")
    print(f"local, 1 thread:             {one['seconds']:7.1f} s")
    print(f"ray, {args.workers} workers x 1 thread:  {ray['seconds']:7.1f} s  "
          f"(+ {ray['startup']:.1f} s to start Ray)")
    print(f"speed-up of ray: {local['seconds'] / ray['seconds']:.2f}x against the local default, "
          f"{one['seconds'] / ray['seconds']:.2f}x against local with 1 thread")
    print(f"results.csv of ray equals local with 1 thread: {ray['table'] == one['table']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
