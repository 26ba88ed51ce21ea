"""scripts/power_confirm.py runs, and the numbers of the preregistration that do not depend on the
simulation (the design, the observed slopes, the teacher and seed sds) are the ones it prints.

The script broke once when the module split moved a function it called, and nothing noticed: this
runs it with a handful of simulated studies (seconds), so the powers themselves are not checked."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
PREREG = (PROJECT / "docs" / "preregistration-confirm-transfer.md").read_text()


@pytest.fixture(scope="module")
def printed() -> str:
    proc = subprocess.run([sys.executable, str(PROJECT / "scripts" / "power_confirm.py"), "--sims", "10"],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT,
                          env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_design_line_is_the_preregistered_design(printed):
    line = printed.splitlines()[0]
    assert "15 teachers (6 depth, 9 width), 7.12 doublings" in line
    assert "student resnet8x0.125 1,384 parameters = 1/14.3 of the smallest teacher" in line
    for quoted in ("**7.12 doublings**", "**1,384 parameters**, 1/14.3", "+-0.070 points per doubling"):
        assert quoted in PREREG, quoted
    assert "+-0.070 points per doubling" in printed
    assert printed.rstrip().endswith("preregistered: 14 seeds (confirm-transfer seeds = "
                                     "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])")


def test_the_variances_the_preregistration_quotes_are_the_scripts(printed):
    """Teacher sds, seed sds and observed slopes, rounded as the preregistration writes them."""
    found = re.findall(r"claim [34]: (\S+)\s+observed slope ([+-]\d+\.\d+)/doubling, teacher sd "
                       r"(\d+\.\d+), seed sd (\d+\.\d+)", printed)
    rows = {mode: tuple(map(float, numbers)) for mode, *numbers in found}
    assert set(rows) == {"uncalibrated", "compose", "replace", "cal-vector"}
    teacher_sds = re.search(r"Teacher sds\s+\(points\): uncalibrated (\d+\.\d+), compose (\d+\.\d+), replace "
                            r"(\d+\.\d+), cal-vector (\d+\.\d+); seed sds (\d+\.\d+)-(\d+\.\d+)", PREREG)
    assert teacher_sds, "the preregistration's sentence on the sds moved"
    quoted = [float(v) for v in teacher_sds.groups()]
    for mode, value in zip(("uncalibrated", "compose", "replace", "cal-vector"), quoted[:4]):
        assert round(rows[mode][1], 2) == value, mode
    seed_sds = [round(r[2], 2) for r in rows.values()]
    assert (min(seed_sds), max(seed_sds)) == (quoted[4], quoted[5])
    table = {"uncalibrated": r"claim 3, uncalibrated \(([+-]\d+\.\d+)\)",
             "compose": r"claim 4, compose \(([+-]\d+\.\d+)\)", "replace": r"claim 4, replace \(([+-]\d+\.\d+)\)",
             "cal-vector": r"claim 4, cal-vector \(([+-]\d+\.\d+)\)"}
    for mode, pattern in table.items():
        assert round(rows[mode][0], 2) == float(re.search(pattern, PREREG).group(1)), mode
