"""K models of one architecture trained as one packed network (grouped convolutions).

Member k owns chunk k of K, along dimension 0, of every parameter and buffer. The stem
convolution reads the shared input with K times the output channels (students of one group see
the same batch), or, with ``shared_input=False``, member k's own images in input channels chunk k
(teachers of several seeds: each its own split and batch order); every later convolution
has ``groups = K``, batch norm has K times the channels (its statistics, running ones included,
are per channel, hence per member) and the classifier is one batched product per member. So
the packed net computes what the K separate nets compute, up to the rounding of the grouped
kernels, and SGD (elementwise: momentum, weight decay, Nesterov) updates each member as it
would alone, provided the loss is the sum of the members' own losses. One forward and one
backward per batch serve all K members: small models are overhead-bound, which this saves.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class PackedLinear(nn.Module):
    """K linear layers on a packed feature vector: ``[B, K*in] -> [B, K, out]``."""

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k * out_features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = h.shape[0]
        h = h.reshape(b, self.k, self.in_features).transpose(0, 1)  # [K, B, in]
        w = self.weight.view(self.k, self.out_features, self.in_features)
        out = torch.baddbmm(self.bias.view(self.k, 1, self.out_features), h, w.transpose(1, 2))
        return out.transpose(0, 1)  # [B, K, out]


def _packed_module(name: str, mod: nn.Module, k: int, shared_input: bool = True) -> nn.Module | None:
    """The packed replacement of one leaf module, or None when it needs none."""
    if isinstance(mod, nn.Conv2d):
        stem = shared_input and name == "conv1"  # the root's first convolution reads the shared image
        return nn.Conv2d(mod.in_channels if stem else k * mod.in_channels, k * mod.out_channels,
                         mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                         mod.groups if stem else k * mod.groups, mod.bias is not None)
    if isinstance(mod, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * mod.num_features, mod.eps, mod.momentum, mod.affine,
                              mod.track_running_stats)
    if isinstance(mod, nn.Linear):
        return PackedLinear(k, mod.in_features, mod.out_features)
    if len(list(mod.children())) == 0 and any(True for _ in mod.parameters(recurse=False)):
        raise TypeError(f"cannot pack a {type(mod).__name__} ({name})")
    return None


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


class PackedModels:
    """The packed network of ``models`` (same architecture, as built by kdcal.models) and the
    maps between its state and the members' states (same keys; member k = chunk k).

    ``shared_input``: every member reads the same ``[B, C, H, W]`` batch; else the net reads
    ``[B, K*C, H, W]``, member k's images in channels ``k*C .. (k+1)*C - 1``."""

    def __init__(self, models: list[nn.Module], shared_input: bool = True):
        if not models:
            raise ValueError("nothing to pack")
        ref = models[0]
        shapes = {n: t.shape for n, t in ref.state_dict().items()}
        for m in models[1:]:
            if {n: t.shape for n, t in m.state_dict().items()} != shapes:
                raise ValueError("packed members must share one architecture")
        self.k = len(models)
        net = copy.deepcopy(ref).cpu()
        for name, mod in list(net.named_modules()):
            new = _packed_module(name, mod, self.k, shared_input) if name else None
            if new is not None:
                _set_module(net, name, new)
        self.net = net.to(dtype=next(ref.parameters()).dtype)
        self.load_members([m.state_dict() for m in models])

    def load_members(self, states: list[dict]) -> None:
        """Members' state dicts into the packed net (running stats and counters included)."""
        packed = {}
        for key, ref in self.net.state_dict().items():
            parts = [s[key] for s in states]
            packed[key] = parts[0] if ref.dim() == 0 else torch.cat([p.reshape(-1, *p.shape[1:])
                                                                     for p in parts])
        self.net.load_state_dict(packed)

    def member_state(self, k: int) -> dict:
        """Member k's state dict (own storage: safe to save or load into a separate model)."""
        return {key: (t.clone() if t.dim() == 0 else t.chunk(self.k)[k].clone())
                for key, t in self.net.state_dict().items()}

    def unpack_into(self, models: list[nn.Module]) -> None:
        for k, m in enumerate(models):
            m.load_state_dict(self.member_state(k))

    def member_optim_state(self, opt: torch.optim.Optimizer, k: int) -> dict:
        """Member k's share of an elementwise optimizer's state, as its own optimizer's state_dict
        (the parameter order of the packed net is the members' order)."""
        full = opt.state_dict()
        state = {i: {key: (v.chunk(self.k)[k].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                     for key, v in s.items()} for i, s in full["state"].items()}
        return {"state": state, "param_groups": copy.deepcopy(full["param_groups"])}

    def load_optim_states(self, opt: torch.optim.Optimizer, states: list[dict]) -> None:
        """Members' optimizer state dicts into the packed optimizer."""
        merged = {}
        for i, s in states[0]["state"].items():
            merged[i] = {key: (torch.cat([st["state"][i][key] for st in states])
                               if torch.is_tensor(v) and v.dim() > 0 else v) for key, v in s.items()}
        opt.load_state_dict({"state": merged, "param_groups": states[0]["param_groups"]})
