"""One readable page from the executed notebooks: narrative, tables and figures, code hidden."""
from __future__ import annotations

from pathlib import Path

from .store import atomic_write_bytes


def build_report(study_dir, notebooks: list[str], title: str = "kdcal study report") -> Path:
    """Concatenate the executed notebooks and render them with nbconvert, inputs left out."""
    import nbformat
    from nbconvert import HTMLExporter

    study_dir = Path(study_dir)
    merged = None
    for name in notebooks:
        nb = nbformat.read(study_dir / name, as_version=4)
        cells = [c for c in nb.cells
                 if not {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
        for c in cells:  # stderr (progress bars, warnings) is noise on a report
            if c.cell_type == "code":
                c.outputs = [o for o in c.get("outputs", []) if o.get("name") != "stderr"]
        if merged is None:
            merged = nb
            merged.cells = cells
        else:
            merged.cells.extend(cells)
    merged.metadata["title"] = title
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(merged)
    out = study_dir / "report.html"
    atomic_write_bytes(body.encode(), out)
    return out
