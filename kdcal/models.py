"""CIFAR-style ResNets (He et al. 2016, section 4.2) in a small registry.

Depth ladder: resnet8 ... resnet110 (6n+2 layers, widths 16/32/64).
Width ladder: resnetDxK multiplies every width by K (resnet8x4, resnet20x2, ...); K may be a
fraction (resnet8x0.25: widths 4/8/16; resnet8x0.125: 2/4/8), for students clearly smaller than
every teacher and for ladders that reach below resnet8.
The stem adapts to the input's channels; global pooling makes any image size work.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

DEPTHS = (8, 14, 20, 32, 44, 56, 110)
# ascending; each a multiple of 1/16, so that every width is whole (0.625 x 16 = 10 channels)
WIDTHS = (0.125, 0.1875, 0.25, 0.5, 0.625, 0.75, 1, 1.5, 2, 3, 4, 5, 6)


NORMS = ("batch", "none")


def _norm(kind: str, planes: int) -> nn.Module:
    return nn.BatchNorm2d(planes) if kind == "batch" else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm: str = "batch"):
        super().__init__()
        bias = norm == "none"  # without a norm layer the conv needs its own shift
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=bias)
        self.bn1 = _norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=bias)
        self.bn2 = _norm(norm, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # Projection shortcut (option B): cheap and standard in KD benchmarks.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=bias), _norm(norm, planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, width: float = 1, in_channels: int = 3, num_classes: int = 10,
                 norm: str = "batch"):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        if float(16 * width) != int(16 * width) or width <= 0:
            raise ValueError(f"width must be a positive multiple of 1/16, got {width}")
        blocks = (depth - 2) // 6
        self.norm = norm
        widths = [int(16 * width), int(32 * width), int(64 * width)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=norm == "none")
        self.bn1 = _norm(norm, widths[0])
        layers, in_planes = [], widths[0]
        for stage, planes in enumerate(widths):
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride, norm))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if norm == "none":
            # Without batch norm the residual sum doubles the variance per block; starting each
            # residual branch at zero (as Fixup and "zero-init" residuals do) keeps it trainable.
            for block in layers:
                nn.init.zeros_(block.conv2.weight)
                nn.init.zeros_(block.conv2.bias)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    depth: int
    width: float


def _registry() -> dict[str, ArchSpec]:
    reg = {}
    for d in DEPTHS:
        for w in WIDTHS:
            name = f"resnet{d}" if w == 1 else f"resnet{d}x{w:g}"
            reg[name] = ArchSpec(name, d, w)
    return reg


ARCHS: dict[str, ArchSpec] = _registry()


def arch_names() -> list[str]:
    return list(ARCHS)


FAMILIES = ("depth", "width")


def family(name: str) -> str:
    """The teacher ladder an architecture belongs to, read from its name: ``resnetN`` is the
    depth ladder, ``resnetNxK`` the width ladder. Size claims never pool the two as one line."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    return "depth" if ARCHS[name].width == 1 else "width"


def build_model(name: str, in_channels: int = 3, num_classes: int = 10,
                norm: str = "batch") -> CifarResNet:
    """Build a registered architecture; unknown names list the valid ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    spec = ARCHS[name]
    return CifarResNet(spec.depth, spec.width, in_channels, num_classes, norm)


def count_params(model_or_name, in_channels: int = 3, num_classes: int = 10) -> int:
    model = model_or_name
    if isinstance(model_or_name, str):
        model = build_model(model_or_name, in_channels, num_classes)
    return sum(p.numel() for p in model.parameters())


def param_table(in_channels: int = 3, num_classes: int = 10) -> dict[str, int]:
    """Parameter counts of every registered architecture (for docs and ladders)."""
    return {n: count_params(n, in_channels, num_classes) for n in ARCHS}


def forward_macs(name: str, in_channels: int, num_classes: int, image_size: int) -> int:
    """Multiply-accumulates of one forward pass, counted from conv/linear shapes (for FLOP/s)."""
    model = build_model(name, in_channels, num_classes)
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs += out.numel() * k
        elif isinstance(mod, nn.Linear):
            macs += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, image_size, image_size))
    for h in handles:
        h.remove()
    return macs


