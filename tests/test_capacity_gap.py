"""analysis.capacity_gap: the design check that the no-KD student sits at least 2 points below
every teacher, paired within each seed (a seed's easy split lifts teacher and baseline alike)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdcal import analysis


def results(gaps: dict[str, float], seeds=4, base_params=5142):
    rows = []
    for s in range(seeds):
        split = 0.02 * s  # a seed's split moves every model of that seed together
        rows.append({"role": "student", "mode": "baseline", "arch": "resnet8x0.25", "seed": s,
                     "params": base_params, "acc": 0.80 + split})
        for i, (arch, gap) in enumerate(gaps.items()):
            rows.append({"role": "teacher", "mode": "teacher", "arch": arch, "seed": s,
                         "params": 30000 * 2 ** i,
                         "acc": 0.80 + split + gap / 100 + (0.001 if s % 2 else -0.001)})
    return pd.DataFrame(rows)


def test_the_gap_is_paired_within_seed_in_points_and_checked_on_its_mean():
    table = analysis.capacity_gap(results({"resnet8x0.625": 2.5, "resnet110": 0.4}))
    assert list(table["teacher"]) == ["resnet8x0.625", "resnet110"]  # smallest first
    assert table["gap"].tolist() == pytest.approx([2.5, 0.4])
    # pairing removes the seeds' common shift: the interval is the +-0.1 wobble's, not the 6 points'
    assert (table["gap_high"] - table["gap_low"]).max() < 0.5
    assert table["meets"].tolist() == [True, False]
    assert table["params_ratio"].iloc[0] == pytest.approx(30000 / 5142)
    assert (table["seeds"] == 4).all()


def test_a_seed_without_a_baseline_is_left_out_of_the_pairs():
    frame = results({"resnet8": 3.0})
    frame = frame[~((frame["mode"] == "baseline") & (frame["seed"] == 3))]
    table = analysis.capacity_gap(frame)
    assert table["seeds"].iloc[0] == 3 and table["gap"].iloc[0] == pytest.approx(3.0, abs=0.05)
    assert np.isclose(table["baseline_acc"].iloc[0], 100 * np.mean([0.80, 0.82, 0.84]))


def test_no_baseline_or_no_teacher_gives_an_empty_table():
    frame = results({"resnet8": 3.0})
    assert analysis.capacity_gap(frame[frame["mode"] != "baseline"]).empty
    assert analysis.capacity_gap(frame[frame["role"] != "teacher"]).empty


def test_every_column_by_hand_and_the_check_at_its_boundary():
    """Each column against numpy/scipy on the paired differences; ``meets`` holds at exactly the
    target (at least, not more than) and fails just above it; 2 points by default."""
    frame = results({"resnet8x0.75": 2.2, "resnet8": 3.1}, seeds=5)
    table = analysis.capacity_gap(frame)
    base = frame[frame["mode"] == "baseline"].set_index("seed")["acc"]
    for _, row in table.iterrows():
        teacher = frame[frame["arch"] == row["teacher"]].set_index("seed")["acc"]
        diff = 100 * (teacher - base).to_numpy()
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
        assert row["gap"] == pytest.approx(diff.mean(), rel=1e-12)
        assert (row["gap_low"], row["gap_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half),
                                                                  rel=1e-12)
        assert row["teacher_acc"] == pytest.approx(100 * teacher.mean(), rel=1e-12)
        assert row["baseline_acc"] == pytest.approx(100 * base.mean(), rel=1e-12)
        assert (row["student_params"], row["seeds"]) == (5142, 5)
        assert row["teacher_params"] == frame[frame["arch"] == row["teacher"]]["params"].iloc[0]
    gap = table["gap"].iloc[0]
    assert analysis.capacity_gap(frame, target=gap)["meets"].iloc[0]
    assert not analysis.capacity_gap(frame, target=np.nextafter(gap, np.inf))["meets"].iloc[0]
    assert analysis.CAPACITY_GAP == 2.0
    assert analysis.capacity_gap(results({"resnet8": 1.99}))["meets"].tolist() == [False]


def test_only_teachers_own_rows_and_the_baseline_count_and_the_table_is_exactly_its_columns():
    """Teacher variants (role teacher, another mode) and KD students (role student, another mode)
    change nothing; one seed suffices; teachers of equal size keep the order they came in."""
    gaps = {"resnet8x0.75": 2.2, "resnet8x0.5": 3.1, "resnet8": 4.0}
    frame = results(gaps, seeds=3)
    frame.loc[frame["arch"] == "resnet8x0.5", "params"] = 30000  # tied with resnet8x0.75
    plain = analysis.capacity_gap(frame)
    assert list(plain.columns) == ["teacher", "teacher_params", "student_params", "params_ratio",
                                   "teacher_acc", "baseline_acc", "gap", "gap_low", "gap_high",
                                   "seeds", "meets"]
    assert list(plain.index) == [0, 1, 2]
    assert list(plain["teacher"]) == ["resnet8x0.75", "resnet8x0.5", "resnet8"]  # not by name
    others = frame.assign(mode=np.where(frame["role"] == "teacher", "label_smoothing", "uncalibrated"),
                          acc=0.1)
    pd.testing.assert_frame_equal(analysis.capacity_gap(pd.concat([others, frame])), plain)
    one = analysis.capacity_gap(frame[frame["seed"] == 0])
    assert (one["seeds"] == 1).all() and one["teacher_params"].tolist() == [30000, 30000, 120000]
    assert one["student_params"].tolist() == [5142] * 3
