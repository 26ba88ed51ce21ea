"""The study's training log: per-epoch and per-run lines go to ``log.txt`` in the study folder.

Notebook pages (and the report built from them) then carry results, not logs; follow a long
run with ``tail -f <study folder>/log.txt``.
"""
from __future__ import annotations

import time
from pathlib import Path

from .tables import display_path

LOG_NAME = "log.txt"


class StudyLog:
    """A ``log`` callable for the study's functions: appends each message, time-stamped, to the file."""

    def __init__(self, study_dir, section: str | None = None):
        self.path = Path(study_dir) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lines = 0
        if section:
            self(f"== {section}")

    def __call__(self, message) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as f:
            for line in str(message).splitlines() or [""]:
                f.write(f"{stamp} {line}\n")
        self.lines += 1

    def __repr__(self) -> str:
        return f"{self.lines} log lines written to {display_path(self.path)}"
