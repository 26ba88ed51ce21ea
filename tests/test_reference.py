"""The committed reference run stays reachable: code changes must not silently change run ids
(a changed id means `make study` retrains everything and the committed table goes stale)."""
from pathlib import Path

import pandas as pd
import pytest

from kdcal import config, study
from kdcal.store import run_id
from kdcal.train import make_engine

REFERENCE = Path(__file__).resolve().parents[1] / "outputs" / "quick" / "results.csv"


@pytest.mark.skipif(not REFERENCE.exists(), reason="no committed reference run")
def test_quick_teacher_run_ids_match_the_committed_reference():
    committed = set(pd.read_csv(REFERENCE)["run_id"])
    cfg = config.resolve("quick")
    engine = make_engine("cpu", "bf16")  # the reference ran with bf16 autocast
    ids = {rid for rid, _, _ in study.teacher_runs(cfg, engine)}
    assert ids <= committed, sorted(ids - committed)


@pytest.mark.skipif(not REFERENCE.exists(), reason="no committed reference run")
def test_quick_student_run_ids_match_the_committed_reference():
    committed = pd.read_csv(REFERENCE)
    cfg = config.resolve("quick")
    engine = make_engine("cpu", "bf16")
    teachers = committed[committed["role"] == "teacher"].set_index("run_id")["temperature"]
    rc = study.student_run_config(cfg, 0, "baseline", None, None, engine)
    baseline = run_id("student", f"{cfg.student}-baseline-s0", rc)
    assert baseline in set(committed["run_id"])
    rid, arch, seed = study.teacher_runs(cfg, engine)[0]
    t = round(float(teachers[rid]), 6)
    rc = study.student_run_config(cfg, seed, "replace", rid, t, engine)
    assert run_id("student", f"{cfg.student}-replace-{arch}-s{seed}", rc) in set(committed["run_id"])


EVIDENCE = REFERENCE.parents[1] / "evidence" / "results.csv"


@pytest.mark.skipif(not EVIDENCE.exists(), reason="no committed evidence run")
def test_evidence_run_ids_match_the_committed_evidence_run():
    """README's findings come from outputs/evidence: `kdcal run --profile evidence` must find
    those runs (same teachers, same baseline students), not silently start another study."""
    committed = pd.read_csv(EVIDENCE)
    cfg = config.resolve("evidence")
    engine = make_engine("cpu", "bf16")
    ids = {rid for rid, _, _ in study.teacher_runs(cfg, engine)}
    assert ids == set(committed.loc[committed["role"] == "teacher", "run_id"])
    for seed in cfg.seeds:
        rc = study.student_run_config(cfg, seed, "baseline", None, None, engine)
        assert run_id("student", f"{cfg.student}-baseline-s{seed}", rc) in set(committed["run_id"])
