"""Training budgets in optimizer steps, known from the config before any data is loaded.

A fair comparison gives the no-KD baseline and every student of a run the same number of steps,
and at least as many as the teacher of the student's own architecture had (issue 22: a baseline
trained for a quarter of the resnet8 teacher's steps made "distillation helps" mostly a budget
effect). ``student_steps`` sets that budget; 0 keeps ``student_epochs`` as it always was.
"""
from __future__ import annotations

import math

from .data import TRAIN_POOL, batches_per_epoch


def teacher_images(cfg) -> int:
    """The teachers' training images: ``train_size``, or every image left after validation."""
    pool = cfg.synthetic_train if cfg.dataset == "synthetic" else TRAIN_POOL[cfg.dataset]
    return cfg.train_size or pool - cfg.val_size


def student_images(cfg) -> int:
    """The images the students and the no-KD baseline learn on: the transfer split when there
    is one (images the teachers never saw), else the teachers' own training images."""
    return cfg.transfer_size or teacher_images(cfg)


def teacher_steps(cfg) -> int:
    """Optimizer steps of a (standard) teacher: every teacher of a config trains this long."""
    return cfg.teacher_epochs * batches_per_epoch(teacher_images(cfg), cfg.batch_size)


def student_batches_per_epoch(cfg) -> int:
    return batches_per_epoch(student_images(cfg), cfg.student_batch_size or cfg.batch_size)


def student_epochs(cfg) -> int:
    """The epochs of every student and of the no-KD baseline: ``student_epochs``, or with
    ``student_steps`` > 0 the fewest whole epochs that reach that many steps (whole epochs: every
    image is seen equally often, and the cosine schedule ends where it always does)."""
    if not cfg.student_steps:
        return cfg.student_epochs
    return math.ceil(cfg.student_steps / student_batches_per_epoch(cfg))


def student_steps(cfg) -> int:
    """Optimizer steps of every student and of the no-KD baseline of a config."""
    return student_epochs(cfg) * student_batches_per_epoch(cfg)
