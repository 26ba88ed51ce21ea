"""Run a command and report the peak memory of its whole process tree.

``/usr/bin/time -v`` reports the largest single process; a study with workers runs a driver,
a notebook kernel and N worker processes at once, and the budget (4 GiB) is for all of them
together. This samples the tree every ``--every`` seconds and sums PSS (each shared page
counted once across the tree), with RSS beside it as the upper bound.

    python scripts/peak_memory.py [--every 2] [--json PATH] -- kdcal run --profile evidence
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import psutil


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(PSS bytes, RSS bytes, processes) summed over ``root`` and its descendants."""
    pss = rss = n = 0
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    for proc in procs:
        try:
            full = proc.memory_full_info()
        except psutil.Error:
            continue
        pss += getattr(full, "pss", full.rss)
        rss += full.rss
        n += 1
    return pss, rss, n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--json", help="also write the peak as JSON to this path")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    start = time.time()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak = {"pss_bytes": 0, "rss_bytes": 0, "processes": 0, "at_s": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            pss, rss, n = tree_memory(root)
            if pss > peak["pss_bytes"]:
                peak.update(pss_bytes=pss, at_s=round(time.time() - start, 1))
            peak["rss_bytes"] = max(peak["rss_bytes"], rss)
            peak["processes"] = max(peak["processes"], n)
            done.wait(args.every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        rc = child.wait()
    done.set()
    sampler.join()
    peak.update(wall_s=round(time.time() - start, 1), returncode=rc, command=command)
    gib = 2 ** 30
    print(f"peak memory of the process tree: {peak['pss_bytes'] / gib:.2f} GiB PSS "
          f"({peak['rss_bytes'] / gib:.2f} GiB RSS summed, up to {peak['processes']} processes), "
          f"wall {peak['wall_s']:.0f} s, exit {rc}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(peak, fh, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
