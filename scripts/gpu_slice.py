"""A real study slice on full Fashion-MNIST, stage by stage, without notebooks (papermill may be
missing where it runs): teachers, calibration, students, results, claims, and each stage's time.

    python scripts/gpu_slice.py OUT_DIR [--small] [--device cuda] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcal import study  # noqa: E402
from kdcal.claims import claims_table  # noqa: E402
from kdcal.config import parse_sets, resolve  # noqa: E402

# Full Fashion-MNIST (55,000 training images after 5,000 for validation), large batches, bf16,
# channels_last; the quick profile's modes, controls and calibrators.
SLICE = dict(dataset="fmnist", train_size=0, val_size=5000, test_size=0,
             teachers=["resnet8", "resnet20", "resnet44"], student="resnet8", seeds=[0, 1],
             teacher_epochs=6, student_epochs=6, batch_size=512, student_batch_size=512,
             lr=0.2, student_lr=0.2, amp="bf16", channels_last=True, eval_batch_size=5000,
             download=False)
# the same stages on a CPU in a minute: a check that the script runs, not a result
SMALL = dict(train_size=1000, val_size=500, test_size=1000, teachers=["resnet8", "resnet14"],
             seeds=[0, 1], teacher_epochs=1, student_epochs=1, batch_size=256,
             student_batch_size=256, eval_batch_size=1000, amp="auto")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {**SLICE, **(SMALL if args.small else {}), "device": args.device,
                 **parse_sets(args.set)}
    cfg = resolve("quick", overrides)
    study_dir = out / "study"
    timing = {"config": {k: overrides[k] for k in sorted(overrides)}, "seconds": {}}
    t_all = time.perf_counter()
    for name, stage in (("teachers", study.train_teachers), ("calibration", study.calibrate_teachers),
                        ("students", study.distill_students), ("results", study.write_results)):
        t0 = time.perf_counter()
        table = stage(cfg, study_dir, log=print) if name != "results" else stage(cfg, study_dir)
        timing["seconds"][name] = round(time.perf_counter() - t0, 2)
        print(f"== {name}: {timing['seconds'][name]:.1f} s, {len(table)} rows", flush=True)
    results = study.results_table(cfg, study_dir)
    results.to_csv(out / "results.csv", index=False)
    claims = claims_table(results)
    claims.to_csv(out / "claims.csv", index=False)
    timing["seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    timing["students"] = int((results["role"] == "student").sum())
    timing["teachers"] = int((results["role"] == "teacher").sum())
    (out / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    print(claims.to_string(), flush=True)
    print(f"slice: {timing['seconds']['total']:.1f} s in all", flush=True)


if __name__ == "__main__":
    main()
