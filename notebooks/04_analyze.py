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
# # 4. What do the data say?
#
# This notebook collects every run into `results.csv` (one row per trained model), puts 95% confidence
# intervals over seeds on every number, and tests each claim of the paper with a rule fixed in advance.
# Knowledge-distillation effects on small datasets are often a fraction of a point, inside seed noise:
# an interval that contains zero means "not shown by this run", whatever the point estimate says.

# %% [markdown] tags=["notebook-only"]
# Measured: 8 s on 2 CPU cores for the tutorial profile (2026-12-07), the time papermill recorded for this
# notebook in the committed run `outputs/tutorial` (`kdcal plan --profile <name>` estimates other profiles).
#
# **What you should see** (that run's figure, section "Paired differences between modes"): in (b),
# uncalibrated KD and `replace` right of zero in both seeds (the dots) and `compose` on both sides; in (a),
# `compose` left of uncalibrated KD in both seeds and `replace` right of it; and every mean hollow: with two
# seeds nothing is decided once Holm's adjustment counts the table's other tests.
#
# ![Paired differences in student accuracy between modes in the tutorial run](../outputs/tutorial/figures/paired_mode_differences.png)

# %% [markdown] tags=["notebook-only"]
# **Learning goals.** After this notebook you can (1) say why the *seed* is the unit of replication; (2) read a
# 95% interval of a paired difference; (3) tell the five verdicts apart (supported, contradicted, negligible,
# equivalent, underpowered) and say what a minimum detectable effect is; (4) say why the paper's claim is an
# *interaction*, and why a size claim is tested inside a family of teachers.

# %% [markdown] tags=["notebook-only"]
# **Run alone.** With no runs of its profile in `study_dir`, this notebook reads the reference run
# (`reference`): its bundle when it has one, else its `results.csv` alone. Seconds, nothing written outside
# `study_dir`.

# %% tags=["parameters"]
# Parameters (papermill injects values below this cell; literals only)
profile = "tutorial"   # tutorial (minutes, the default) | smoke | quick | paper-fmnist | paper-cifar10 | paper-cifar100
overrides = {}         # e.g. {"device": "cuda", "seeds": [0, 1, 2]}
study_dir = "../outputs/scratch"  # a scratch folder (gitignored): never the committed outputs/
executor = "local"     # local | ray: where the trainings run (docs/running.md: On a cluster)
workers = None         # local worker processes side by side; None = the profile's (quick: 2)
reference = "../outputs/tutorial"  # read when study_dir holds no runs of this profile ('' = never)

# %% tags=["appendix"]
import kdcal
from kdcal import config, study, plots, analysis, claims as claim_tests, tables, bundle, answer, prereg
from IPython.display import display, Markdown

cfg = config.resolve(profile, {**overrides, "executor": executor,
                               **({"workers": workers} if workers is not None else {})})
cfg = bundle.open_study(cfg, study_dir, reference)  # no runs yet: the reference run (bundle or results.csv)
figures = study.Study(study_dir).figures
plots.style()
results = bundle.study_results(cfg, study_dir, reference)  # from the runs, else the reference's results.csv
teachers = results[(results["role"] == "teacher") & (results["mode"] == "teacher")]  # variants: notebook 2
students = results[results["role"] == "student"]
sizes = tables.teacher_sizes(results)
print(f"{len(teachers)} teachers and {len(students)} students in {tables.display_path(study_dir)}/results.csv")

# %% [markdown] tags=["appendix"]
# ## Teachers: size, accuracy and calibration
#
# Mean and 95% t-interval over seeds per teacher, before (`ece`, `nll`) and after (`ece_cal`, `nll_cal`)
# temperature scaling; `–` where there is no interval (one seed). The figures of these numbers, and the
# reliability diagrams, are in notebook 2 (section "Calibration against teacher size").

# %% tags=["appendix"]
summary = analysis.teacher_summary(teachers)
with_ci = lambda names: [c for n in names for c in (n, f"{n}_low", f"{n}_high") if c in summary]
tables.show(summary, columns=["arch", "params", "seeds", *with_ci(["acc", "ece", "ece_cal", "nll", "nll_cal",
                                                                   "temperature"])], intervals=True)
tables.show(summary, columns=["arch", *with_ci(["train_acc", "train_ece", "train_nll"])], intervals=True,
            caption="The same teachers on their training images")

# %% [markdown]
# ## Students: accuracy against teacher size, per mode
#
# Every seed is a dot and the line joins the means over seeds (95% t-intervals, never from fewer than 3 seeds); modes
# sit side by side around each teacher. The no-KD baseline sits left of the teachers (its seeds as dots, mean
# and interval in brown), its mean dotted across; lines join teachers of one family only (depth solid, width
# dashed).

# %% tags=["appendix"]
tables.show(analysis.seed_summary(students, ["mode", "teacher"], "acc"), sizes=sizes, bounds=(0, 1))

# %%
plots.save(plots.student_accuracy_vs_teacher_size(students), figures, "student_accuracy_vs_teacher_size");

# %% [markdown] tags=["appendix"]
# ## Paired differences between modes
#
# For the same teacher and seed, students differ only by their loss, so the difference of their accuracies
# is free of most seed noise. But the students of one seed also share that seed (initial weights, batches,
# the baseline they are compared with), so the **seed is the unit**: per teacher, the interval is over that
# teacher's seeds; pooled ("all"), each seed contributes one number, its mean over teachers, and the
# interval is over seeds (`n` = seeds, `pairs` = teacher x seed pairs behind them). `verdict` applies the
# rule of the claims below with a margin of +-0.5 accuracy points; `mde` is the smallest difference this
# many seeds detect with 80% power, `seeds_needed` the seeds that would detect the margin
# (`seeds_needed_observed`: the observed difference). The table holds many tests (every mode, every
# teacher), so `p_holm` adjusts their p-values for their number (Holm, both tests of every row in one family,
# as for the claims below) and `verdict_holm` is the verdict that survives it: the figure fills a marker only
# where `verdict_holm` is supported or contradicted. In the figure, the top
# row pools over teachers (a row per mode, every seed a dot under it), the bottom row holds the same per
# teacher (a block per teacher, a row per mode); every panel shares one x range.

# %% tags=["appendix"]
diffs = analysis.mode_differences(students, cfg.modes)

# %% tags=["appendix"]
points = [c for c in ("mean", "std", "ci_low", "ci_high", "mde") if c in diffs]
tables.show(diffs.assign(**{c: diffs[c] * 100 for c in points}), sizes=sizes, digits=3,
            caption="Accuracy differences in percentage points (x100), as in the README")

# %% tags=["appendix"]
plots.save(plots.paired_mode_differences(diffs, students=students), figures, "paired_mode_differences");

# %% [markdown] tags=["appendix"]
# ## Teacher size and the student: teachers are the units
#
# A claim about teacher *size* generalises over teachers, so each teacher contributes one number (its mean
# over seeds): Spearman and Kendall of teacher parameters against mean student accuracy, a two-sided exact
# permutation p-value over teachers (every ordering of the teachers), and the effect as a slope: student
# accuracy per doubling of teacher parameters, with the exact permutation interval. With k teachers no
# p-value can fall below 2/k! (`p_floor`): 4 teachers cannot reach 5%, whatever the seeds say.
#
# **Two families, never one line.** The teachers form a depth ladder (`resnetN`) and a width ladder
# (`resnetNxK`); at equal parameters the width teachers can sit well apart from the depth teachers (their
# ECE more than a point lower, in this study's runs of both ladders). A line through both would mix the offset with the slope, so
# the claims below test size within each family, and across families with a *family term*: each family its
# own intercept, one common slope, and a permutation that only reorders teachers inside their family
# (4 depth and 3 width teachers allow 4! x 3! = 144 orderings, p >= 0.014). The table below pools the
# families this way too. Then, as in Kim, Park, Lee and Kwak (2025, "The Role of Teacher Calibration in Knowledge Distillation",
# IEEE Access, arXiv:2508.20224), how much of the student's accuracy
# is explained ($R^2$, Spearman) by the teacher's ECE versus the teacher's accuracy (descriptive: no test
# over these non-independent rows).

# %% tags=["appendix"]
tables.show(analysis.size_correlations(students), digits=3)
tables.show(analysis.predictors_of_student(students), digits=3)

# %% [markdown] tags=["appendix"]
# ### Does size act through the teacher's accuracy or its calibration?
#
# A larger teacher is usually both more accurate and (before calibration) less calibrated, so a size slope
# alone cannot say which of the two the student feels. Per mode, over teachers (means over seeds, one
# intercept per family), student accuracy is fitted on size, on teacher accuracy, on teacher ECE, and on
# size *beside* each of the two: if size's coefficient falls to about zero once teacher accuracy is in the
# fit, size reaches the student through the teacher's accuracy. Exploratory: intervals are t-intervals over
# teachers from the fit's residuals, with no verdict and nothing in the Holm family; with fewer teachers
# than a fit has unknowns, no number is given.

# %% tags=["appendix"]
paths = analysis.size_or_accuracy(results)  # the teachers' rows: a `family` column counts
tables.show(paths, digits=3)
plots.save(plots.student_accuracy_size_or_accuracy(students), figures, "student_accuracy_size_or_accuracy");

# %% [markdown] tags=["appendix"]
# ### Design check: is the student clearly smaller than every teacher?
#
# The paper's story needs a capacity gap: a student that cannot match its teacher. Per teacher, its test
# accuracy minus the no-KD baseline student's, paired within each seed (points, mean and 95% t-interval over
# seeds), and the two models' parameters. `meets`: the mean gap is at least 2 points (the target of the
# confirmatory design). A check, reported as it comes out: it decides no claim.

# %% tags=["appendix"]
tables.show(analysis.capacity_gap(results), digits=2)

# %% [markdown] tags=["appendix"]
# ## The claims, tested
#
# The paper (Yang & Song, arXiv:2111.01684) says that large teachers are over-confident, and that *after
# calibration* teacher size correlates positively with student accuracy. Read as this study reads it:
#
# 1. larger teachers have higher ECE (a slope over teachers);
# 2. temperature scaling, fitted on validation, lowers every teacher's ECE and NLL;
# 3. without calibration, student accuracy does not increase with teacher size;
# 4. **the interaction** (the paper's main claim, first among the student claims): the *benefit of
#    calibration* (calibrated minus uncalibrated student accuracy, paired within a seed, averaged over
#    seeds per teacher) grows with teacher size, as a slope over teachers; beside it, each calibrated
#    mode's own slope;
# 5. calibrated distillation beats uncalibrated distillation for the same teacher, and beats uncalibrated
#    KD at each teacher's validation-tuned tau (the fair control: temperature scaling inside KD is a choice
#    of temperature).
#
# Size claims (1, 3, 4) come one row per family (`family`: `depth`, `width`) and one across families with a
# family term (`all`). Margins are declared on the study's scale: half an accuracy (or ECE) point from the
# smallest to the largest teacher, converted per doubling (`margin`; `margin_span` is the half point), and
# half a point for paired differences.
#
# ### The verdict guide
#
# Each claim becomes one statistic with a 95% interval and two tests: `p_value` against 0, and `p_equiv`
# against +-margin (two one-sided tests, TOST: is the effect above -margin, and below +margin?). Each is
# reported on the interval's 5% scale (`p_equiv` is twice the larger one-sided p), so `p_value` <= 5% exactly
# when the interval excludes 0 and `p_equiv` <= 5% exactly when it lies inside +-margin. The verdict is read
# off the interval, computed, not typed. Examples with a margin of +-0.5 points, for a claim that predicts a
# positive effect:
#
# | verdict | the rule | example interval | what it says |
# |---|---|---|---|
# | supported | entirely on the side the claim predicts, not entirely inside +-margin | [+0.2, +0.9] | the sign is shown; the effect may be large |
# | contradicted | entirely on the other side, not entirely inside +-margin | [-1.1, -0.6] | the opposite sign is shown |
# | negligible | excludes 0 and lies inside +-margin | [+0.1, +0.3] | an effect is shown, smaller than the margin: not one worth the name |
# | equivalent | inside +-margin, touching or crossing 0 | [-0.35, +0.33] | no effect as large as the margin: a result, not a failure |
# | underpowered | none of these | [-1.09, +0.29] | it crosses 0 and reaches past a margin: this design cannot tell |
#
# An interval narrower than twice the margin can still be underpowered (it may straddle one end of the
# margin). `mde` is the smallest effect the design detects with 80% power; `needed` the seeds (or teachers)
# that would detect the margin, `needed_observed` the effect actually observed. With no effect, the rule
# declares supported, contradicted or negligible in at most about 5% of simulated studies; with the effect
# exactly at the margin it declares equivalent in at most about 2.5% (`tests/test_inference.py`,
# `tests/test_inference_holm.py`, `tests/test_inference_families.py`).
#
# **Many claims, one table: Holm.** Each claim is tested at 5%, so a table of 20 claims would decide about one
# by chance alone. Holm's adjustment runs over one family holding both tests of one row per claim (a size
# claim's test across families where the table has one: fixed by the design, not chosen on the data). A
# claim's two nulls (effect 0; effect at least the margin) cannot both be true, so the family counts claims,
# not tests: each test is adjusted against every other claim's larger p-value, since another claim leaves
# the count only once both its tests are passed. `verdict_holm` is the verdict that survives: supported or
# contradicted needs the zero test, equivalent the TOST, negligible both (if only one survives, its verdict
# stands); otherwise underpowered. `p_holm` is the adjusted p of the test behind `verdict_holm`, named in
# `p_test` (`zero`, `equivalence` or `both`). The rows within one family beside a test across families are
# secondary: they show where a slope comes from and are not adjusted. Example: a size slope with p = 0.014
# among 11 claims has p_holm = 0.14: decided alone, not after adjustment. A p-value on the permutation floor
# (2 over the orderings of the teachers) says so in `note`: only more teachers lower it. Read `verdict_holm`
# first.

# %%
# a confirmatory profile's preregistration (docs/preregistration-<profile>.md): is this its answer yet?
status = prereg.status_note(profile, study_dir)
if status:
    display(Markdown(status))

# %% tags=["appendix"]
print(claim_tests.VERDICT_RULE)
claims = claim_tests.claims_table(results)
study.save_table(claims, study_dir, "claims.csv")
# in the README's units (accuracy and ECE x100: points), and "decided before Holm, not after" said
shown = answer.in_points(claims).assign(verdict_holm=answer.holm_column(claims))
tables.show(shown[["claim", "family", "estimate", "ci_low", "ci_high", "units", "n", "unit", "p_value",
                   "p_equiv", "p_holm", "p_test", "margin", "needed", "needed_observed", "verdict", "verdict_holm"]], digits=3)
display(Markdown(answer.settle_note(claims)))

# %% tags=["notebook-only"]
print(claim_tests.claims_summary(claims))

# %% [markdown] tags=["notebook-only"]
# **The answer, claim by claim**: the paper's words, what this run finds and the answer (`holds`,
# `not reproduced`, `open`), read from `verdict_holm`. The report opens with this table; the README's
# is that of the committed evidence runs.

# %% tags=["notebook-only"]
tables.show(answer.answer_box(claims))

# %% [markdown] tags=["notebook-only"]
# **What each profile can settle.** `tutorial` (2 teachers, 2 seeds) settles nothing: it is for learning the
# pipeline. `quick` (4 depth teachers, 3 seeds) cannot settle any size claim (an exact permutation over 4
# teachers gives p >= 2/4! = 0.083) and settles a paired claim only if its effect is several times the
# half-point margin. `evidence` (4 depth and 3 width teachers, 5 seeds) reaches 5% for a size claim only across
# families with the family term (p >= 2/(4! 3!) = 0.014), and no size claim can survive Holm's adjustment over
# its 11 claims (p_holm >= 0.15). The `evidence-reuse` and `evidence-transfer` designs (6 depth and 2 width
# teachers) allow p >= 2/(6! 2!) = 0.0014 across families, so a size claim can survive Holm over their 19
# claims (0.0014 x 19 = 0.026). The notes say, claim by claim, how many seeds or teachers would settle what a
# run leaves open.

# %% [markdown] tags=["appendix"]
# ## Reading the intervals and verdicts, in plain words
#
# - **The seed is the unit.** One seed fixes a teacher's and a student's initial weights and batches. Two
#   students of one seed are not independent evidence; two seeds are. So the interval of a paired difference
#   (calibrated minus uncalibrated, same teacher and seed) is computed over the per-seed means: with 2 seeds
#   it rests on 2 numbers, and it is wide.
# - **The teacher is the unit of a size claim.** More seeds sharpen each teacher's mean; only more teachers (in
#   a family) give the permutation more orderings.
# - **A 95% interval** is the range of effects the data are compatible with. If it excludes zero, the sign is
#   shown; if it contains zero, it is not.
# - **Minimum detectable effect**: the smallest true effect this number of seeds would detect most of the
#   time; with few seeds it is often larger than any effect KD plausibly has on this scale.

# %% [markdown] tags=["notebook-only"]
# ## Try this
#
# 1. **Write it yourself: a paired difference and its interval.** Complete this function in a new cell and
#    check it:
#
#    ```python
#    import numpy as np
#    from scipy import stats
#    from kdcal import teaching
#
#    def my_pooled_difference(students, mode, versus):
#        """acc(mode) - acc(versus) for the same teacher and seed (versus "baseline": the seed's one no-KD
#        student), averaged over the teachers per seed; then the mean over the seeds and its 95%
#        t-interval. Returns (mean, low, high)."""
#        ...  # your code: pandas for the pairing, stats.t.ppf(0.975, n - 1) for the interval
#
#    teaching.check_pooled_difference(my_pooled_difference, students)  # against kdcal.inference.t_interval
#    my_pooled_difference(students, "uncalibrated", "baseline")
#    ```
#
#    *Expected:* the check passes. In the committed tutorial run the per-seed differences are +1.60 and
#    +1.58 points, so the mean is +1.59 and the interval +1.43 to +1.75 points: it excludes zero (the `all`
#    row of `uncalibrated - baseline` above, verdict `supported`), yet `verdict_holm` is `underpowered`.
#    Treating the four teacher x seed pairs as independent units instead gives -1.74 to +4.91: the wrong
#    unit, and the check rejects it.
# 2. With the default profile (`tutorial`: 2 teachers, 2 seeds), rerun notebooks 1-4 with
#    `overrides = {"seeds": [0, 1, 2]}`. *Expected:* the interval of claim 5 narrows (roughly by
#    $\sqrt{2/3}$ in width, more from the t quantile), so its verdict may move from *underpowered*; the size
#    claims (1, 3, 4 and the interaction) stay underpowered, whatever the seeds: 2 teachers give no interval.
# 3. Read claim 2's row: which teacher is "least favourable"? *Expected:* the one whose ECE or NLL improves
#    least under temperature scaling, usually the smallest, best-calibrated teacher: in the tutorial run
#    resnet14, by its test NLL (down by 0.048, mean over seeds).
#
# <details><summary>Answers</summary>
#
# 1. With the seed as the unit, the per-seed differences *are* the data; their spread sets the interval
#    (`teaching.pooled_difference`). Two seeds give one degree of freedom: the interval's half-width is
#    12.7 standard errors, and that standard error rests on two numbers that here happen to agree to 0.03
#    points, so the narrow interval is luck, not precision. Holm's adjustment counts the table's 15 rows:
#    the row's p-value of 0.005 becomes 0.075 (`p_holm`), above 5%.
# 2. A t-interval shrinks with $\sqrt{n}$ and its quantile falls from 12.7 (2 seeds) to 4.3 (3 seeds). A
#    size claim has the teacher as its unit: more seeds sharpen each teacher's mean, never the count.
# 3. A teacher that is already calibrated has little to gain, so its improvement is the weakest link.
# </details>
