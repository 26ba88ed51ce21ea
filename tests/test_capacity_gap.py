"""analysis.capacity_gap: the design check that the no-KD student sits at least 2 points below
every teacher, paired within each seed (a seed's easy split lifts teacher and baseline alike)."""
import numpy as np
import pandas as pd
import pytest

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
