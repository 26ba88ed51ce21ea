"""The benchmark's JSON rows, from a tiny run (a few steps: numbers meaningless, shape checked)."""
from __future__ import annotations

import json

import pytest

from kdcal import bench
from kdcal.models import forward_macs


@pytest.mark.slow  # an end-to-end run (the smoke study, a papermill or worker run): make test, not test-fast
def test_bench_json_rows(tmp_path, monkeypatch):
    """The peaks are fixed here (the shape of the rows is checked, and the matmul peak's 4096-square
    multiplies on a CPU took 14 s); test_bench_fill_quick_prints_json_rows measures one."""
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, device, seconds=1.0: 1e11)
    monkeypatch.setattr(bench, "conv_peak", lambda dtype, device, seconds=1.0: 1e11)
    path = tmp_path / "out" / "bench.json"
    bench.main(["--steps", "1", "--device", "cpu", "--workers", "0", "--quick-only",
                "--peak-seconds", "0.01", "--parallel", "2", "--json", str(path)])
    rows = json.loads(path.read_text())
    group = bench.quick_group_students()
    assert group >= 4
    cases = {(r["pair"], r["students"], r["path"]) for r in rows}
    pair = "resnet44 -> resnet8"
    assert cases == {(pair, 1, "separate"), (pair, 4, "separate"), (pair, 4, "packed"),
                     (pair, 4, "2 workers"), (pair, group, "separate"), (pair, group, "packed"),
                     (pair, group, "2 workers")}
    for r in rows:
        assert r["standard_img_s"] > 0 and r["kdcal_img_s"] > 0
        assert abs(r["speedup"] - r["kdcal_img_s"] / r["standard_img_s"]) < 1e-9 * r["speedup"]
        assert r["kdcal_img_s_all"] == pytest.approx(r["students"] * r["kdcal_img_s"])
        assert {"kdcal_pct_bf16_matmul", "kdcal_pct_bf16_conv", "batch"} <= set(r)
        assert r["kdcal_pct_bf16_conv"] == pytest.approx(r["kdcal_pct_bf16_matmul"])  # one peak


def test_bench_cases_include_the_cifar_pair():
    cases = bench.bench_cases()
    assert ("resnet56", "resnet20", 4) in {(c[1], c[2], c[5]) for c in cases}
    assert f"{cases[0][1]} -> {cases[0][2]}" == "resnet56 -> resnet20"


def test_bench_fill_quick_prints_json_rows(capsys):
    """`--fill --quick --json`: valid JSON alone on stdout, one row per path, images/s in all and
    the share of the bf16 peak measured in the same run."""
    bench.main(["--fill", "--quick", "--device", "cpu", "--json"])
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [r["path"] for r in rows] == ["separate", "packed-students", "packed-teachers"]
    assert "bf16 matmul peak" in out.err
    for r in rows:
        assert (r["arch"], r["image"], r["models"], r["batch"], r["steps"]) == \
            ("resnet8", "1x28x28", 2, 32, 2)
        assert r["img_s_all"] > 0 and r["bf16_matmul_peak_tflop_s"] > 0
        assert r["img_s_all"] == pytest.approx(2 * 2 * 32 / r["seconds"])
        assert r["img_s_per_model"] == pytest.approx(r["img_s_all"] / 2)
        flops = 6 * forward_macs("resnet8", 1, 10, 28) * r["img_s_all"]
        assert r["pct_bf16_matmul"] == pytest.approx(100 * flops / (r["bf16_matmul_peak_tflop_s"] * 1e12))


def test_bench_fill_rejects_a_size_below_one():
    with pytest.raises(SystemExit):
        bench.main(["--fill", "--device", "cpu", "--models", "0"])
