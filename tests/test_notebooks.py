"""The notebooks as committed: no outputs in notebooks/, and each in sync with its text pair."""
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
