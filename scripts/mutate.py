"""`make mutate`: mutation testing (mutmut 3) of the study's core against its fast tests.

mutmut's own settings (files, tests, timeouts) live in pyproject's ``[tool.mutmut]``. What
mutmut cannot say, which functions of a file are in scope, is ``SCOPE`` below: the run happens
in a scratch copy (``.mutmut/``) where every other function gets ``# pragma: no mutate block``,
so the sources themselves carry no pragmas. Prints the score and every surviving mutant's diff.

    python scripts/mutate.py [--jobs N] [--keep] [--only kdcal.distill ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import libcst as cst

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutmut"
# file -> its functions in scope (None: all of them), each with None (the whole function) or
# the statements mutated in it (those whose source contains one of the strings). The study's
# core only: the data splits, not the dataset loaders; the student-group pairing (one seed, one
# init, one loop), not the pipeline around it.
SCOPE: dict[str, dict[str, list[str] | None] | None] = {
    "kdcal/distill.py": None,
    "kdcal/calibration.py": None,
    "kdcal/metrics.py": None,
    "kdcal/analysis.py": None,
    "kdcal/inference.py": None,
    "kdcal/multiplicity.py": None,
    "kdcal/store.py": None,
    "kdcal/data.py": dict.fromkeys(["split_indices", "_permutation", "transfer_indices",
                                    "noisy_labels", "make_splits", "with_label_noise",
                                    "as_transfer", "epoch_batches", "normalize"]),
    "kdcal/runs.py": {"seed_all": None},
    "kdcal/students.py": {"_member_name": None,
                          "_student_group_task": ["group, seed = ", "members, names = ",
                                                  "seed_all(seed)", "out = train_group("]},
}
COPIED = ["kdcal", "tests", "pyproject.toml", "scripts/mutate_order.py"]
KILLED = {"killed", "timeout", "caught by type check"}


class _OutOfScope(cst.CSTTransformer):
    """Puts ``# pragma: no mutate block`` on the header of every function not in ``keep``."""

    def __init__(self, keep: set[str]):
        self.keep = keep

    def leave_FunctionDef(self, original, updated):
        if updated.name.value in self.keep or not isinstance(updated.body, cst.IndentedBlock):
            return updated
        header = updated.body.header.with_changes(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment("# pragma: no mutate block"))
        return updated.with_changes(body=updated.body.with_changes(header=header))


def prepare(keep_results: bool) -> None:
    """A scratch copy of the sources and tests, functions out of scope marked."""
    if WORK.exists() and not keep_results:
        shutil.rmtree(WORK)
    WORK.mkdir(exist_ok=True)
    for name in COPIED:
        src, dst = ROOT / name, WORK / name
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (WORK / "mutants" / "scripts").mkdir(parents=True, exist_ok=True)  # mutmut copies into it
    try:
        import tomllib  # Python 3.11+; older ones skip this consistency check
    except ModuleNotFoundError:
        tomllib = None
    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"] \
        if tomllib else {"only_mutate": list(SCOPE)}
    missing = set(SCOPE) ^ set(configured["only_mutate"])
    if missing:
        sys.exit(f"scripts/mutate.py SCOPE and pyproject's only_mutate differ on {sorted(missing)}")
    for path, keep in SCOPE.items():
        if keep is not None:
            (WORK / path).write_text(_mark_out_of_scope((WORK / path).read_text(), keep, path))


def _mark_out_of_scope(text: str, keep: dict[str, list[str] | None], path: str) -> str:
    """The module with pragmas: whole functions out of scope get ``no mutate block`` on their
    header; the statements out of scope in a partly kept function, ``no mutate start/end``."""
    import ast

    tree = ast.parse(text)
    defs = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    unknown = set(keep) - set(defs)
    if unknown:
        sys.exit(f"scripts/mutate.py: no function {sorted(unknown)} in {path}")
    lines = text.splitlines(keepends=True)
    ranges = []  # (first line, last line, indent) of statements out of scope, 1-based
    for name, markers in keep.items():
        if markers is None:
            continue
        body = defs[name].body
        kept = [s for s in body if any(m in ast.get_source_segment(text, s) for m in markers)]
        if len(kept) < len(markers):
            sys.exit(f"scripts/mutate.py: {path}:{name} lacks a statement with one of {markers}")
        for stmt in body:
            if stmt not in kept:
                ranges.append((stmt.lineno, stmt.end_lineno, " " * stmt.col_offset))
    for first, last, indent in sorted(ranges, reverse=True):
        lines.insert(last, f"{indent}# pragma: no mutate end\n")
        lines.insert(first - 1, f"{indent}# pragma: no mutate start\n")
    module = cst.parse_module("".join(lines))
    return module.visit(_OutOfScope(set(keep))).code


def results() -> dict[str, str]:
    """Every mutant's status, from mutmut's per-file records."""
    from mutmut.stats import status_by_exit_code

    status = {}
    for meta in sorted((WORK / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status[name] = status_by_exit_code[code]
    return status


def print_diffs(names: list[str], status: dict[str, str]) -> None:
    """Each mutant's diff, every mutated module parsed once (``mutmut show`` parses the whole
    module per mutant: minutes for a few hundred survivors)."""
    from difflib import unified_diff

    from mutmut.mutation.diff_apply import read_mutant_function, read_original_function

    modules: dict[str, cst.Module] = {}
    for name in names:
        path = Path("mutants", *name.split("__mutmut_")[0].split(".")[:-1]).with_suffix(".py")
        if path not in modules:
            modules[path] = cst.parse_module((WORK / path).read_text())
        before, after = (cst.Module([f]).code.strip().split("\n") for f in
                         (read_original_function(modules[path], name),
                          read_mutant_function(modules[path], name)))
        print(f"# {name}: {status[name]}")
        print("\n".join(unified_diff(before, after, str(path), str(path), lineterm="", n=1)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel mutants")
    ap.add_argument("--keep", action="store_true", help="reuse earlier results in .mutmut/")
    ap.add_argument("--report", action="store_true",
                    help="print the last run's survivors and score without running mutmut")
    ap.add_argument("--only", nargs="*", default=[],
                    help="mutant name globs, e.g. 'kdcal.distill*' (default: every mutant)")
    args = ap.parse_args(argv)
    if args.report:
        return report(results(), minutes=None, jobs=None)
    prepare(args.keep)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutants, not ./kdcal
    env["PYTHONWARNINGS"] = "ignore"
    # one thread per mutant: torch's thread pools spin-wait, and on a busy machine two threads
    # per process are ten times slower than one
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.time()
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs), *args.only]
    proc = subprocess.run(cmd, cwd=WORK, env=env)
    minutes = (time.time() - t0) / 60
    status = results()
    if proc.returncode != 0 or not status:
        print(f"mutmut failed (exit {proc.returncode}); see the output above", file=sys.stderr)
        return proc.returncode or 1
    return report(status, minutes, args.jobs)


def report(status: dict[str, str], minutes: float | None, jobs: int | None) -> int:
    """The survivors' diffs, then their names, the per-module counts and the score, last."""
    if not status:
        print("no mutmut results in .mutmut/ (run make mutate first)", file=sys.stderr)
        return 1
    survivors = sorted(n for n, s in status.items() if s not in KILLED)
    print_diffs(survivors, status)
    print("\nsurviving mutants:")
    for name in survivors:
        print(f"  {name}: {status[name]}")
    by_file: dict[str, list[int]] = {}
    for name, s in status.items():
        module = name.split("__mutmut_")[0].rsplit(".", 1)[0]  # kdcal.x.x_fn / kdcal.x.xǁCǁfn
        counts = by_file.setdefault(module, [0, 0])
        counts[0] += s in KILLED
        counts[1] += 1
    print("\nper module (killed / total):")
    for module, (k, n) in sorted(by_file.items()):
        print(f"  {module}: {k} / {n}")
    killed = sum(s in KILLED for s in status.values())
    took = f" in {minutes:.1f} min with {jobs} jobs" if minutes is not None else ""
    print(f"\nmutation score: {killed} / {len(status)} killed ({100 * killed / len(status):.1f}%)"
          f"{took}; 'no tests' and 'suspicious' count as survivors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
