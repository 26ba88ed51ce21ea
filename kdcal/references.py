"""The works this study cites, written once: the report's references section and the README use these.

Each entry was checked against the paper's own title page or its arXiv record (authors, title, year,
venue, identifier); add a work here before citing it anywhere, never a citation typed by hand.
"""
from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One cited work; ``short`` is how the text cites it ("Guo et al. 2017")."""

    short: str
    authors: str
    year: int
    title: str
    venue: str
    url: str

    def text(self) -> str:
        """The full citation as plain text (README, notebooks)."""
        return f"{self.authors} ({self.year}). {self.title}. {self.venue}. {self.url}"

    def markdown(self) -> str:
        """The full citation as Markdown, the title in italics and the link written out."""
        return f"{self.authors} ({self.year}). *{self.title}*. {self.venue}. <{self.url}>"

    def html(self) -> str:
        """The full citation as HTML; the address is shown as text, a link a reader may follow."""
        url = html.escape(self.url)
        return (f"{html.escape(self.authors)} ({self.year}). <em>{html.escape(self.title)}</em>. "
                f"{html.escape(self.venue)}. <a href=\"{url}\">{url}</a>")


PAPER = "yang2021"  # the paper this study re-runs

REFERENCES: dict[str, Reference] = {
    "yang2021": Reference(
        "Yang & Song 2021", "Lehan Yang and Jincen Song", 2021,
        "Rethinking the Knowledge Distillation From the Perspective of Model Calibration",
        "arXiv:2111.01684", "https://arxiv.org/abs/2111.01684"),
    "hinton2015": Reference(
        "Hinton et al. 2015", "Geoffrey Hinton, Oriol Vinyals and Jeff Dean", 2015,
        "Distilling the Knowledge in a Neural Network",
        "NIPS 2014 Deep Learning Workshop; arXiv:1503.02531", "https://arxiv.org/abs/1503.02531"),
    "guo2017": Reference(
        "Guo et al. 2017", "Chuan Guo, Geoff Pleiss, Yu Sun and Kilian Q. Weinberger", 2017,
        "On Calibration of Modern Neural Networks",
        "International Conference on Machine Learning (ICML); arXiv:1706.04599",
        "https://arxiv.org/abs/1706.04599"),
    "cho2019": Reference(
        "Cho & Hariharan 2019", "Jang Hyun Cho and Bharath Hariharan", 2019,
        "On the Efficacy of Knowledge Distillation",
        "IEEE/CVF International Conference on Computer Vision (ICCV); arXiv:1910.01348",
        "https://arxiv.org/abs/1910.01348"),
    "kim2025": Reference(
        "Kim et al. 2025", "Suyoung Kim, Seonguk Park, Junhoo Lee and Nojun Kwak", 2025,
        "The Role of Teacher Calibration in Knowledge Distillation",
        "IEEE Access, doi:10.1109/ACCESS.2025.3585106; arXiv:2508.20224",
        "https://arxiv.org/abs/2508.20224"),
}

# What the paper's abstract says, word for word: the only text of the paper this study has.
PAPER_ABSTRACT = (
    "Recent years have witnessed dramatically improvements in the knowledge distillation, which can "
    "generate a compact student model for better efficiency while retaining the model effectiveness "
    "of the teacher model. Previous studies find that: more accurate teachers do not necessary make "
    "for better teachers due to the mismatch of abilities. In this paper, we aim to analysis the "
    "phenomenon from the perspective of model calibration. We found that the larger teacher model "
    "may be too over-confident, thus the student model cannot effectively imitate. While, after the "
    "simple model calibration of the teacher model, the size of the teacher model has a positive "
    "correlation with the performance of the student model.")


def cite(key: str) -> Reference:
    """The reference ``key``; an unknown key is a one-line error naming the known ones."""
    try:
        return REFERENCES[key]
    except KeyError:
        raise KeyError(f"no reference {key!r}; known: {', '.join(REFERENCES)}") from None


def _ordered() -> list[str]:
    """The paper first, then the others by year."""
    return [PAPER] + sorted((k for k in REFERENCES if k != PAPER), key=lambda k: REFERENCES[k].year)


def references_html() -> str:
    """Every reference as an HTML list (the report's references section)."""
    items = "".join(f'<li id="ref-{k}">{REFERENCES[k].html()}</li>' for k in _ordered())
    return f'<ol class="kdcal-references">{items}</ol>'


def references_markdown() -> str:
    """Every reference as a Markdown list (the README's references: paste the output)."""
    return "\n".join(f"{i}. {REFERENCES[k].markdown()}" for i, k in enumerate(_ordered(), 1))
