"""Command line of kdcal.

  kdcal run --profile NAME [--set key=value ...] [--out DIR]   run the study's notebooks
  kdcal plan --profile NAME [--set key=value ...] [--device cpu|cuda]
                                     the grid and the estimated time per stage, nothing run
  kdcal add --bundle PATH --study DIR [--allow-engine]
                                     add the seeds of a run's bundle to a study folder
  kdcal analyse --study DIR          re-run notebook 04 (and 05) and the report on the
                                     study's own tables, training nothing; 01-03 too
                                     where the folder holds every run (a grown study)
  kdcal profiles                     list the profiles and their settings
"""
from __future__ import annotations

import argparse
import sys

from .config import PROFILES, ConfigError, parse_sets
from .data import DatasetError
from .grow import add_bundle
from .pipeline import NotebookFailed, analyse_study, run_study
from .plan import format_plan, plan_profile
from .store import StoreError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kdcal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the study's notebooks into outputs/<profile>/")
    run.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)}")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (repeatable), e.g. --set seeds=0,1")
    run.add_argument("--out", default=None, help="study folder (default outputs/<profile>)")
    plan = sub.add_parser("plan", help="print the grid and the estimated time per stage, before "
                                       "anything runs (from step times measured on real runs)")
    plan.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)}")
    plan.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value (repeatable), as for run")
    plan.add_argument("--device", choices=["cpu", "cuda"], default=None,
                      help="the device to estimate for (default: the profile's)")
    add = sub.add_parser("add", help="grow a study by the seeds of a run's bundle (kdcal run "
                                     "--set seeds=... --out X leaves X/bundle); refuses other "
                                     "code, another config or a seed already there")
    add.add_argument("--bundle", required=True, help="a bundle folder, or a study folder with one")
    add.add_argument("--study", required=True, help="the study folder to grow (may be empty)")
    add.add_argument("--allow-engine", action="store_true",
                     help="accept seeds run on another engine (device, threads, packing): the "
                          "study's provenance.csv records each seed's device")
    analyse = sub.add_parser("analyse", help="re-run the analysis notebooks and the report on a "
                                             "study folder's own tables (a committed or grown "
                                             "study), training nothing")
    analyse.add_argument("--study", required=True, help="the study folder (study.json and "
                                                        "results.csv)")
    sub.add_parser("profiles", help="list the profiles and their settings")
    args = parser.parse_args(argv)

    try:
        if args.command == "profiles":
            for name, values in PROFILES.items():
                print(f"{name}: {values}")
            return 0
        if args.command == "analyse":
            print(f"kdcal: analysis re-run in {analyse_study(args.study)}")
            return 0
        if args.command == "plan":
            print(format_plan(plan_profile(args.profile, parse_sets(args.set), args.device)))
            return 0
        if args.command == "add":
            add_bundle(args.bundle, args.study, args.allow_engine)
            print(f"kdcal: to re-run the notebooks and the report on it (nothing trains): "
                  f"kdcal analyse --study {args.study}")
            return 0
        folder = run_study(args.profile, parse_sets(args.set), args.out)
    except (ConfigError, NotebookFailed, StoreError, DatasetError) as exc:
        print(f"kdcal: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        print("kdcal: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print(f"kdcal: study written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
