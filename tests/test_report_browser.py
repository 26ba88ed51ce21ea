"""The report as a reader sees it: rendered by a real headless browser (Debian's chromium), offline."""
import html
import json
import re
import shutil
import subprocess

import pytest

from kdcal.report import build_report
from report_study import NOTEBOOKS, make_report_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# offline: no background traffic, and every host name resolves to nothing
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=800,1000"]
# Run in the page once it is laid out: every table's box and every formula, as the browser drew them.
LAYOUT_PROBE = """<script>
(() => {
  const width = document.documentElement.clientWidth, cut = [], wide = [];
  document.querySelectorAll("table").forEach((t, i) => {
    const box = t.closest(".kdcal-scroll");
    if (!box) { cut.push(`table ${i} is in no box`); return; }
    const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
    const right = box.getBoundingClientRect().right;
    if (right > width + 1) cut.push(`table ${i}: its box ends at ${right}px, the page at ${width}px`);
    for (let el = box.parentElement; el && el !== document.body; el = el.parentElement) {
      const edge = el.getBoundingClientRect().right;  // a box wider than what holds it is cut off
      if (right > edge + 1) {
        cut.push(`table ${i}: its box passes a <${el.tagName}> by ${right - edge}px`);
        break;
      }
    }
    if (t.getBoundingClientRect().width > box.clientWidth + 1) {
      wide.push(i);
      if (!scrolls) cut.push(`table ${i} is wider than its box, which does not scroll`);
    }
  });
  const formulas = [...document.querySelectorAll("math")].map(m => ({
    display: getComputedStyle(m).display, width: m.getBoundingClientRect().width}));
  const breaking = [...document.querySelectorAll("pre")].filter(
    p => getComputedStyle(p).wordBreak === "break-all"
         || getComputedStyle(p).overflowWrap !== "normal").length;
  const out = document.createElement("pre");
  out.id = "kdcal-layout";
  out.textContent = JSON.stringify({width, tables: document.querySelectorAll("table").length, cut, wide,
                                    formulas, breaking});
  document.body.appendChild(out);
})();
</script>"""


def render(html_path, tmp_path) -> str:
    """The DOM after chromium has loaded and laid out the page (scripts run, fonts ignored)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    profile = tmp_path / f"chromium-profile-{html_path.stem}"
    proc = subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           html_path.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<body" in proc.stdout, f"chromium rendered no page: {proc.stderr[-2000:]}"
    return proc.stdout


def layout(html_path, tmp_path) -> dict:
    """What chromium drew: tables cut at the page's edge, tables that scroll, how formulas display."""
    probed = tmp_path / f"probed-{html_path.name}"
    page = html_path.read_text()
    probed.write_text(page.replace("</body>", LAYOUT_PROBE + "</body>"))
    dom = render(probed, tmp_path)
    found = re.search(r'<pre id="kdcal-layout">(.*?)</pre>', dom, re.S)
    assert found, "the layout probe did not run"
    return json.loads(html.unescape(found.group(1)))


def assert_offline_and_nothing_cut(html_path, tmp_path) -> dict:
    """No raw TeX on the rendered page, every formula drawn as MathML, no table cut at the edge."""
    dom = render(html_path, tmp_path)
    text = html.unescape(re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", dom, flags=re.S))
    for tex in re.findall(r"\$[^$\n]*\$", text):
        assert not re.search(r"\\[a-zA-Z]+|[\^_]", tex), f"raw TeX on the page: {tex}"
    assert "\\tau" not in text and "\\frac" not in text
    drawn = layout(html_path, tmp_path)
    assert drawn["tables"] and drawn["cut"] == [], drawn["cut"]
    assert drawn["breaking"] == 0, "program output that wraps inside words and numbers"
    assert drawn["formulas"], "no formula on the page"
    for f in drawn["formulas"]:
        assert "math" in f["display"] and f["width"] > 0, f
    return drawn


def test_handmade_report_renders_offline_with_every_table_in_its_box(tmp_path):
    study = make_report_study(tmp_path / "study")
    report = build_report(study, NOTEBOOKS, "A handmade study")
    drawn = assert_offline_and_nothing_cut(report, tmp_path)
    assert drawn["wide"], "the 30-column table should be wider than the page and scroll in its box"
    dom = render(report, tmp_path)
    appendix = re.search(r'<details class="kdcal-appendix" id="Appendix">', dom)
    assert appendix and "APPENDIXMARKER" in dom[appendix.start():]


@pytest.mark.slow
def test_report_renders_with_title_answer_box_first_and_no_logs(smoke_study, tmp_path):
    dom = render(smoke_study / "report.html", tmp_path)
    text = re.sub(r"<[^>]+>", " ", dom)
    # title block: the paper, the answer box, the question, then the contents, then the notebooks
    assert "Rethinking the Knowledge Distillation From the Perspective of Model Calibration" in dom
    assert "arXiv:2111.01684" in dom and "The question." in text
    answer = dom.index('id="The-answer"')
    contents = dom.index('class="kdcal-contents"')
    first_notebook = dom.index('id="1.-Train-a-family-of-teachers"')
    assert answer < contents < first_notebook
    answer_box = dom[answer:contents]
    assert "larger teachers have higher ECE" in answer_box and "<th>answer</th>" in answer_box
    assert re.search(r"Built \d{4}-\d{2}-\d{2} from kdcal commit", dom[:answer])
    assert 'id="References"' in dom
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


@pytest.mark.slow
def test_smoke_report_renders_offline_with_nothing_cut(smoke_study, tmp_path):
    assert_offline_and_nothing_cut(smoke_study / "report.html", tmp_path)


@pytest.mark.slow
def test_training_log_is_in_the_study_folder(smoke_study):
    log = (smoke_study / "log.txt").read_text()
    assert "epoch 1/" in log and "== 01_train_teachers" in log
    html = (smoke_study / "report.html").read_text()
    assert "epoch 1/" not in html
