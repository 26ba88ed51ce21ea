"""Notebooks 02, 04 and 05 opened alone on a fresh clone: they read the committed reference runs,
train nothing and change no committed file (scripts/check_interactive.py, phase "alone")."""
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_notebooks_run_alone_on_a_fresh_clone_without_touching_committed_files(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "outputs/tutorial/bundle/bundle.json"], cwd=PROJECT,
                             capture_output=True, text=True).stdout.strip()
    if not tracked:
        pytest.skip("outputs/tutorial/bundle is not committed yet: regenerate outputs/tutorial "
                    "(kdcal run --profile tutorial) so that it exports it")
    proc = subprocess.run([sys.executable, str(PROJECT / "scripts" / "check_interactive.py"),
                           "--phases", "alone", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "clean" in proc.stdout
