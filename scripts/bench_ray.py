"""Wall time of a profile's training grid: the local executor against Ray with N workers.

    python scripts/bench_ray.py [--profile smoke] [--workers 2] [--set key=value ...]

Runs the study's stages (teachers, teacher variants, calibration, students) in this process,
three times, each into a fresh temporary study folder:
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
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "token")  # a private token, not one in ~/.ray
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level="warning", object_store_memory=200_000_000)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sets = config.parse_sets(args.set)
    import torch

    default_threads = torch.get_num_threads()
    local_default, _ = run_grid(config.resolve(args.profile, sets))
    torch.set_num_threads(1)  # the one-thread runs: the driver's default becomes 1 as well
    local_one, table_local = run_grid(config.resolve(args.profile, {**sets, "threads": 1}))
    startup = start_ray(args.workers)
    on_ray, table_ray = run_grid(config.resolve(args.profile, {**sets, "threads": 1,
                                                               "executor": "ray"}))
    import ray

    ray.shutdown()
    print(f"profile {args.profile} {sets or ''}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"local, {default_threads} threads (default): {local_default:7.1f} s")
    print(f"local, 1 thread:             {local_one:7.1f} s")
    print(f"ray, {args.workers} workers x 1 thread:  {on_ray:7.1f} s  (+ {startup:.1f} s to start Ray)")
    print(f"speed-up of ray: {local_default / on_ray:.2f}x against the local default, "
          f"{local_one / on_ray:.2f}x against local with 1 thread")
    print(f"results.csv of ray equals local with 1 thread: {table_ray == table_local}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
