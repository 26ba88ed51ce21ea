"""The study, stage by stage: the table of contents the notebooks import (``from kdcal import
study``). Each stage lives in its own module, in the order the notebooks run them:

- :mod:`kdcal.runs`: what a run is (a seed's split, the engine, recipes, run ids, finishing a model);
- :mod:`kdcal.teachers` (notebook 01): the teachers; :mod:`kdcal.teacher_variants`: teachers
  calibrated by training;
- :mod:`kdcal.teacher_calibration` (notebook 02): temperature scaling and the other calibrators,
  on validation only, and what they do on the students' images;
- :mod:`kdcal.students` (notebook 03): the students and the no-KD baseline;
- :mod:`kdcal.results` (notebook 04): ``results.csv``, one row per model.

Nothing is defined here; other kdcal modules import from the stage modules directly.
"""
# ruff: noqa: F401  (a table of contents: every name is imported to be re-exported)
from __future__ import annotations

from .runs import (TEACHER_SEED_OFFSET, amp_name, data_config, engine_for, finish_model, for_seed,
                   label_noise_seed, load_model, load_splits, recipe_config, relative_macs,
                   seed_all, student_data_config, student_recipe, teacher_data_config,
                   teacher_recipe, teacher_run_config, teacher_runs, teacher_seed,
                   train_checkpoint, training_cost)  # noqa: F401
from .teachers import (teacher_table, teacher_tasks, train_teacher_run, train_teachers,
                       training_curves)  # noqa: F401
from .teacher_variants import (train_teacher_variants, variant_recipe, variant_run_config,
                               variant_runs, variant_table)  # noqa: F401
from .teacher_calibration import (calibrate_run, calibrate_teachers, calibration_table,
                                  calibrator_panels, calibrator_table, compare_calibrators,
                                  distill_in_calibration, distill_logits, distill_path,
                                  reliability_panels, students_images)  # noqa: F401
from .students import (calibrated_targets, distill_students, student_plan, student_run_config,
                       student_table)  # noqa: F401
from .store import Study
from .results import (RESULT_COLUMNS, VOLATILE_COLUMNS, architecture_table, results_table,
                      save_table, write_results)  # noqa: F401
