"""The GPU path through the notebooks: the gpu-evidence profile, the wheels a bare GPU machine
lacks, and scripts/gpu_evidence.sh, run here as a dry run on a CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kdcal import budget, config
from kdcal.models import family

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_evidence.sh"


def test_gpu_evidence_profile_is_the_evidence_design_at_full_scale():
    raw = config.PROFILES["gpu-evidence"]
    assert raw["device"] == "cuda" and raw["split_per_seed"]
    assert "pack_teachers" not in raw  # auto: packed on CUDA, as every profile leaves it
    cfg = config.resolve("gpu-evidence", {"device": "cpu"})  # validates (no GPU here)
    assert cfg.dataset == "fmnist" and budget.teacher_images(cfg) == 55_000
    depth = [a for a in cfg.teachers if family(a) == "depth"]
    assert len(depth) >= 6 and [a for a in cfg.teachers if family(a) == "width"]
    design = config.resolve("evidence-reuse")  # the issue-22 design, at 3,000 images on a CPU
    for key in ("teachers", "student", "modes", "calibrators", "tau_grid", "control_seeds",
                "split_per_seed", "alpha", "tau"):
        assert getattr(cfg, key) == getattr(design, key), key
    assert cfg.modes == ["uncalibrated", "compose", "replace", "cal-vector", "cal-matrix"]
    assert cfg.tau_grid == [2.0, 8.0] and len(cfg.seeds) >= 12
    # the students and the baseline train exactly the resnet8 teacher's steps
    assert budget.student_steps(cfg) == budget.teacher_steps(cfg) == 10 * (55_000 // 512)


def test_gpu_wheel_list_pins_one_version_of_each():
    lines = [line.strip() for line in (ROOT / "scripts" / "gpu_wheels.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    names = [line.split("==")[0].lower() for line in lines]
    assert all(line.count("==") == 1 for line in lines), lines
    assert len(set(names)) == len(names)
    assert {"papermill", "ipykernel", "nbconvert", "nbclient", "jupyter-client", "netcal"} <= set(names)
    assert not {"torch", "numpy", "pandas"} & set(names)  # the GPU image has these


def _script(*args, out, timeout=60):
    env = {**os.environ, "OUT": str(out), "PY": sys.executable, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--budget", "soon"], "positive integer"), (["--seeds", "0 x"], "non-negative integers"),
    (["--per-run", "0"], "positive integer"), (["--fast"], "unknown argument --fast")])
def test_gpu_evidence_script_refuses_bad_arguments(tmp_path, args, message):
    proc = _script(*args, out=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.slow
def test_gpu_evidence_dry_run_leaves_a_bundle(tmp_path):
    """The script's every step on a CPU (tiny synthetic data): the fill bench, kdcal run through
    papermill, then the study folder without runs/ as one tarball under $OUT, and the summary."""
    out = tmp_path / "out"
    proc = _script("--dry-run", "--bench", "--budget", "1500", out=out, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "gpu-evidence.json").read_text())
    assert summary["dry_run"] and summary["seeds_done"] == [0]
    assert summary["runs"][0]["exit"] == 0 and summary["runs"][0]["seconds"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["fill.json", "gpu-evidence-s0.tar.gz",
                                                     "gpu-evidence.json", "log.txt"]
    fill = json.loads((out / "fill.json").read_text())
    assert [r["path"] for r in fill] == ["separate", "packed-students", "packed-teachers"]
    with tarfile.open(out / "gpu-evidence-s0.tar.gz") as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
    assert {"results.csv", "study.json", "report.html", "04_analyze.ipynb"} <= names
    assert any(n.startswith("bundle/runs/teacher-resnet8x2-s0-") for n in names)
    assert not any(n.startswith("runs/") for n in names)
    assert "seeds done [0]" in (out / "log.txt").read_text()
