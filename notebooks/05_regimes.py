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
# # 5. When does calibration matter? A map of the regimes
#
# When teachers fit their training set, the premise of the paper's abstract ("the larger teacher model
# may be too over-confident"; Yang & Song 2021, arXiv:2111.01684) shows in this study's runs: fitted T and
# ECE rise with size, while the student-side claims sit near seed noise.
# This notebook asks where, if anywhere, calibrating the teacher *does* change what the student learns.
# Each row of the map below is a *cell*: the base study with **one** setting changed; the design and the
# statistics are set out next (in the report, in its appendix).

# %% [markdown] tags=["notebook-only"]
# Measured: 29 s on 2 CPU cores for the tutorial profile (2026-12-07), the time papermill recorded for this
# notebook in the committed run `outputs/tutorial` (`kdcal plan --profile <name>` estimates other profiles).
#
# **What you should see** (that run's map, section "The map"): two rows. At the base ($\tau = 4$) the
# `compose` students are 2.55 points below uncalibrated KD on average, but the two seeds lie 4.2 points
# apart (-4.65 and -0.45); at $\tau = 1$ both seeds lie inside the grey band of +-0.5 points (+0.03 and
# -0.33): there, calibrating the teacher barely moves the student (exercise 2 says why). No interval:
# two seeds.
#
# ![The regime map of the tutorial run: the effect of calibrating the teacher at tau 4 and tau 1](../outputs/tutorial/figures/regimes.png)

# %% [markdown] tags=["appendix"]
# **Design.** Every row of the map below is a *cell*: the base study of notebooks 1-4 with **one**
# setting changed (one factor at a time, not a full factorial, so effects are read against the same
# base). Each cell trains its own teacher ladder (unless it can reuse one: run ids are derived from
# full configs, so the tau cells reuse the base teachers), fits T on validation, and distills the same
# student twice from every teacher and seed, uncalibrated and calibrated, with the same initial weights
# and batches. The factors:
#
# | factor | why it could decide whether calibration matters |
# | --- | --- |
# | `tau` | a high KD temperature already softens an over-confident teacher; at tau = 1 calibration is all the softening there is |
# | `label_noise` | symmetric noise in the *teachers'* training labels (val, test and student labels stay clean): memorising noise makes teachers confidently wrong |
# | `train_size` | teachers that memorise a small training set give near one-hot targets on it |
# | `transfer_size` | students distill on images the teachers never trained on, where the teachers' outputs are not memorised one-hots |
# | `teacher_epochs` | over-training: teachers trained until they fit their training set grow more over-confident than teachers stopped short of it |
# | `teachers` | a ladder by width instead of by depth |
# | `teacher_weight_decay`, `teacher_norm` | weight decay and batch norm, which Guo et al. (2017) found to drive miscalibration |
# | `dataset` | number of classes (Fashion-MNIST's 10 against CIFAR-100's 100, GPU profiles only) |
#
# **Statistics** (notebook 4's rules). The effect in a cell is the student's test accuracy under the
# calibrated mode minus uncalibrated KD, paired by teacher and seed, averaged over the cell's teachers per
# seed, with a 95% t-interval over those per-seed means (the seed is the unit: two seeds give one degree
# of freedom, and a wide interval). The size columns are Spearman correlations of teacher means with an
# exact permutation p-value over the cell's teachers (3 teachers allow p >= 1/3: no size verdict is
# possible in a cell). With many cells, some intervals exclude zero by chance: the summary says how many
# to expect.

# %% [markdown] tags=["notebook-only"]
# **Learning goals.** After this notebook you can (1) read a one-factor-at-a-time design; (2) say how many
# "significant" cells chance alone produces among many; (3) decide which cell to rerun with more seeds.

# %% tags=["parameters"]
# Parameters (papermill injects values below this cell; literals only)
profile = "tutorial"       # tutorial (one tau cell, minutes), regimes-quick, regimes-full, or any profile with `regimes`
overrides = {}             # e.g. {"device": "cuda", "seeds": [0, 1, 2]}
study_dir = "../outputs/scratch"  # the same scratch folder as notebooks 01-04 (gitignored)
executor = "local"         # local | ray: where the trainings run (README: On a cluster)
workers = None             # local worker processes side by side; None = the profile's (quick: 2)
reference = "../outputs/regimes-quick"  # its regimes_results.csv, when study_dir holds no runs ('' = never)

# %% tags=["appendix"]
import kdcal
from kdcal import config, regimes, plots, study, tables, logfile, bundle, report
from IPython.display import display, Markdown

cfg = config.resolve(profile, {**overrides, "executor": executor,
                               **({"workers": workers} if workers is not None else {})})
cfg = bundle.open_study(cfg, study_dir, reference, seed=False)  # no runs yet: the reference's grid and table
figures = study.Study(study_dir).figures
plots.style()
log = logfile.StudyLog(study_dir, "05_regimes")
cells = config.regime_cells(cfg)
if not cells:
    raise ValueError(f"profile {profile!r} has no regimes grid; use regimes-quick or set regimes")
display(Markdown("\n".join(f"- `{regimes.cell_label(f, l)}`: teachers {', '.join(c.teachers)}"
                           for f, l, c in cells)))

# %% [markdown] tags=["appendix"]
# ## Train, calibrate and distill every cell
#
# Runs already in the study folder (the base cell from notebooks 1-3, teachers shared between cells)
# are skipped; an interrupted run resumes from its last epoch. With no runs of its profile in `study_dir`
# (notebooks 1-3 not run), nothing trains: the committed `regimes_results.csv` of `reference` is read, and
# the map below is that run's.

# %% tags=["appendix"]
table = bundle.regime_results(cfg, study_dir, reference, log=log)  # also writes regimes_results.csv
report.notebook_note(repr(log))
print(f"{(table['role'] == 'teacher').sum()} teacher rows and {(table['role'] == 'student').sum()} "
      f"student rows over {table['cell'].nunique()} cells")

# %% [markdown]
# ## The map
#
# (a) the effect of calibrating the teacher on the student (paired by teacher and seed, averaged over the
# cell's teachers per seed, 95% t-interval over seeds: the seed is the unit), (b) whether a bigger teacher
# makes a better student, without and with calibration, and (c) whether the bigger teacher is the less
# calibrated one in that regime (the first claim); (b) and (c) are Spearman correlations of teacher means,
# judged with teachers as units (slope per doubling, exact permutation over teachers). Filled markers, as
# the legend says: a decided verdict (supported or contradicted) by the rule of notebook 4; with 3 teachers
# per cell no size verdict can be decided (p >= 1/3). With fewer than 3 teachers per cell
# there is no size correlation: (b) and (c) are not drawn, and the title says so.

# %%
effects = regimes.regime_effects(table, cfg.regime_mode)
study.save_table(effects.drop(columns=["order"]), study_dir, "regimes.csv")
plots.save(plots.regime_map(effects, cfg.regime_mode, table=table), figures, "regimes");

# %% [markdown] tags=["appendix"]
# The same numbers as a table: effect and intervals in accuracy points, teacher means over the cell's
# ladder and seeds, and `kd_gain`, uncalibrated KD minus the no-KD student (points), which says whether
# distillation helps at all in that regime.

# %% tags=["appendix"]
cols = ["cell", "effect", "effect_low", "effect_high", "verdict", "mde", "seeds_needed", "pairs",
        "size_uncal", "size_cal", "size_ece", "teacher_acc", "teacher_ece", "temperature",
        "student_acc_uncal", "kd_gain"]
tables.show(effects, digits=3, columns=[c for c in cols if c in effects])

# %% [markdown]
# ## What the map says
#
# Generated from the map's numbers, not typed: it changes when the data do.

# %%
summary = regimes.regime_summary(effects, cfg.regime_mode)
(study.Study(study_dir).root / "regimes_summary.md").write_text(summary + "\n")
print(summary)

# %% [markdown] tags=["appendix"]
# **Reading it.** A cell marked `supported` or `contradicted` is a regime where calibration changes the
# student, in the direction shown; `negligible` a change shown but smaller than half a point; `equivalent`
# means no change larger than half a point; `underpowered`
# means the cell's seeds cannot say (`seeds_needed` tells how many would). If (b) turns positive only with
# calibration in some cell, that cell is where the paper's size claim holds, but only a cell with at least
# 5 teachers can show it. Single cells are weak evidence: one factor moved at a time, and about one cell
# in twenty is decided by chance alone.

# %% [markdown] tags=["notebook-only"]
# ## Try this
#
# 1. Count the cells whose interval in (a) excludes zero, and compare with the number expected by chance
#    (5% of the cells). *Expected:* with the tutorial's two cells and two seeds (one degree of freedom: very
#    wide intervals), zero or one, and most likely zero: no evidence either way. Which cells, if any, depends
#    on the seeds. The committed tutorial run has none: the base -2.55 points (-29.2 to +24.1), $\tau = 1$
#    -0.15 (-2.4 to +2.1).
# 2. Add a cell: `overrides = {"regimes": {"tau": [1.0, 8.0]}}`. *Expected:* only the tau = 8 students train
#    (the teachers and the tau = 1 students are the base cell's and the tutorial's). Does calibration matter
#    more or less at tau = 8? `teaching.compose_pull_difference` (notebook 3, exercise 1) says about as
#    much as at tau = 4: the difference between what `compose` and uncalibrated KD teach grows 8 to 10
#    times from tau = 1 to tau = 4 and stays within 5% of that at tau = 8. The committed `regimes-quick`
#    run (three teachers, two seeds; open this notebook with `profile = "regimes-quick"` and an empty
#    `study_dir` to read it) cannot tell: its effects are +0.14 points at tau = 1, +1.10 at tau = 2, -0.75
#    at tau = 4 (the base) and -0.34 at tau = 8, and every interval spans zero (the base's from -2.8 to
#    +1.3, tau = 8's from -11.7 to +11.0). Two seeds (one degree of freedom) decide nothing here; an earlier
#    run on another machine ordered them differently (+0.06, -0.08, -0.17, -1.46). The tutorial's own
#    tau = 8 effect can come out either way.
# 3. Add `label_noise`: `overrides = {"regimes": {"label_noise": [0.4]}}`. *Expected:* new teachers train
#    (the noise is in the teachers' training labels, so their run ids change). Compare the cell's fitted T
#    and test ECE with the base cell's. The committed `regimes-quick` run, whose teachers train 30 epochs
#    and fit their noisy training labels, answers it: the fitted T *falls*, for every teacher and seed (mean
#    over its teachers: 1.71 at the base, 1.38 at noise 0.2, 1.53 at 0.4), while at noise 0.4 the test ECE
#    of the two larger teachers rises (resnet14 0.08 -> 0.13, resnet20 0.09 -> 0.15) and resnet8's falls.
#    The tutorial's teachers train 20 epochs and fit their 1,000 training images when the labels are clean
#    (training accuracy 99.9-100%); whether they also fit labels 40% of which are wrong, and what that does
#    to T, is yours to see: with two teachers and two seeds the outcome can differ from `regimes-quick`'s,
#    and it can change with the seed.
# 4. **Write it yourself: the temperature fit.** Complete these functions in a new cell and check the fit:
#
#    ```python
#    import numpy as np
#    from kdcal import store, teaching
#
#    def my_nll(logits, labels, T):
#        """Temperature scaling's objective: the mean negative log-likelihood of softmax(logits / T)."""
#        ...  # your code: a log-softmax, then the entries at the labels
#
#    def my_fit_temperature(logits, labels):
#        """The T > 0 that minimises my_nll (on validation logits, in the study)."""
#        ...  # your code: a grid over log T, refined; or scipy.optimize.minimize_scalar
#
#    teaching.check_fit_temperature(my_fit_temperature)  # against kdcal.calibration.fit_temperature
#    for rid, arch, seed in study.teacher_runs(cfg):
#        z = store.load_arrays(study.Study(study_dir).run_dir(rid) / "logits.npz")
#        print(arch, seed, my_fit_temperature(z["val_logits"], z["val_labels"]))
#    ```
#
#    *Expected:* the check passes (within 0.1% of the library). With the tutorial's teachers in `study_dir`
#    (notebooks 1-3 run), in the committed run: 1.485 and 1.509 for resnet14, 1.749 and 1.702 for
#    resnet20. Their mean, 1.611, is the `temperature` of both rows of the map's table: the tau cells
#    share the base's teachers.
#
# <details><summary>Answers</summary>
#
# 1. With k cells and no true effect, about 0.05 k intervals exclude zero by chance.
# 2. Run ids of tau cells differ only for students. A high tau flattens both distributions, but the
#    $\tau^2$ weight undoes that: at a high tau KD matches the student's logits to the teacher's, and
#    `compose` asks for the teacher's logits divided by T (notebook 3, exercise 1).
# 3. Memorised noise costs the teachers more accuracy than confidence. On the test images the larger
#    teachers' mean confidence (about accuracy + ECE, since they are over-confident) falls from about 0.94
#    to 0.76, but their accuracy falls from about 0.86 to 0.62: the gap, ECE, grows. T falls because the
#    teachers' test outputs are already much softer than at the base, so less softening minimises the
#    validation NLL. One temperature cannot repair this miscalibration: ECE after scaling stays above the
#    base's for every teacher and seed (1.5 to 2.7 times it, by teacher). A larger T and a larger ECE need
#    not go together: T is how much uniform softening the NLL asks for over the whole distribution, ECE the
#    gap of the top-1 confidence.
# 4. `teaching.nll_at_temperature` and `teaching.fit_temperature` (a bounded search over log T). The NLL
#    is convex in 1/T, so it has one minimum, and any search that brackets it finds it; notebook 2's
#    "Temperature scaling by hand" draws the curve.
# </details>
