"""A confirmatory study's preregistration, as data: the fixed block of
``docs/preregistration-<profile>.md`` (profile, seeds, the analysis code's commit and its source
hash) and the checks a study folder must pass against it. The answer comes from exactly the
preregistered seeds, run by the preregistered code; anything else is exploratory.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pandas as pd

from .bundle import PACKAGE, PROVENANCE

PROJECT = PACKAGE.parent
BLOCK = re.compile(r"```json prereg\n(.*?)\n```", re.S)
KEYS = ("profile", "seeds", "analysis_commit", "source_hash")


class PreregError(ValueError):
    """A preregistration that cannot be read, or a study that departs from it; one line."""


def read_prereg(path) -> dict:
    """The fixed block (a ```json prereg fence) of a preregistration page."""
    path = Path(path)
    found = BLOCK.findall(path.read_text())
    if len(found) != 1:
        raise PreregError(f"{path}: needs exactly one ```json prereg block, found {len(found)}")
    try:
        block = json.loads(found[0])
    except json.JSONDecodeError as exc:
        raise PreregError(f"{path}: the prereg block is not JSON ({exc})") from None
    missing = [k for k in KEYS if k not in block]
    if missing:
        raise PreregError(f"{path}: the prereg block lacks {', '.join(missing)}")
    return block


def source_hash_at(commit: str, root: Path = PROJECT) -> str:
    """:func:`kdcal.bundle.code_fingerprint`'s source hash of the kdcal sources at ``commit``
    (read from git, not from the working tree)."""
    def git(*args) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60)
        if out.returncode:
            raise PreregError(f"git {' '.join(args[:2])} failed at {commit[:12]}: "
                              f"{out.stderr.decode().strip()[:200]}")
        return out.stdout.decode()

    names = sorted(n for n in git("ls-tree", "-r", "--name-only", commit, "kdcal").splitlines()
                   if n.endswith(".py"))
    digest = hashlib.sha256()
    for name in names:  # sorted by path relative to kdcal/, as code_fingerprint sorts them
        content = subprocess.run(["git", "-C", str(root), "show", f"{commit}:{name}"],
                                 capture_output=True, timeout=60, check=True).stdout
        digest.update(name[len("kdcal/"):].encode() + b"\0" + content)
    return digest.hexdigest()


def study_departures(prereg: dict, study_dir) -> list[str]:
    """What a study folder does that its preregistration did not fix: seeds run by other code
    (their provenance's source hash), seeds beyond the preregistered ones, preregistered seeds
    still missing. Empty when the study is the preregistered one."""
    study = Path(study_dir)
    rows = _provenance(study)
    if rows is None:
        return [f"{study}: no {PROVENANCE} (no seed has run)"]
    seeds = set(int(s) for s in rows["seed"])
    out = [f"seed {int(r.seed)} ran code {str(r.source_hash)[:12]}, not the preregistered "
           f"{prereg['source_hash'][:12]}" for r in rows.itertuples()
           if r.source_hash != prereg["source_hash"]]
    extra = sorted(seeds - set(prereg["seeds"]))
    if extra:
        out.append(f"seeds {extra} are beyond the preregistration: exploratory")
    missing = sorted(set(prereg["seeds"]) - seeds)
    if missing:
        out.append(f"preregistered seeds {missing} have not run yet")
    return out


def page_for(profile: str, root: Path = PROJECT) -> Path:
    """Where a profile's preregistration lives (it may not exist: most profiles have none)."""
    return root / "docs" / f"preregistration-{profile}.md"


def status_note(profile: str, study_dir, page=None) -> str:
    """One paragraph for a study's analysis: empty for a profile without a preregistration;
    else whether this folder is the confirmatory study (every preregistered seed, the
    preregistered code), an interim look at it (seeds still to run: no answer yet), or departs
    from it (named: exploratory)."""
    page = Path(page) if page is not None else page_for(profile)
    if not page.exists():
        return ""
    block = read_prereg(page)
    departures = study_departures(block, study_dir)
    seeds = block["seeds"]
    waiting = [d for d in departures if "not run yet" in d]
    other = [d for d in departures if "not run yet" not in d]
    head = (f"**Preregistered** ({page.name}: seeds {seeds[0]}-{seeds[-1]}, code "
            f"{block['analysis_commit'][:7]}).")
    if other:
        return f"{head} **This folder departs from it** (exploratory): " + "; ".join(other) + "."
    if waiting:
        rows = _provenance(study_dir)
        done = len(set(seeds) & set(int(s) for s in rows["seed"]))
        return (f"{head} **Interim: {done} of {len(seeds)} seeds have run**; the answer is read "
                "from all of them, so every verdict below is provisional.")
    return f"{head} Every preregistered seed ran the preregistered code: this is its answer."


def _provenance(study_dir) -> pd.DataFrame | None:
    """The study's provenance.csv (one row per seed), None when no seed has run."""
    provenance = Path(study_dir) / PROVENANCE
    return pd.read_csv(provenance, dtype={"source_hash": str}) if provenance.exists() else None
