"""The named profiles: each a dict of StudyConfig values that differ from the defaults.

:func:`kdcal.config.resolve` turns a profile (plus ``--set`` overrides) into a validated
StudyConfig; ``kdcal.config.PROFILES`` is this module's dict. The comments beside each profile
record why it is sized as it is (times, power): they are part of the design record.
"""
from __future__ import annotations

from .calibrators import CALIBRATORS

_ALL_CALIBRATORS = tuple(CALIBRATORS)

_CIFAR_RECIPE = dict(
    teacher_epochs=240, student_epochs=240, lr=0.05, student_lr=0.05, batch_size=64,
    schedule="step", milestones=[150, 180, 210], student_milestones=[150, 180, 210],
    weight_decay=5e-4, momentum=0.9, tau=4.0, alpha=0.9, augment=True, device="cuda",
    val_size=5000, seeds=[0, 1, 2, 3, 4], calibrators=list(_ALL_CALIBRATORS),
    tau_grid=[1.0, 2.0, 4.0, 8.0], teacher_temperature_grid=[0.5, 1.0, 2.0, 4.0],
    teacher_variants=["label_smoothing", "mixup", "early_stop"],
    teachers=["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet32x4"],
    student="resnet8",
)

PROFILES: dict[str, dict] = {
    # Synthetic data, seconds: the test suite's end-to-end run.
    "smoke": dict(dataset="synthetic", synthetic_train=600, synthetic_test=300, val_size=200,
                  teachers=["resnet8", "resnet14"], student="resnet8", seeds=[0, 1],
                  teacher_epochs=4, student_epochs=4, batch_size=64, lr=0.05, student_lr=0.05,
                  eval_batch_size=500, workers=2,  # the end-to-end tests run the parallel path
                  tau_grid=[2.0], teacher_temperature_grid=[2.0],
                  modes=["uncalibrated", "compose", "replace", "cal-histogram"],
                  teacher_variants=["label_smoothing", "mixup", "early_stop"]),
    # Real Fashion-MNIST on a 2-core CPU in minutes: the reference run committed in outputs/quick.
    "quick": dict(dataset="fmnist", train_size=3000, val_size=2000, test_size=0,
                  teachers=["resnet8", "resnet14", "resnet20", "resnet44"], student="resnet8",
                  seeds=[0, 1, 2], teacher_epochs=10, batch_size=64, lr=0.05,
                  student_epochs=8, student_batch_size=128, student_lr=0.1,
                  # the controls and the sweep, at their smallest: one more tau and one more
                  # teacher temperature, seed 0 only (the paper profiles run 4-point grids on all)
                  tau_grid=[2.0], teacher_temperature_grid=[2.0], control_seeds=[0],
                  workers=2),  # two 1-thread trainings side by side beat one 2-thread one
    "paper-fmnist": dict(dataset="fmnist", train_size=0, val_size=5000, device="cuda",
                         teachers=["resnet8", "resnet14", "resnet20", "resnet32", "resnet44",
                                   "resnet56", "resnet110"], calibrators=list(_ALL_CALIBRATORS),
                         tau_grid=[1.0, 2.0, 4.0, 8.0], teacher_temperature_grid=[0.5, 1.0, 2.0, 4.0],
                         teacher_variants=["label_smoothing", "mixup", "early_stop"],
                         student="resnet8", seeds=[0, 1, 2, 3, 4], teacher_epochs=60,
                         student_epochs=60, batch_size=128, augment=True),
    "paper-cifar10": dict(_CIFAR_RECIPE, dataset="cifar10"),
    "paper-cifar100": dict(_CIFAR_RECIPE, dataset="cifar100"),
}
_QUICK_LADDER = dict(teachers=["resnet8", "resnet14", "resnet20"], student="resnet8",
                     modes=["uncalibrated", "compose"])
PROFILES.update({
    # Notebook 05 on a 2-core CPU (under an hour): three teachers, two seeds, each cell one factor
    # moved away from a base whose teachers reproduce the paper's premise (the evidence recipe:
    # 30 epochs on 3,000 images, fitted to their training set, T well above 1); over-training is
    # a factor too (10 epochs: teachers that stop short of fitting).
    "regimes-quick": dict(PROFILES["quick"], **_QUICK_LADDER, seeds=[0, 1], test_size=5000,
                          teacher_epochs=30, split_per_seed=True,
                          tau_grid=[], teacher_temperature_grid=[], control_seeds=[],
                          regimes={"tau": [1.0, 2.0, 8.0], "label_noise": [0.2, 0.4],
                                   # train_size 6000 is left out for time: its teachers alone
                                   # took 8 of the 39 minutes of teacher training (2026-11-27)
                                   "train_size": [1000], "transfer_size": [3000],
                                   "teacher_epochs": [10],
                                   "teachers": [["resnet8", "resnet8x2", "resnet8x4"]],
                                   "teacher_weight_decay": [0.0], "teacher_norm": ["none"]}),
    # The full grid on a GPU, CIFAR-100 (100 classes) against Fashion-MNIST's 10 included.
    "regimes-full": dict(PROFILES["paper-fmnist"], train_size=40000, seeds=[0, 1, 2],
                         teachers=["resnet8", "resnet14", "resnet20", "resnet32", "resnet44",
                                   "resnet56"],
                         modes=["uncalibrated", "compose", "replace"],
                         regimes={"tau": [1.0, 2.0, 8.0], "label_noise": [0.2, 0.4],
                                  "train_size": [2000, 10000], "transfer_size": [10000],
                                  "teachers": [["resnet8", "resnet8x2", "resnet8x3", "resnet8x4"]],
                                  "teacher_weight_decay": [0.0], "teacher_norm": ["none"],
                                  "dataset": ["cifar100"]}),
    # A class on laptops: every notebook (01-05) end to end on real Fashion-MNIST in a few minutes
    # on 2 cores, into a scratch folder (the notebooks' default). Too small for verdicts: it is for
    # learning the pipeline and trying the exercises, not for evidence.
    # Issue 39: the lesson's premise, small. Teachers fit their 1,000 images (20 epochs, training
    # accuracy 0.999-1.0), both deeper than the student, so they are over-confident and more so the
    # larger; the students and the no-KD baseline learn on 1,000 images no teacher saw (transfer
    # split), all on one budget of 90 steps at the teachers' recipe (batch 64, lr 0.05). Tried on
    # 2026-12-07 (seeds 0/1): T resnet14 1.49/1.51, resnet20 1.75/1.70; uncalibrated KD minus
    # baseline +1.6/+1.6 points (mean of the two teachers; resnet14 +0.7/+4.0, resnet20
    # +2.6/-0.8). Fragile: 15 teacher epochs and 75 student steps gave KD 1.4-3.9 points *below*
    # the baseline. (Was: 1,500 images, resnet8 and resnet14, 4 epochs: T 0.63-0.82, KD 10-12
    # points below the baseline: the opposite of the lesson.)
    "tutorial": dict(dataset="fmnist", train_size=1000, val_size=1000, test_size=2000,
                     transfer_size=1000,
                     teachers=["resnet14", "resnet20"], student="resnet8", seeds=[0, 1],
                     teacher_epochs=20, batch_size=64, lr=0.05,
                     student_steps=90, student_batch_size=64, student_lr=0.05,
                     modes=["uncalibrated", "compose", "replace"],
                     regimes={"tau": [1.0]}),
    # The evidence run (issue 14): real Fashion-MNIST, teachers trained until they fit their
    # training set (the paper's premise: over-confident large teachers), 7 teachers over 20x in
    # parameters by depth and width (enough for the 5% level with teachers as units), 5
    # independent seeds (each its own split), the tau control that makes `replace` interpretable.
    # Sized for about 2 hours on 2 CPU cores; `--set device=cuda` for minutes on a GPU.
    "evidence": dict(dataset="fmnist", train_size=3000, val_size=2000, test_size=0,
                     split_per_seed=True,
                     teachers=["resnet8", "resnet14", "resnet20", "resnet8x2", "resnet32",
                               "resnet8x4", "resnet14x3"], student="resnet8",
                     seeds=[0, 1, 2, 3, 4], teacher_epochs=30, batch_size=64, lr=0.05,
                     student_epochs=15, student_batch_size=128, student_lr=0.1,
                     modes=["uncalibrated", "compose", "replace"], calibrators=["temperature"],
                     tau_grid=[2.0, 8.0], control_seeds=[], workers=2),
})
# Issue 22: a design where calibration can act. The evidence recipe (3,000 Fashion-MNIST images,
# teachers fitted for 30 epochs, the tau control 2, 4, 8 on every seed), with: a depth ladder of 6
# teachers (resnet8-56) beside the width ladder (resnet8, 8x2, 8x4); calibrators that are not a
# temperature distilled from (cal-vector, cal-matrix: fitted on validation, KD at the same tau
# as uncalibrated KD); the students and the no-KD baseline on the resnet8 teacher's own recipe
# and budget (batch 64, lr 0.05, 1,380 steps = 30 epochs x 46 batches, kdcal.budget). Two
# designs: students reuse the teachers' training images, or learn on 3,000 images no teacher
# saw (the transfer split; teachers identical, same run ids, in both).
#
# Time, alone on 2 CPU cores (workers=2, 1 thread each), from outputs/evidence/log.txt (seconds
# per epoch of 3,000 images at batch 64): resnet8 1.49, resnet14 2.87, resnet20 4.12, resnet32
# 5.68, resnet8x2 3.29, resnet8x4 7.53; resnet44 7.94 and resnet56 10.01 extrapolated on the
# depth line (+0.173 s per layer, least squares on resnet8-32). Per seed:
#   teachers  (1.49+2.87+4.12+5.68+7.94+10.01+3.29+7.53) s x 30 epochs            = 1,288 s
#   students  (8 teachers x (5 modes + 2 tau controls) + 1 baseline) = 57 resnet8s
#             x 30 epochs x 1.49 s                                                = 2,548 s
#   / 2 workers = 1,918 s, x 1.13 (the evidence run's wall clock over its summed epoch times:
#   49.5 min / 44.1 teachers, 35 min / 30.7 students)                            = 36 min.
# 4 seeds: 144 min, + about 3 min in notebook 02 (vector and matrix scaling fits: 0.5-1 s and
# 5-11 s per teacher, timed on outputs/quick's teacher logits on a loaded machine) = 147 min;
# 5 seeds would take 181 min, so 4 it is.
# resnet14x3 (10.3 s/epoch, 10 min a seed with its students) was dropped from the width ladder
# for the fourth seed. The transfer run costs the same plus a teacher forward on 3,000 images
# per teacher (seconds); started in a copy of the reuse run's folder it skips the teachers
# (about 97 min).
#
# Power (seeds are the unit of paired claims; t-test, 5% two-sided, 80% power, kdcal.inference):
# mde = (t_.975 + t_.80 at 3 df) / sqrt(4) x sd = 2.08 sd. At the evidence run's per-seed sds of
# paired differences (means over teachers, outputs/evidence/results.csv): compose - uncalibrated
# 0.27 pt -> mde 0.57 pt; compose - tuned tau 0.35 -> 0.74; replace - uncalibrated 0.56 -> 1.16;
# replace - tuned tau 0.63 -> 1.31. So 4 seeds decide effects of about 0.6-1.3 points; the 0.5-point
# margin of issue 21 is reached at 80% power only where sd <= 0.24 pt, and would need 5-15 seeds
# (3-9 hours) at those sds: smaller effects end `underpowered`, as they should. 3 seeds (with
# resnet14x3 kept, 126 min) would give 3.1 sd (0.84-1.94 pt): worse on every claim.
_EVIDENCE2 = dict(dataset="fmnist", train_size=3000, val_size=2000, test_size=0,
                  split_per_seed=True,
                  teachers=["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
                            "resnet8x2", "resnet8x4"], student="resnet8",
                  seeds=[0, 1, 2, 3], teacher_epochs=30, batch_size=64, lr=0.05,
                  student_epochs=30, student_steps=1380, student_batch_size=64, student_lr=0.05,
                  modes=["uncalibrated", "compose", "replace", "cal-vector", "cal-matrix"],
                  calibrators=["temperature", "vector", "matrix"],
                  tau_grid=[2.0, 8.0], control_seeds=[], workers=2)
PROFILES["evidence-reuse"] = dict(_EVIDENCE2)
PROFILES["evidence-transfer"] = dict(_EVIDENCE2, transfer_size=3000)
for _name in ("quick", "paper-fmnist", "paper-cifar10", "paper-cifar100", "tutorial", "regimes-full"):
    PROFILES[_name]["split_per_seed"] = True  # each seed an independent rerun, split included
# The issue-22 evidence design at full scale on one GPU (issue 23): all of Fashion-MNIST (55,000
# training images, 5,000 for validation), the same depth ladder (resnet8-56) and width ladder
# (resnet8, 8x2, 8x4), modes, calibrators and tau control; the students and the no-KD baseline on
# the resnet8 teacher's budget (10 epochs x 107 batches of 512 = 1,070 steps). Sized for one seed
# per 8-minute command on one H200, from its eager epoch times at batch 512 (BENCHMARKS.md, 55,000
# images: resnet8 0.7 s, resnet20 1.5 s, resnet44 2.1-2.6 s, a packed group of 5 students 1.0-1.1
# s; resnet14, 32 and 56 interpolated on depth, 1.1, 2.0 and 2.9 s; resnet8x2 and 8x4 estimated
# at 0.8 and 1.2 s): teachers 12.5 s and the 8 groups of 7 students plus the baseline about 11 s
# an epoch, so 10 epochs train in about 240 s; with the notebooks, calibration and report about
# 340 s. scripts/gpu_evidence.sh grows it seed by seed (`--set seeds=[S]`); a run of several
# seeds packs each architecture's teachers (pack_teachers=auto on CUDA).
PROFILES["gpu-evidence"] = dict(
    _EVIDENCE2, train_size=0, val_size=5000, device="cuda", workers=0, eval_batch_size=5000,
    seeds=list(range(12)), teacher_epochs=10, batch_size=512, lr=0.2,
    # the resnet8 teacher's budget as epochs (same images and batch): no step budget needed
    student_epochs=10, student_steps=0, student_batch_size=512, student_lr=0.2)
# Issue 36, the confirmatory transfer study, fixed by docs/preregistration-confirm-transfer.md
# (amended once, before any seed of its answer: see there). The evidence-transfer recipe (3,000
# training images, 3,000 transfer images no teacher saw, teachers 30 epochs at batch 64, the
# students and the no-KD baseline on the same 1,380 steps) with what that study lacked:
# - a capacity gap: the student resnet8x0.125 (1,384 parameters, widths 2/4/8) is a fourteenth of
#   the smallest teacher (resnet8x0.5, 19,810). The first seed under the first design (student
#   resnet8x0.25, 5,142 parameters; resnet110 in the ladder; 2026-12-07), read for its design
#   checks only: the resnet8x0.25 baseline 82.30%, 2.2 points below resnet8x0.75 (84.47%) and 0.4
#   below resnet110 (82.74%: 20% training accuracy after its first epoch at lr 0.05, then below
#   every other teacher, on validation too). On the same seed: baselines resnet8x0.1875 81.59%,
#   resnet8x0.125 78.45%; teacher resnet8x0.5 83.85%. So resnet110 leaves, resnet8x0.5 joins (the
#   span, and the power of the size slopes, that resnet110 took with it), and the student is
#   resnet8x0.125: 5.4-8.5 points below every teacher on that seed;
# - a ladder of 15 teachers in two families over 7.12 doublings (19,810 to 2,755,114): depth
#   resnet8-56 (6, 3.5 doublings), width resnet8x0.5-x6 at depth 8 (9, 7.1 doublings);
# - modes uncalibrated, compose, replace, cal-vector at tau 4 as before (cal-matrix dropped), the
#   tau-1 arms uncalibrated@1 and compose@1 (kdcal.distill.split_mode), and the tuned-tau control
#   over tau 1, 2, 4, 8, 16 (tau 1 is the uncalibrated@1 arm itself, not trained twice);
# - 14 seeds, from scripts/power_confirm.py at evidence-transfer's variances and at the family
#   level 0.05/15: claim 3 and each calibrated mode's own slope 90-100% at their observed slopes
#   (numbers in the preregistration).
# Time, one seed alone on 2 cores: the first design's seed took 61 min (teachers 43 min,
# calibration 1.4, students 16, analysis 0.5); this one, without resnet110 (11 min of one worker)
# and with resnet8x0.5 (1 min), about 57 min. pack_students=on (never part of run ids) packs each
# teacher's 9 students into one network on the CPU too.
PROFILES["confirm-transfer"] = dict(
    _EVIDENCE2, transfer_size=3000, student="resnet8x0.125",
    teachers=["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
              "resnet8x0.5", "resnet8x0.625", "resnet8x0.75", "resnet8x1.5", "resnet8x2",
              "resnet8x3", "resnet8x4", "resnet8x5", "resnet8x6"],
    modes=["uncalibrated", "compose", "replace", "cal-vector", "uncalibrated@1", "compose@1"],
    calibrators=["temperature", "vector"], tau_grid=[1.0, 2.0, 4.0, 8.0, 16.0],
    seeds=list(range(14)), pack_students="on")
