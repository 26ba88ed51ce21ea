"""TeX in Markdown rendered at build time as MathML, so that a page shows its formulas offline.

Browsers draw MathML themselves (Chromium since 109, Firefox, Safari): no MathJax, no network.
:func:`protect` swaps each ``$...$`` / ``$$...$$`` of a Markdown text for a placeholder word that
no Markdown renderer touches (code spans, fenced code and ``\\$`` are left alone); once the page
is rendered, :func:`restore` puts the MathML in its place (and plain text inside attributes such
as a heading's id).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.M | re.S)
INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+).+?(?P=ticks))"           # a code span: left as it is
    r"|(?P<escaped>\\\$)"                            # \$: a dollar sign
    r"|\$\$(?P<display>.+?)\$\$"                     # $$ display $$ (may span lines)
    r"|\$(?P<inline>(?=\S)[^$\n]*?\S)\$(?!\d)",      # $inline$: no space inside the dollars
    re.S)
PLACEHOLDER = re.compile(r"kdcalmath(\d+)x")
ATTRIBUTE = re.compile(r'(\b(?:id|href|title|alt)=")([^"]*)(")')


@dataclass
class Formulas:
    """The formulas taken out of one or more Markdown texts, in order, as MathML."""

    mathml: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # plain text of each, for attributes
    failed: list[str] = field(default_factory=list)  # TeX that latex2mathml could not read

    def add(self, tex: str, display: bool) -> str:
        from latex2mathml.converter import convert

        try:
            markup = convert(tex.strip(), display="block" if display else "inline")
        except Exception:  # noqa: BLE001 - any TeX the converter cannot read is shown as code
            self.failed.append(tex)
            markup = f'<code class="kdcal-tex">{html.escape(tex)}</code>'
        self.mathml.append(markup)
        self.text.append(html.unescape(re.sub(r"<[^>]+>", "", markup)).strip())
        return f"kdcalmath{len(self.mathml) - 1}x"


def protect(markdown: str, formulas: Formulas) -> str:
    """``markdown`` with every formula replaced by a placeholder word kept in ``formulas``."""
    def inline(m: re.Match) -> str:
        if m.group("code") or m.group("escaped"):
            return m.group(0)
        if m.group("display") is not None:
            return formulas.add(m.group("display"), display=True)
        return formulas.add(m.group("inline"), display=False)

    out, last = [], 0
    for fence in FENCE.finditer(markdown):
        out += [INLINE.sub(inline, markdown[last:fence.start()]), fence.group(0)]
        last = fence.end()
    out.append(INLINE.sub(inline, markdown[last:]))
    return "".join(out)


def restore(page: str, formulas: Formulas) -> str:
    """``page`` (HTML) with each placeholder replaced: MathML in text, plain text in attributes."""
    def plain(m: re.Match) -> str:
        return html.escape(formulas.text[int(m.group(1))], quote=True)

    page = ATTRIBUTE.sub(lambda m: m.group(1) + PLACEHOLDER.sub(plain, m.group(2)) + m.group(3), page)
    return PLACEHOLDER.sub(lambda m: formulas.mathml[int(m.group(1))], page)
