"""The notebooks as committed: no outputs in notebooks/, each in sync with its text pair, and each
numbered notebook's top cell (its measured time and what the reader should see)."""
import json
import re
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_holds_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_text_pair(path):
    jupytext = pytest.importorskip("jupytext")
    pair = path.with_suffix(".py")
    assert pair.exists(), f"{pair.name} missing: run `jupytext --sync notebooks/*.ipynb`"
    from_text = jupytext.read(pair)
    from_nb = nbformat.read(path, as_version=4)
    cells = lambda nb: [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", [])))
                        for c in nb.cells]
    assert cells(from_text) == cells(from_nb), f"{path.name} and {pair.name} differ: jupytext --sync"


# ---------------------------------------------------------------- the top of each numbered notebook
# Right after the title (which the report shows, so it names no profile's run) comes a notebook-only
# cell: the time the notebook took in the committed tutorial run, and that run's figure of what the
# reader should see. The time is papermill's `duration` in the executed notebook outputs/tutorial/
# <name>.ipynb: log.txt holds only when each notebook started (not 04's, which logs nothing) and
# timing.json only the whole run.
PROJECT = Path(__file__).resolve().parents[1]
TUTORIAL = PROJECT / "outputs" / "tutorial"
NUMBERED = sorted((PROJECT / "notebooks").glob("0*.ipynb"))
MEASURED = re.compile(r"Measured: (\d+) s on 2 CPU cores for the tutorial profile \((\d{4}-\d\d-\d\d)\)")
FIGURE = re.compile(r"!\[[^\]]+\]\((\.\./outputs/tutorial/figures/[\w-]+\.png)\)")
SHOWN = {"01_train_teachers": "teacher_training_curves", "02_calibrate_teachers": "teacher_temperature_vs_size",
         "03_distill_students": "student_accuracy_vs_teacher_size", "04_analyze": "paired_mode_differences",
         "05_regimes": "regimes"}


def _top_cell(path):
    """The cell after the title: markdown, notebook-only (so the report leaves it out)."""
    from kdcal.report import SKIPPED_TAGS

    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), path.name
    top = cells[1]
    assert top.cell_type == "markdown" and "notebook-only" in top.metadata.get("tags", []), path.name
    assert "notebook-only" in SKIPPED_TAGS
    return top


def _papermill(name: str) -> dict:
    return nbformat.read(TUTORIAL / name, as_version=4).metadata["papermill"]


def test_every_numbered_notebook_has_a_top_cell():
    assert [p.stem for p in NUMBERED] == list(SHOWN)


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_notebook_states_the_time_it_took_in_the_committed_tutorial_run(path):
    found = MEASURED.findall(_top_cell(path).source)
    assert len(found) == 1, f"{path.name}: no 'Measured: N s on 2 CPU cores for the tutorial profile (date)'"
    seconds, date = int(found[0][0]), found[0][1]
    run = _papermill(path.name)
    assert run["parameters"]["profile"] == "tutorial" and not run["parameters"].get("overrides")
    assert abs(seconds - run["duration"]) <= 0.5, (path.name, seconds, run["duration"])  # rounded
    assert date == run["start_time"][:10]


def test_the_stated_times_agree_with_log_txt_and_timing_json():
    """Where log.txt brackets a notebook (its start and the next notebook's, to the second: 01 and
    02), papermill's duration agrees within 2 s; all five fit in timing.json's whole run."""
    starts = {}
    for line in (TUTORIAL / "log.txt").read_text().splitlines():
        banner = re.fullmatch(r"(\S+ \S+) == (0\d_\w+)", line)  # "2026-12-07 08:45:49 == 01_train_teachers"
        if banner:
            starts.setdefault(banner[2], datetime.fromisoformat(banner[1]))
    order = ["01_train_teachers", "02_calibrate_teachers", "03_distill_students"]
    assert set(order) <= set(starts)
    for name, after in zip(order, order[1:]):
        logged = (starts[after] - starts[name]).total_seconds()
        assert abs(logged - _papermill(f"{name}.ipynb")["duration"]) <= 2, name
    total = json.loads((TUTORIAL / "timing.json").read_text())["seconds"]
    assert sum(_papermill(f"{name}.ipynb")["duration"] for name in SHOWN) <= total


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_notebook_shows_what_you_should_see_from_the_committed_tutorial_run(path):
    source = _top_cell(path).source
    assert "**What you should see**" in source, path.name
    links = FIGURE.findall(source)
    assert links == [f"../outputs/tutorial/figures/{SHOWN[path.stem]}.png"], (path.name, links)
    assert (path.parent / links[0]).resolve().is_file(), links[0]
