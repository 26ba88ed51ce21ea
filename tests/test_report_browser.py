"""The report as a reader sees it: rendered by a real headless browser (Debian's chromium)."""
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def render(html_path, tmp_path) -> str:
    """The DOM after chromium has loaded and laid out the page (scripts run, fonts ignored)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           html_path.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<body" in proc.stdout, f"chromium rendered no page: {proc.stderr[-2000:]}"
    return proc.stdout


def test_report_renders_with_title_verdicts_first_and_no_logs(smoke_study, tmp_path):
    dom = render(smoke_study / "report.html", tmp_path)
    text = re.sub(r"<[^>]+>", " ", dom)
    # title block: the paper, the question, the verdicts table, then the contents, then the notebooks
    assert "Rethinking the Knowledge Distillation From the Perspective of Model Calibration" in dom
    assert "arXiv:2111.01684" in dom and "The question." in text
    verdicts = dom.index('id="Verdicts"')
    contents = dom.index('class="kdcal-contents"')
    first_notebook = dom.index('id="1.-Train-a-family-of-teachers"')
    assert verdicts < contents < first_notebook
    claims_table = dom[verdicts:contents]
    assert "larger teachers have higher ECE" in claims_table and "<th>verdict</th>" in claims_table
    for heading in ("1.-Train-a-family-of-teachers", "4.-What-do-the-data-say?"):
        assert f'href="#{heading}"' in dom[contents:first_notebook]
    # no logs, progress bars, raw Python values or machine paths on the page
    for bad in ("Traceback", "0%|", "done, skipped", "epoch 1/", "{'estimate'", "(nan, nan)",
                "np.float64", "import kdcal"):
        assert bad not in text, f"{bad!r} on the rendered page"
    assert not re.search(r"(?<![\w.])/(work|tmp|home|root)/", text), "an absolute path on the page"
    assert str(smoke_study) not in dom
    # tables: no index column, teachers by size (resnet8 before resnet14 everywhere)
    assert "<th></th>" not in dom
    for table in re.findall(r'<table class="dataframe kdcal-table">.*?</table>', dom, re.S):
        names = re.findall(r"<td>(resnet\d+)</td>", table)
        sizes = {"resnet8": 0, "resnet14": 1}
        order = [sizes[n] for n in names if n in sizes]
        first_seen = list(dict.fromkeys(order))
        assert first_seen == sorted(first_seen), f"teachers not by size in a table: {names}"


def test_training_log_is_in_the_study_folder(smoke_study):
    log = (smoke_study / "log.txt").read_text()
    assert "epoch 1/" in log and "== 01_train_teachers" in log
    html = (smoke_study / "report.html").read_text()
    assert "epoch 1/" not in html
