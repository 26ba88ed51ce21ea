"""The package's layout as a contract: imports between kdcal modules run one way, at the top of
each module, never reaching for another module's private names; no module grows past about 500
lines; docs/engineering.md's module map lists exactly the modules there are.

The import graph is read from the source (``ast``), imports written inside functions included:
an import inside a function that dodges a circle hides the circle, it does not remove it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdcal"
MAX_LINES = 500


def modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}


def kdcal_imports(path: Path, known: set[str]) -> list[tuple[str, list[str], bool, int]]:
    """(imported module, names, at module top, line) for every import of a kdcal module."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level == 1 and node.module:
                target = node.module.split(".")[0]
            elif node.level == 1:  # from . import a, b
                for name in names:
                    if name in known:
                        found.append((name, [], id(node) in top, node.lineno))
                continue
            elif node.module and node.module.split(".")[0] == "kdcal":
                parts = node.module.split(".")
                if len(parts) == 1:
                    for name in names:
                        if name in known:
                            found.append((name, [], id(node) in top, node.lineno))
                    continue
                target = parts[1]
            else:
                continue
            if target in known:
                found.append((target, names, id(node) in top, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "kdcal" and len(parts) > 1 and parts[1] in known:
                    found.append((parts[1], [], id(node) in top, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {t for t, *_ in kdcal_imports(p, set(mods)) if t != m} for m, p in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles_and_passes_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_reader_sees_imports_inside_functions(tmp_path):
    (tmp_path / "one.py").write_text("from .two import x\n\n\ndef f():\n    from .three import _y\n"
                                     "    import kdcal.two\n    from kdcal import three\n")
    got = kdcal_imports(tmp_path / "one.py", {"two", "three"})
    assert [(t, top) for t, _, top, _ in got] == [("two", True), ("three", False), ("two", False),
                                                  ("three", False)]
    assert got[1][1] == ["_y"]


def test_no_import_cycle_between_kdcal_modules():
    cycle = find_cycle(graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_every_import_of_a_kdcal_module_sits_at_the_top():
    mods = modules()
    inside = [f"{m}.py:{line} imports {t} inside a function"
              for m, p in mods.items() for t, _, top, line in kdcal_imports(p, set(mods))
              if not top]
    assert not inside, "; ".join(inside)


def test_no_private_name_is_imported_from_another_module():
    mods = modules()
    private = [f"{m}.py:{line} imports {t}.{name}"
               for m, p in mods.items() for t, names, _, line in kdcal_imports(p, set(mods))
               for name in names if name.startswith("_") and name != "__version__"]
    assert not private, "; ".join(private)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_about_500_lines(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"kdcal/{name}.py has {lines} lines (at most {MAX_LINES}): split it"


def module_map() -> list[str]:
    """The modules docs/engineering.md's module map lists, in its order."""
    text = (ROOT / "docs" / "engineering.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `kdcal/(\w+)\.py` \|", section, flags=re.M)


def test_the_module_map_lists_every_module_once_and_nothing_else():
    listed = module_map()
    assert len(listed) == len(set(listed)), "a module is listed twice in the module map"
    assert set(listed) == set(modules()), (
        f"missing from the map: {sorted(set(modules()) - set(listed))}; "
        f"listed but absent: {sorted(set(listed) - set(modules()))}")


def test_the_module_map_runs_in_the_order_data_flows():
    """Each module's kdcal imports are listed above it: the map reads top to bottom as the
    imports run (a module never depends on one listed below it)."""
    order = {m: i for i, m in enumerate(module_map())}
    upward = [f"{m} imports {t}" for m, targets in graph().items() for t in targets
              if order[t] > order[m]]
    assert not upward, "the module map lists these imports' targets below their importer: " + \
        "; ".join(sorted(upward))
