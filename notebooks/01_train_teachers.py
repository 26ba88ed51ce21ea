# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Train a family of teachers
#
# **Knowledge distillation** (KD, Hinton et al. 2015) trains a small *student* network to imitate the
# output distribution of a larger *teacher*, not only the one-hot labels. The teacher's probabilities
# carry "dark knowledge": which wrong classes look similar to the right one.
#
# Yang and Song (2021) say in the abstract of "Rethinking the Knowledge Distillation From the Perspective of
# Model Calibration" (arXiv:2111.01684) that "the larger teacher model may be too over-confident, thus the
# student model cannot effectively imitate", and that "after the simple model calibration of the teacher
# model, the size of the teacher model has a positive correlation with the performance of the student
# model". **Over-confident** means that a model's probabilities are sharper than its accuracy justifies.
# The abstract is all of the paper this study has: it names no data set, no calibrator and no way of
# distilling from a calibrated teacher. Fashion-MNIST, the ResNet ladders, temperature scaling fitted on a
# validation split, and the distillation modes of notebook 3 are this study's reading of it.

# %% [markdown] tags=["notebook-only"]
# Measured: 70 s on 2 CPU cores for the tutorial profile (2026-12-07), the time papermill recorded for this
# notebook in the committed run `outputs/tutorial` (`kdcal plan --profile <name>` estimates other profiles).
#
# **What you should see** (that run's figure, drawn near the end of this notebook): both teachers' training
# accuracy passes 99% by epoch 15 of 20 and their training loss ends below 0.05: they fit their 1,000
# training images, the condition for the over-confidence that notebook 2 measures.
#
# ![Training loss and accuracy per epoch of the tutorial run's two teachers](../outputs/tutorial/figures/teacher_training_curves.png)

# %% [markdown] tags=["appendix"]
# This study re-runs the experiment in four notebooks:
#
# 1. **this notebook**: train teachers of growing size, several seeds each;
# 2. measure and calibrate them;
# 3. distill one student architecture from every teacher, uncalibrated and calibrated, plus a no-KD baseline;
# 4. analyse with confidence intervals and rank correlations.
#
# The notebooks share nothing but the *study folder*: every trained model is a run in `runs/` whose id
# is a hash of its full configuration, so re-running skips what is done and resumes what was cut off.

# %% [markdown] tags=["notebook-only"]
# **Learning goals.** After this notebook you can (1) say why calibration is fitted on a validation split and
# never on test; (2) read a ResNet ladder's parameter counts; (3) find a run's training log (`log.txt` in the
# study folder) and explain why re-running skips finished runs (run ids hash the full configuration).

# %% tags=["parameters"]
# Parameters (papermill injects values below this cell; literals only)
profile = "tutorial"   # tutorial (minutes, the default) | smoke | quick | paper-fmnist | paper-cifar10 | paper-cifar100
overrides = {}         # e.g. {"device": "cuda", "seeds": [0, 1, 2]}
study_dir = "../outputs/scratch"  # a scratch folder (gitignored): never the committed outputs/
executor = "local"     # local | ray: where the trainings run (README: On a cluster)
workers = None         # local worker processes side by side; None = the profile's (quick: 2)

# %% tags=["appendix"]
import kdcal
from kdcal import config, study, plots, analysis, tables, logfile, report

cfg = config.resolve(profile, {**overrides, "executor": executor,
                               **({"workers": workers} if workers is not None else {})})
figures = study.Study(study_dir).figures
plots.style()
log = logfile.StudyLog(study_dir, "01_train_teachers")  # per-epoch lines go to log.txt, not the page
print(f"profile {profile!r} -> study folder {tables.display_path(study_dir)}")
print(f"dataset {cfg.dataset}, teachers {cfg.teachers}, student {cfg.student}, seeds {cfg.seeds}")
print(f"teacher recipe: {cfg.teacher_epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr} ({cfg.schedule}), "
      f"weight decay {cfg.weight_decay}, augmentation {cfg.augment}")

# %% [markdown] tags=["appendix"]
# ## The data and its three splits
#
# The training set is split, with a fixed seed, into a **training** part (teachers and students learn from
# it) and a **validation** part that is never trained on: it is where calibration is fitted. The **test** set
# is only used to report numbers. Fitting the temperature on test data would make every calibrated
# number optimistic.

# %% tags=["appendix"]
splits = study.load_splits(cfg)
print(f"train {len(splits.train_y)}, validation {len(splits.val_y)}, test {len(splits.test_y)} images "
      f"of {splits.in_channels}x{splits.image_size}x{splits.image_size}, {splits.num_classes} classes")
plots.image_grid(splits.train_x[:16], [splits.classes[int(i)] for i in splits.train_y[:16]]);

# %% [markdown] tags=["appendix"]
# ## The teacher ladder
#
# CIFAR-style ResNets (He et al. 2016): three stages of residual blocks with 16, 32 and 64 channels.
# Depth `6n+2` sets the size; the `xK` variants multiply every width by K. Parameter counts below are for
# this dataset's input channels and classes.

# %% tags=["appendix"]
ladder = study.architecture_table(cfg, splits)
tables.show(ladder)

# %% [markdown] tags=["appendix"]
# ## Training
#
# Every teacher is trained with SGD and cross-entropy. Data live in memory as `uint8` tensors on the
# training device and batches are cut from them directly; a progress bar shows each model, and one line
# per epoch is printed for logs. When a teacher is done, its checkpoint, its logits on the training,
# validation and test images, and its test metrics are written to its run folder.

# %% tags=["appendix"]
teachers = study.train_teachers(cfg, study_dir, log=log)
report.notebook_note(repr(log))  # "N log lines written to ...": for the notebook's reader, not the report

# %% tags=["appendix"]
tables.show(teachers, columns=["arch", "seed", "params", "acc", "ece", "nll", "val_acc", "train_seconds"])

# %% [markdown] tags=["appendix"]
# ## Did the teachers fit their training data?
#
# Over-confidence grows when a network drives its training loss to zero: the curves show training loss
# and accuracy per epoch, one panel per teacher (smallest first), the other teachers' means in grey behind
# it (mean and 95% interval over seeds; with fewer than 3 seeds, each seed's curve instead).

# %% tags=["appendix"]
fig = plots.training_curves(study.training_curves(cfg, study_dir))
plots.save(fig, figures, "teacher_training_curves");

# %% [markdown] tags=["appendix"]
# ## Teachers calibrated by training
#
# Calibration can also come from how a teacher is trained: **label smoothing** (the targets put
# `label_smoothing` of their mass on the other classes), **mixup** (training on convex mixtures of image
# pairs and of their labels) and **early stopping** (the same run stopped at `early_stop_epochs`, before it
# fits its training set; earlier work found such intermediate teachers teach better). Which variants are
# trained is the `teacher_variants` parameter; they become extra teacher rows in `results.csv`, compared in
# notebook 2.

# %% tags=["appendix"]
if cfg.teacher_variants:
    variants = study.train_teacher_variants(cfg, study_dir, log=log)
    tables.show(variants[variants["variant"] != "standard"])
else:
    report.notebook_note("No teacher variants in this profile: set teacher_variants, e.g. --set teacher_variants=label_smoothing,mixup")

# %% [markdown] tags=["notebook-only"]
# ## Try this
#
# 1. Set `overrides = {"teacher_epochs": 8}` in the parameters cell and run all. *Expected:* new run ids
#    (the config changed), so everything retrains. Eight epochs stop short of fitting the training set:
#    every teacher ends with a higher training loss than at the tutorial's 20 epochs and a last epoch's
#    training accuracy below 90% (at 20 epochs: 99.8-100%), and the larger teacher's loss stays below the
#    smaller one's in each seed.
# 2. Run the training cell a second time. *Expected:* it returns in seconds; `log.txt` gains one line
#    per run saying that it was done and is skipped.
# 3. Add a third teacher: `overrides = {"teachers": ["resnet14", "resnet20", "resnet32"]}`.
#    *Expected:* only the resnet32 runs train; the resnet14 and resnet20 runs are skipped.
# 4. **Write it yourself: accuracy from logits.** Complete this function in a new cell and check it:
#
#    ```python
#    import numpy as np
#    from kdcal import store, teaching
#
#    def my_accuracy(logits, labels):
#        """The fraction of images (rows of logits, [n, classes]) whose largest logit is at the label."""
#        ...  # your code: one or two lines of numpy
#
#    teaching.check_accuracy(my_accuracy)  # raises, naming the case, if it disagrees with kdcal.metrics
#    for rid, arch, seed in study.teacher_runs(cfg):
#        z = store.load_arrays(study.Study(study_dir).run_dir(rid) / "logits.npz")
#        print(arch, seed, my_accuracy(z["train_logits"], z["train_labels"]),
#              my_accuracy(z["test_logits"], z["test_labels"]))
#    ```
#
#    *Expected:* the check passes; in the committed tutorial run (`outputs/tutorial`) every teacher's
#    training accuracy is 0.999 or 1.000 and its test accuracy 0.796 to 0.813 (the table's `acc`).
#
# <details><summary>Answers</summary>
#
# 1. Run ids hash the full configuration, so any recipe change makes new runs. Deeper nets fit 1,000 images
#    faster, so their training loss ends lower; over-confidence comes with fitting the training set, and
#    notebook 2 fits a temperature near 1 (0.90 to 1.11 at 2 threads) to these 8-epoch teachers, against 1.49 to 1.75
#    at 20 epochs (notebook 2, exercise 3).
# 2. A finished run has a `done` marker; only missing or interrupted runs train (interrupted ones resume).
# 3. Same reason: the configs of resnet14's and resnet20's runs did not change.
# 4. `float((logits.argmax(axis=1) == labels).mean())` (`teaching.accuracy`). A gap of 19 to 20 points
#    between the images a teacher trained on and the images it never saw: it has fitted its training set,
#    and its confidence, learnt there, is too high elsewhere.
# </details>
