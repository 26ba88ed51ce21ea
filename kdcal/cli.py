"""Command line: ``kdcal run --profile NAME [--set key=value ...] [--out DIR]``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from .config import PROFILES

    parser = argparse.ArgumentParser(prog="kdcal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the study's notebooks into outputs/<profile>/")
    run.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)}")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (repeatable), e.g. --set seeds=0,1")
    run.add_argument("--out", default=None, help="study folder (default outputs/<profile>)")
    sub.add_parser("profiles", help="list the profiles and their settings")
    args = parser.parse_args(argv)

    from .config import ConfigError, parse_sets
    from .pipeline import NotebookFailed, run_study
    from .store import StoreError
    from .data import DatasetError

    try:
        if args.command == "profiles":
            for name, values in PROFILES.items():
                print(f"{name}: {values}")
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
