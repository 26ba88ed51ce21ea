"""pytest plugin for `make mutate`: cheap, fastest-first test runs for each mutant.

mutmut forks every mutant's test run from one process that has collected the tests already.
- The tests that reach a mutated function come in no particular order; sorted by the durations
  mutmut's stats run measured, ``-x`` stops a killed mutant after its fastest test.
- The collected heap (torch, pandas, netcal) is frozen out of the garbage collector: otherwise
  every forked run spends seconds walking (and copying) it in pytest's final ``gc.collect``.
"""
from __future__ import annotations

import gc
import json
from pathlib import Path


def pytest_collection_modifyitems(session, config, items):
    stats = Path("mutmut-stats.json")  # mutmut runs the tests inside mutants/, where it lives
    if not stats.exists():
        return
    duration = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: duration.get(item.nodeid, 0.0))


def pytest_collection_finish(session):
    gc.freeze()
