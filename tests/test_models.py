"""The ResNet registry: names, output shapes, parameter counts from first principles, MACs."""
from __future__ import annotations

import math

import pytest
import torch

from kdcal import models
from kdcal.models import DEPTHS, WIDTHS, arch_names, build_model, count_params, forward_macs


# ---------------------------------------------------------------- independent formulas
def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k  # bias=False everywhere in the CIFAR ResNet


def _bn(c: int) -> int:
    return 2 * c  # weight and bias (running stats are buffers, not parameters)


def expected_params(depth: int, width: float, in_channels: int, num_classes: int) -> int:
    """He et al. CIFAR ResNet (6n+2) with projection (1x1 conv + BN) shortcuts, written out."""
    n = (depth - 2) // 6
    widths = [round(16 * width), round(32 * width), round(64 * width)]
    total = _conv(in_channels, widths[0], 3) + _bn(widths[0])  # stem
    cin = widths[0]
    for stage, planes in enumerate(widths):
        for b in range(n):
            stride = 2 if stage > 0 and b == 0 else 1
            total += _conv(cin, planes, 3) + _bn(planes) + _conv(planes, planes, 3) + _bn(planes)
            if stride != 1 or cin != planes:
                total += _conv(cin, planes, 1) + _bn(planes)
            cin = planes
    return total + cin * num_classes + num_classes  # fc weight + bias


def expected_macs(depth: int, width: int, in_channels: int, num_classes: int, size: int) -> int:
    """Multiply-accumulates of convs (out pixels x out channels x in channels x k x k) and the fc."""
    n = (depth - 2) // 6
    widths = [16 * width, 32 * width, 64 * width]
    macs = size * size * widths[0] * in_channels * 9
    cin, s = widths[0], size
    for stage, planes in enumerate(widths):
        for b in range(n):
            stride = 2 if stage > 0 and b == 0 else 1
            s_out = math.ceil(s / stride)
            macs += s_out * s_out * planes * cin * 9 + s_out * s_out * planes * planes * 9
            if stride != 1 or cin != planes:
                macs += s_out * s_out * planes * cin
            cin, s = planes, s_out
    return macs + cin * num_classes


# ---------------------------------------------------------------- registry
def test_registry_has_depth_and_width_ladders():
    names = set(arch_names())
    for d in (8, 14, 20, 32, 44, 56, 110):
        assert f"resnet{d}" in names
    for name in ("resnet8x2", "resnet8x4", "resnet20x2", "resnet32x4", "resnet110x4", "resnet14x3"):
        assert name in names
    # fractional widths (issue 36: a student clearly smaller than every teacher), spelt with :g
    for name in ("resnet8x0.25", "resnet8x0.5", "resnet8x0.625", "resnet8x1.5", "resnet8x6"):
        assert name in names
    assert models.ARCHS["resnet8x0.25"].width == 0.25 and models.family("resnet8x0.25") == "width"
    assert build_model("resnet8x0.625").conv1.out_channels == 10
    assert len(names) == len(DEPTHS) * len(WIDTHS)
    # the plain name is width 1; no "x1" alias
    assert "resnet8x1" not in names
    assert models.ARCHS["resnet32x4"].depth == 32 and models.ARCHS["resnet32x4"].width == 4


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_model("resnet9")
    msg = str(info.value)
    assert "resnet9" in msg
    for name in ("resnet8", "resnet110", "resnet32x4"):
        assert name in msg
    with pytest.raises(ValueError):
        count_params("wrn28x10")


def test_bad_depth_rejected():
    with pytest.raises(ValueError, match="6n\\+2"):
        models.CifarResNet(depth=9)


def test_width_must_give_whole_channels():
    with pytest.raises(ValueError, match="multiple of 1/16"):
        models.CifarResNet(depth=8, width=0.3)


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", ["resnet8", "resnet14x2"])
@pytest.mark.parametrize("in_channels,size,classes", [(1, 28, 10), (3, 32, 100)])
def test_output_shape(name, in_channels, size, classes):
    torch.manual_seed(0)
    model = build_model(name, in_channels, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(3, in_channels, size, size))
    assert out.shape == (3, classes)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_stem_adapts_to_channels():
    assert build_model("resnet8", in_channels=1).conv1.in_channels == 1
    assert build_model("resnet8", in_channels=3).conv1.in_channels == 3
    assert build_model("resnet8", num_classes=100).fc.out_features == 100


# ---------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", ["resnet8", "resnet14", "resnet20", "resnet32", "resnet56",
                                  "resnet110", "resnet8x2", "resnet8x4", "resnet20x3", "resnet32x4",
                                  "resnet8x0.25", "resnet8x0.625", "resnet14x1.5"])
@pytest.mark.parametrize("in_channels,classes", [(3, 10), (1, 10), (3, 100)])
def test_param_count_matches_formula(name, in_channels, classes):
    spec = models.ARCHS[name]
    assert count_params(name, in_channels, classes) == \
        expected_params(spec.depth, spec.width, in_channels, classes)


def test_param_count_known_value_and_model_argument():
    # the formula itself, on the classic ResNet-20 (0.27M parameters in He et al.)
    assert expected_params(20, 1, 3, 10) == 272_474
    model = build_model("resnet20", 3, 10)
    assert count_params(model) == count_params("resnet20", 3, 10) == 272_474


def test_param_counts_increase_with_depth_and_width():
    table = models.param_table(in_channels=1, num_classes=10)
    for w in WIDTHS:
        counts = [table[f"resnet{d}" if w == 1 else f"resnet{d}x{w}"] for d in DEPTHS]
        assert counts == sorted(counts) and len(set(counts)) == len(counts)
    for d in DEPTHS:
        counts = [table[f"resnet{d}" if w == 1 else f"resnet{d}x{w}"] for w in WIDTHS]
        assert counts == sorted(counts) and len(set(counts)) == len(counts)


# ---------------------------------------------------------------- MACs
def test_forward_macs_positive_and_grows_with_depth():
    macs = [forward_macs(f"resnet{d}", 1, 10, 16) for d in (8, 14, 20)]
    assert all(m > 0 for m in macs)
    assert macs[0] < macs[1] < macs[2]
    assert forward_macs("resnet8x2", 1, 10, 16) > macs[0]


@pytest.mark.parametrize("name,in_channels,size", [("resnet8", 1, 28), ("resnet14x2", 3, 32),
                                                   ("resnet8", 3, 15)])
def test_forward_macs_matches_formula(name, in_channels, size):
    spec = models.ARCHS[name]
    assert forward_macs(name, in_channels, 10, size) == \
        expected_macs(spec.depth, spec.width, in_channels, 10, size)
