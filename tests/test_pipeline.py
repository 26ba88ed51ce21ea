"""End to end: `kdcal run --profile smoke` executes the four notebooks with papermill."""
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


from conftest import kdcal


def test_smoke_run_writes_notebooks_results_and_figures(smoke_study):
    for name in ("01_train_teachers", "02_calibrate_teachers", "03_distill_students", "04_analyze"):
        assert (smoke_study / f"{name}.ipynb").exists()
    res = pd.read_csv(smoke_study / "results.csv")
    teachers = res[(res["role"] == "teacher") & (res["mode"] == "teacher")]
    students = res[res["role"] == "student"]
    assert len(teachers) == 4  # 2 architectures x 2 seeds
    variants = res[(res["role"] == "teacher") & (res["mode"] != "teacher")]
    assert sorted(variants["mode"].unique()) == ["early_stop", "label_smoothing", "mixup"]
    assert len(variants) == 3 * 4 and variants[["ece", "temperature", "ece_cal"]].notna().all().all()
    assert teachers[["acc", "ece", "nll", "temperature", "ece_cal", "nll_cal", "ace", "mce",
                     "classwise_ece", "brier"]].notna().all().all()
    assert (teachers["temperature"] > 0).all()
    # the teachers' fit and calibration on the images the students learn from (issue 12, 14)
    assert teachers[["train_acc", "train_ece", "train_ece_cal", "train_nll",
                     "train_nll_cal"]].notna().all().all()
    assert teachers["train_acc"].between(0, 1).all()
    assert sorted(students["mode"].unique()) == ["baseline", "cal-histogram", "compose", "replace",
                                                 "tau_sweep", "temp_sweep", "uncalibrated"]
    # seeds x (teachers x (4 modes + 1 tau control + 1 temperature-sweep point) + baseline)
    assert len(students) == 2 * (2 * 6 + 1)
    sweep = students[students["mode"] == "temp_sweep"]
    assert (sweep["teacher_temperature"] == 2.0).all() and (sweep["kd_tau"] == 4.0).all()
    assert (students.loc[students["mode"] == "tau_sweep", "kd_tau"] == 2.0).all()
    kd = students[students["mode"] != "baseline"]
    assert kd[["teacher", "teacher_params", "temperature", "agreement"]].notna().all().all()
    assert (kd.loc[kd["mode"] == "replace", "kd_tau"] == kd.loc[kd["mode"] == "replace", "temperature"]).all()
    assert res[["acc", "ece", "nll"]].apply(lambda c: c.between(0, 50)).all().all()
    figures = {p.name for p in (smoke_study / "figures").iterdir()}
    for fig in ("teacher_calibration_vs_size", "student_accuracy_vs_teacher_size",
                "teacher_reliability", "paired_mode_differences", "calibrators_by_teacher",
                "calibrators_reliability", "teacher_temperature_sweep", "teacher_variants"):
        assert f"{fig}.png" in figures and f"{fig}.svg" in figures
    claims = pd.read_csv(smoke_study / "claims.csv")
    assert set(claims["verdict"]) <= {"supported", "contradicted", "equivalent", "underpowered"}


def test_notebooks_executed_without_errors(smoke_study):
    import nbformat

    nb = nbformat.read(smoke_study / "04_analyze.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for o in outputs), "figures must render inline"


def test_rerun_skips_finished_runs_and_reproduces_the_table(smoke_rerun, smoke_study):
    """`kdcal run` again on the finished smoke study (conftest's shared ``smoke_rerun``)."""
    study, rerun = smoke_rerun
    assert rerun["returncode"] == 0, rerun["stderr"]
    rerun_log = (study / "log.txt").read_text()[len((smoke_study / "log.txt").read_text()):]
    assert "done, skipped" in rerun_log and "epoch 1/" not in rerun_log
    assert (study / "results.csv").read_bytes() == (smoke_study / "results.csv").read_bytes()


@pytest.mark.parametrize("args,needle", [
    (["--profile", "nope"], "unknown profile 'nope'; valid: smoke, quick"),
    (["--profile", "smoke", "--set", "colour=red"], "unknown key 'colour'; valid:"),
    (["--profile", "smoke", "--set", "lr=fast"], "lr='fast' is not a valid float"),
    (["--profile", "smoke", "--set", "teachers=resnet9"], "architecture='resnet9' is not valid"),
    (["--profile", "smoke", "--set", "alpha=1.5"], "alpha=1.5 is out of range"),
])
def test_cli_user_errors_are_one_line_without_traceback(tmp_path, args, needle):
    proc = kdcal("run", *args, "--out", str(tmp_path / "s"), timeout=120)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists(), "nothing may start before the config is valid"


def test_report_is_one_page_with_figures_and_no_code(smoke_study):
    html = (smoke_study / "report.html").read_text()
    assert html.count("<img") >= 6
    assert "import kdcal" not in html and "study.train_teachers" not in html
    for heading in ("Train a family of teachers", "Measure and calibrate", "Distill one student",
                    "What do the data say", "The claims, tested"):
        assert heading in html


def test_analyse_reruns_the_analysis_on_a_clone_without_runs(smoke_study, tmp_path):
    """A committed study on a fresh clone has its tables, not its runs: `kdcal analyse` re-runs
    notebook 04 and the report on them, trains nothing and reproduces the claims."""
    import shutil

    clone = tmp_path / "clone"
    shutil.copytree(smoke_study, clone, ignore=shutil.ignore_patterns("runs", "bundle"))
    (clone / "claims.csv").unlink()
    (clone / "report.html").unlink()
    proc = kdcal("analyse", "--study", str(clone))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (clone / "runs").exists()
    assert (clone / "results.csv").read_bytes() == (smoke_study / "results.csv").read_bytes()
    # the run computed its claims from the full-precision table, the re-analysis from results.csv
    # (6 significant digits): every claim, verdict and note the same, the numbers to that rounding
    got, want = pd.read_csv(clone / "claims.csv"), pd.read_csv(smoke_study / "claims.csv")
    text = [c for c in want if not pd.api.types.is_numeric_dtype(want[c])]
    assert "verdict" in text and got[text].equals(want[text])
    pd.testing.assert_frame_equal(got.drop(columns=text), want.drop(columns=text), rtol=1e-3,
                                  atol=1e-5)
    assert "Appendix" in (clone / "report.html").read_text()


def test_analyse_refuses_a_folder_that_is_not_a_study(tmp_path):
    proc = kdcal("analyse", "--study", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"kdcal: error: {tmp_path.resolve()} is not a study folder (it needs study.json and "
        "results.csv)"]


def test_a_run_says_first_what_it_can_decide_and_where_the_answer_is(tmp_path, monkeypatch):
    """`make study`'s first output line: what the quick profile can decide, and where the answer
    is (the notebooks are stubbed out: only the order of the lines is under test)."""
    from kdcal import pipeline

    monkeypatch.setattr(pipeline, "_execute", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "export_bundle", lambda cfg, root: root)
    monkeypatch.setattr(pipeline, "build_report", lambda root, nbs, title: root / "report.html")
    lines = []
    pipeline.run_study("quick", out=str(tmp_path / "q"), log=lines.append)
    assert lines[0].startswith("== Profile quick: ") and "cannot decide" in lines[0]
    assert "outputs/evidence-transfer/report.html" in lines[0]
