"""Rewrite kdcal/step_times.json from the committed runs' logs (kdcal.plan.fit_from_logs).

    python scripts/fit_step_times.py
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcal import plan  # noqa: E402

table = plan.fit_from_logs(ROOT)
table = {"date": datetime.date.today().isoformat(),
         "how": "kdcal.plan.fit_from_logs over outputs/quick, outputs/evidence, the run of "
                "confirm-transfer's seed 0 (the first run in each "
                "log: for the grown evidence study, its seed 0; 2 CPU cores, 2 "
                "workers of 1 thread) and outputs/gpu-check (one H200, bf16, workers=0): seconds "
                "per optimizer step per model = epoch seconds / steps / models in the loop, "
                "median over epochs 2 on; task and stage constants fitted to the stage walls",
         **table}
plan.STEP_TIMES.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
print(f"wrote {plan.STEP_TIMES}: {len(table['rows'])} rows; "
      + "; ".join(f"{d}: {c}" for d, c in table["devices"].items()))
