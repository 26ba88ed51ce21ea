"""Figures of the study: one colour per mode everywhere; every seed drawn as a dot.

Colours: :data:`MODE_PALETTE` is the one map from a mode (or a calibrator, drawn in its
``cal-<method>`` colour) to its colour; no figure uses a mode colour for anything else. Greys
(:data:`REFERENCE`, :data:`BAND`) are for references only: zero lines, the diagonal, margin bands.
Lines over teacher size join teachers of one family only (``depth`` solid, ``width`` dashed).
Error bars are 95% t-intervals over seeds, drawn only from 3 seeds on (with 2, a t-interval is
wider than the data and says little; the dots say more). Intervals of non-negative metrics (ECE,
NLL) are clipped at 0. Titles say what the markers are, over how many seeds and teachers;
legends sit outside the data.

This module is the table of contents; ``from kdcal import plots; plots.X(...)`` reaches every
figure. The figures live by topic:

- :mod:`kdcal.plot_style`: colours, constants, ``style``/``save`` and the helpers all figures share
- :mod:`kdcal.plots_teachers`: teachers against size, training curves, calibrators, variants, images
- :mod:`kdcal.plots_reliability`: reliability diagrams before and after calibration
- :mod:`kdcal.plots_students`: students against teacher size (and what size brings), paired mode
  differences
- :mod:`kdcal.plots_regimes`: the regime map and the temperature sweep
"""
from __future__ import annotations

from .plot_style import (BAND, CLOSE_TICKS, FAMILY_NAMES, FAMILY_STYLE, INTERVAL, INTERVAL_GID,
                         MIN_SEEDS_FOR_INTERVAL, MODE_ORDER, MODE_PALETTE, NEUTRAL_COLORS,
                         REFERENCE, SAVE_DPI, mode_color, save, significant, size_tick_labels,
                         style, teacher_families)
from .plots_regimes import regime_map, temperature_sweep
from .plots_reliability import (reliability_bins, reliability_compare, reliability_grid,
                                reliability_teachers)
from .plots_students import (paired_mode_differences, student_accuracy_size_or_accuracy,
                             student_accuracy_vs_teacher_size)
from .plots_teachers import (calibrator_comparison, distill_calibration_vs_size, image_grid,
                             teacher_calibration_vs_size, teacher_variants, temperature_vs_size,
                             training_curves)

__all__ = [
    # style: colours, constants, shared rules
    "BAND", "CLOSE_TICKS", "FAMILY_NAMES", "FAMILY_STYLE", "INTERVAL", "INTERVAL_GID",
    "MIN_SEEDS_FOR_INTERVAL", "MODE_ORDER", "MODE_PALETTE", "NEUTRAL_COLORS", "REFERENCE",
    "SAVE_DPI", "mode_color", "save", "significant", "size_tick_labels", "style",
    "teacher_families",
    # teachers
    "calibrator_comparison", "distill_calibration_vs_size", "image_grid",
    "teacher_calibration_vs_size", "teacher_variants", "temperature_vs_size", "training_curves",
    # reliability
    "reliability_bins", "reliability_compare", "reliability_grid", "reliability_teachers",
    # students
    "paired_mode_differences", "student_accuracy_size_or_accuracy",
    "student_accuracy_vs_teacher_size",
    # regimes
    "regime_map", "temperature_sweep",
]
