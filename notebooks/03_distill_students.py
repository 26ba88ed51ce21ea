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
# # 3. Distill one student from every teacher
#
# Hinton's distillation loss mixes two terms:
#
# $$ L = \alpha\,\tau^2\,\mathrm{KL}\big(\mathrm{softmax}(z_t/\tau)\,\|\,\mathrm{softmax}(z_s/\tau)\big) + (1-\alpha)\,\mathrm{CE}(z_s, y) $$
#
# where $z_t$ and $z_s$ are the teacher's and student's logits, $\tau$ the distillation temperature (it
# softens both distributions so the small probabilities matter) and $\tau^2$ keeps the gradient scale
# independent of $\tau$.
#
# Every teacher teaches the same student architecture, with the same budget, in three ways:
#
# | mode | teacher logits divided by | student logits divided by | meaning |
# | --- | --- | --- | --- |
# | `uncalibrated` | $\tau$ | $\tau$ | plain KD from the raw teacher |
# | `compose` | $T\tau$ | $\tau$ | KD from the temperature-scaled teacher at the usual $\tau$ |
# | `replace` | $T$ | $T$ | the fitted T *is* the distillation temperature (this study's reading of "calibrate, then distill") |
#
# plus `baseline`: the same student trained on labels only. $T$ is each teacher's temperature from
# notebook 2. The paper (Yang & Song, arXiv:2111.01684) says only "simple model calibration" of the
# teacher: it names no data set, no calibrator and no distillation recipe. Temperature scaling, and the
# `compose` and `replace` ways of combining it with KD, are this study's reading of it. Modes named `cal-<method>` (for example `cal-histogram`, chosen with the `modes` parameter)
# distill from any other calibrator of notebook 2 instead: its distribution $p$ is handed over as logits
# $\log p$, so the student learns $p^{1/\tau}$ renormalised. Those targets are computed once on the training
# images, so these modes need un-augmented inputs.
#
# **Pairing.** All students of one teacher and seed start from the same initial weights and see exactly the
# same batches, in one training loop that reads the teacher's cached logits. Differences between modes are
# then due to the loss alone, which lets notebook 4 compare them pair by pair.

# %% [markdown] tags=["notebook-only"]
# Measured: 42 s on 2 CPU cores for the tutorial profile (2026-12-07), the time papermill recorded for this
# notebook in the committed run `outputs/tutorial` (`kdcal plan --profile <name>` estimates other profiles).
#
# **What you should see** (that run's students, as notebook 4 draws them): uncalibrated KD (orange) and
# `replace` (green) students above the dotted no-KD baseline (0.69) for both teachers, `compose` (blue)
# below it; and two seeds of one teacher and mode as much as 5.45 points apart (`compose` from resnet14:
# 0.647 and 0.7015), more than any mode's mean lies from the baseline.
#
# ![Student test accuracy against teacher size per mode, in the tutorial run](../outputs/tutorial/figures/student_accuracy_vs_teacher_size.png)

# %% [markdown] tags=["notebook-only"]
# **Learning goals.** After this notebook you can (1) derive why the KD term is multiplied by $\tau^2$;
# (2) say exactly what each mode (`uncalibrated`, `compose`, `replace`) changes in the loss; (3) explain why
# students of one teacher and seed are trained *paired* (same initial weights, same batches).
#
# **Needs notebooks 1 and 2 of the same profile.** This notebook trains students, so it does not read the
# committed reference run: run notebooks 1 and 2 first (with the `tutorial` profile, about a minute each).

# %% tags=["parameters"]
# Parameters (papermill injects values below this cell; literals only)
profile = "tutorial"   # tutorial (minutes, the default) | smoke | quick | paper-fmnist | paper-cifar10 | paper-cifar100
overrides = {}         # e.g. {"device": "cuda", "seeds": [0, 1, 2]}
study_dir = "../outputs/scratch"  # a scratch folder (gitignored): never the committed outputs/
executor = "local"     # local | ray: where the trainings run (README: On a cluster)
workers = None         # local worker processes side by side; None = the profile's (quick: 2)

# %% tags=["appendix"]
import kdcal
from kdcal import config, study, plots, analysis, tables, logfile, budget, report

cfg = config.resolve(profile, {**overrides, "executor": executor,
                               **({"workers": workers} if workers is not None else {})})
figures = study.Study(study_dir).figures
plots.style()
log = logfile.StudyLog(study_dir, "03_distill_students")
print(f"student {cfg.student}: {budget.student_epochs(cfg)} epochs = {budget.student_steps(cfg)} steps "
      f"for every student and the baseline (teachers: {budget.teacher_steps(cfg)}), "
      f"lr {cfg.student_lr}, tau {cfg.tau}, KD weight alpha {cfg.alpha}, modes {cfg.modes} + baseline")

# %% [markdown] tags=["appendix"]
# ## The loss, written out
#
# The formula above in ten lines of PyTorch. The teacher's logits come from a run of notebook 1 (on its
# training images); the student's logits are random here, because it is the loss that is checked, not a
# student.

# %% tags=["appendix"]
import torch
import torch.nn.functional as F
from kdcal import distill, store


def hinton_kd_loss(student_logits, teacher_logits, labels, tau, alpha):
    log_q = F.log_softmax(student_logits / tau, dim=1)       # the student, softened at tau
    p = F.softmax(teacher_logits / tau, dim=1)               # the teacher, softened at tau: the target
    log_p = F.log_softmax(teacher_logits / tau, dim=1)
    kl = (p * (log_p - log_q)).sum(dim=1).mean()             # KL(p || q), averaged over the batch
    # dKL/dz_s = (q - p) / tau, and q - p itself shrinks like 1/tau: the gradient falls like 1/tau^2.
    # Multiplying by tau^2 keeps the soft term's weight against the hard one the same at every tau.
    soft = tau ** 2 * kl
    hard = F.cross_entropy(student_logits, labels)           # the labels, at temperature 1
    return alpha * soft + (1 - alpha) * hard


calibrations = study.calibration_table(cfg, study_dir)       # one row per teacher and seed: run_id, T
teacher = calibrations[calibrations["arch"] == cfg.teachers[-1]].iloc[0]  # the ladder's last, first seed
logits = store.load_arrays(study.Study(study_dir).run_dir(teacher["run_id"]) / "logits.npz")
z_t = torch.as_tensor(logits["train_logits"][:256], dtype=torch.float32)
y = torch.as_tensor(logits["train_labels"][:256], dtype=torch.long)
z_s = 3 * torch.randn(z_t.shape, generator=torch.Generator().manual_seed(0))
mine = hinton_kd_loss(z_s, z_t, y, cfg.tau, cfg.alpha)
library = distill.kd_loss(z_s, z_t, y, cfg.tau, cfg.alpha)
assert torch.allclose(mine, library, rtol=1e-5), (mine, library)
print(f"{teacher['arch']} seed {teacher['seed']}, 256 training images, tau {cfg.tau}, alpha {cfg.alpha}: "
      f"written out {mine:.6f}, kdcal.distill.kd_loss {library:.6f}")

# %% [markdown] tags=["appendix"]
# ## Temperature scaling inside KD is a choice of temperature
#
# Look at the table of modes again. `replace` divides teacher *and* student logits by $T$ and weighs the KD
# term by $\alpha T^2$: that is **exactly uncalibrated KD at $\tau = T$**, nothing else. `compose` divides
# only the teacher's logits by $T\tau$: it is KD with a teacher temperature $T\tau$ and a student temperature
# $\tau$, one point of the teacher-temperature sweep below ($m = T$). So whatever `replace` or `compose`
# change in a student, a different temperature changes it too: the fair control for them is uncalibrated KD
# at a tuned $\tau$ (next section). What can show an effect of calibration *as such* is a calibrator that
# no temperature can express: vector or matrix scaling, histogram binning, isotonic regression, beta
# calibration (the `cal-<method>` modes).
#
# The cell below checks both statements on the batch above, with the teacher's fitted T: `replace` equals
# uncalibrated KD at $\tau = T$ to the last bit, and `compose` equals plain KD from the temperature-scaled
# teacher (up to float rounding of $z/(T\tau)$ against $(z/T)/\tau$).

# %% tags=["appendix"]
T = float(teacher["temperature"])
replace = distill.make_loss("replace", cfg.tau, cfg.alpha, fitted_t=T)(z_s, y, z_t)
uncalibrated_at_T = distill.make_loss("uncalibrated", T, cfg.alpha)(z_s, y, z_t)
assert torch.equal(replace, uncalibrated_at_T), (replace, uncalibrated_at_T)
compose = distill.make_loss("compose", cfg.tau, cfg.alpha, fitted_t=T)(z_s, y, z_t)
scaled_teacher = distill.make_loss("uncalibrated", cfg.tau, cfg.alpha)(z_s, y, z_t / T)
assert torch.allclose(compose, scaled_teacher, rtol=1e-6), (compose, scaled_teacher)
print(f"T = {T:.3f}: replace {replace:.6f} = uncalibrated KD at tau = T {uncalibrated_at_T:.6f}")
print(f"compose {compose:.6f} = plain KD at tau = {cfg.tau:g} from the teacher's logits divided by T "
      f"{scaled_teacher:.6f}: its logits end up divided by T*tau = {T * cfg.tau:.2f}")

# %% [markdown] tags=["appendix"]
# ## Train the students

# %% tags=["appendix"]
plan = study.student_plan(cfg, study_dir)
report.notebook_note(f"{len(plan)} students planned")  # for the notebook's reader: the report has no log lines
students = study.distill_students(cfg, study_dir, log=log)
report.notebook_note(repr(log))

# %% [markdown] tags=["appendix"]
# ## Students at a glance
#
# Test accuracy per teacher and mode (mean over seeds). The next notebook puts intervals on these numbers.

# %% tags=["appendix"]
main = students[students["mode"].isin(["baseline", *cfg.modes])]
sizes = tables.teacher_sizes(study.results_table(cfg, study_dir))
tables.show(main.pivot_table(index="teacher", columns="mode", values="acc", aggfunc="mean"), sizes=sizes)

# %% tags=["appendix"]
tables.show(main.sort_values(["mode", "seed"]), sizes=sizes,
            columns=["teacher", "mode", "seed", "temperature", "kd_tau", "acc", "ece", "agreement", "kl_teacher"])

# %% [markdown] tags=["appendix"]
# ## Controls: a tuned temperature, and the teacher-temperature sweep
#
# Two questions a sceptical reader asks:
#
# 1. **Is calibration just a better temperature?** Earlier work claims that tuning the distillation temperature
#    $\tau$ does not close the gap between large and small teachers. The control trains uncalibrated KD at every
#    $\tau$ of `tau_grid` and picks, *on validation accuracy*, the best $\tau$ per teacher and the best single
#    $\tau$ shared by all teachers. Calibrated KD has to beat this, not just plain KD at $\tau = 4$.
# 2. **Does the student's optimum sit at the calibrated temperature?** The sweep divides the teacher's logits by
#    $m\tau$ for each multiplier $m$ of `teacher_temperature_grid` (the student's stay at $\tau$): $m = 1$ is
#    plain KD, $m = T$ is `compose`. If calibration is what matters, accuracy should peak near the NLL-fitted $T$
#    (the star).
#
# Both are parameters (`tau_grid`, `teacher_temperature_grid`, `control_seeds`); they add students to the
# same training loops, so they are paired with the main modes.

# %% tags=["appendix"]
students = study.results_table(cfg, study_dir).query("role == 'student'")  # with teacher facts
controls = analysis.tau_controls(students, cfg.tau)
if controls.empty:
    report.notebook_note("No tau controls in this profile: set tau_grid, e.g. --set tau_grid=1,2,8")
else:
    tables.show(controls, sizes=tables.teacher_sizes(students))
    tuned = analysis.tuned_tau_students(students, cfg.tau)
    tables.show(analysis.correlation(tuned, "teacher_params", "acc"),
                caption="Teacher size vs student accuracy at the validation-tuned tau")

# %% tags=["appendix"]
sweep = analysis.temperature_sweep(students)
if sweep.empty:
    report.notebook_note("No temperature sweep in this profile: set teacher_temperature_grid, e.g. --set teacher_temperature_grid=0.5,2,4")
else:
    tables.show(sweep, sizes=tables.teacher_sizes(students))
    plots.save(plots.temperature_sweep(sweep), figures, "teacher_temperature_sweep");

# %% [markdown] tags=["appendix"]
# ## Why $\tau^2$? (the derivation)
#
# Write $p = \mathrm{softmax}(z_t/\tau)$ and $q = \mathrm{softmax}(z_s/\tau)$. The gradient of
# $\mathrm{KL}(p\,\|\,q)$ with respect to a student logit is
# $$\frac{\partial\,\mathrm{KL}}{\partial z_{s,i}} = \frac{1}{\tau}\,(q_i - p_i).$$
# For large $\tau$, $q_i - p_i \approx \frac{1}{K\tau}\big((z_{s,i} - \bar z_s) - (z_{t,i} - \bar z_t)\big)$
# (first-order expansion of the softmax around the uniform distribution over $K$ classes), so the gradient
# scales as $1/\tau^2$. Multiplying the KD term by $\tau^2$ undoes that: the balance $\alpha$ between the
# soft and the hard term means the same thing at every $\tau$.
#
# ## What each mode changes
#
# - `uncalibrated`: teacher and student logits divided by $\tau$, KD weight $\alpha\tau^2$. Plain KD.
# - `compose`: the teacher's logits divided by $T\tau$ (its calibrated distribution, softened at $\tau$);
#   the student's by $\tau$; weight $\alpha\tau^2$. Only the *target* changes.
# - `replace`: KD at temperature $T$ for **both**: teacher and student logits divided by $T$, and the weight
#   becomes $\alpha T^2$. Two things change at once: the softening (T is usually far from $\tau = 4$) *and*
#   the KD weight. A gain of `replace` over `uncalibrated` at $\tau = 4$ can therefore come from a better
#   temperature, not from calibration: compare it with uncalibrated KD at a tuned $\tau$ (the control above).

# %% [markdown] tags=["notebook-only"]
# ## Try this
#
# 1. How much does calibration change what the student is taught, at $\tau = 1$ against $\tau = 4$? Before
#    training anything, compute it for the teacher loaded above, on images it never trained on (its
#    validation images; the tutorial's students learn on a transfer split that no teacher saw either):
#    `[teaching.compose_pull_difference(logits["val_logits"], T, tau) for tau in (1, 4, 8, 1e4)]`
#    (`from kdcal import teaching`): the size of the difference between the gradients that `compose` and
#    `uncalibrated` put on the student's logits. Then set `overrides = {"tau": 1.0}` and run all.
#    *Expected:* the difference is 8 to 10 times smaller at $\tau = 1$ than at $\tau = 4$, and from
#    $\tau = 4$ on it levels off instead of fading: at $\tau = 8$ within 5% of its value at $\tau = 4$
#    (above or below it, by teacher and seed) and at $\tau = 10^4$ still more than four fifths of it (in
#    `outputs/tutorial`, for every teacher and seed). Calibration changes the targets far less at
#    $\tau = 1$ than at the usual $\tau$, and nearly as much at a high one: the difference levels off
#    instead of fading.
#    Only the `uncalibrated` and `compose` students are new (notebook 5's `tau=1` cell trains the same ones,
#    so after it they are skipped too); the baseline and `replace` students are skipped, since neither
#    uses $\tau$: their run ids are unchanged.
#    Whether the students' accuracies differ more or less at $\tau = 1$ is another matter: with two seeds
#    their differences are mostly seed noise and can come out either way (notebook 5's `tau` cells).
# 2. Set `overrides = {"alpha": 0.0}`. *Expected:* every KD mode equals the baseline to the last digit (the
#    KD term has weight 0 and the students are paired). On a GPU the students of one teacher train packed
#    into one network, so they agree with the baseline up to float rounding only.
# 3. For one teacher, compare `replace`'s `kd_tau` with its `temperature`. *Expected:* equal: in `replace`
#    the fitted T *is* the distillation temperature.
# 4. **Write it yourself: the loss of every mode.** Starting from `hinton_kd_loss` above, complete this
#    function in a new cell and check it:
#
#    ```python
#    import torch.nn.functional as F
#    from kdcal import teaching
#
#    def my_kd_loss(mode, student_logits, teacher_logits, labels, tau, alpha, T):
#        """The loss of mode "uncalibrated", "compose" or "replace" (the table of modes at the top) with a
#        teacher whose fitted temperature is T."""
#        ...  # your code: which logits are divided by what, and the weight of the KD term
#
#    teaching.check_kd_loss(my_kd_loss)  # raises, naming the case, if it disagrees with kdcal.distill
#    print([float(my_kd_loss(m, z_s, z_t, y, cfg.tau, cfg.alpha, T)) for m in ("uncalibrated", "compose", "replace")])
#    ```
#
#    *Expected:* the check passes (three modes at three settings each); on the batch of "The loss, written
#    out" your three losses are `mine`, `compose` and `replace` of the cells above: in the committed tutorial
#    run (resnet20, seed 0, $\tau = 4$, $\alpha = 0.9$, T = 1.749) 16.19, 8.42 and 9.26.
#
# <details><summary>Answers</summary>
#
# 1. The soft term's gradient is $\alpha\tau(q - p)$. At $\tau = 1$ the factor $\tau$ is 1, and the two
#    targets, $\mathrm{softmax}(z_t)$ and $\mathrm{softmax}(z_t/T)$, differ less than they do at $\tau = 4$.
#    At a high $\tau$, the derivation above gives
#    $\tau(q_i - p_i) \approx \frac{1}{K}\big((z_{s,i} - \bar z_s) - (z_{t,i} - \bar z_t)/T'\big)$:
#    KD turns into matching the student's logits to the teacher's, and `compose` asks for
#    logits divided by T. That difference does not fade as $\tau$ grows; it tends to
#    $\frac{1}{K}\sum_i |z_{t,i} - \bar z_t|\,|1 - 1/T|$. The $\tau^2$ weight is what undoes the flattening
#    that a high $\tau$ brings: "a high $\tau$ already flattens the teacher, so calibration matters less"
#    forgets it. The run config of a `replace` student holds its temperature T, not $\tau$; a baseline's
#    holds no temperature at all.
# 2. Same initial weights, same batches, same loss: the trainings are identical.
# 3. By construction; that is why `replace` also changes the KD weight to $\alpha T^2$, and why it is
#    uncalibrated KD at $\tau = T$ (the check cell above).
# 4. `uncalibrated`: teacher and student logits divided by $\tau$, weight $\alpha\tau^2$; `compose`: the
#    teacher's by $T\tau$, the student's by $\tau$, weight $\alpha\tau^2$; `replace`: both by $T$, weight
#    $\alpha T^2$ (`teaching.kd_loss`). The usual slip is `replace` with the weight $\alpha\tau^2$: a loss
#    that is no longer uncalibrated KD at $\tau = T$.
# </details>
