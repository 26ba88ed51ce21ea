"""The benchmark's JSON rows, from a tiny run (a few steps: numbers meaningless, shape checked)."""
from __future__ import annotations

import json

from kdcal import bench


def test_bench_json_rows(tmp_path):
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
        assert {"kdcal_pct_bf16_matmul", "kdcal_pct_bf16_conv", "batch"} <= set(r)


def test_bench_cases_include_the_cifar_pair():
    cases = bench.bench_cases()
    assert ("resnet56", "resnet20", 4) in {(c[1], c[2], c[5]) for c in cases}
    assert f"{cases[0][1]} -> {cases[0][2]}" == "resnet56 -> resnet20"
