"""One training loop for every model of the study: teachers (cross-entropy) and students (KD).

Several models can train together on the very same batches (all students of one teacher and
seed): the batch order, augmentation and initialisation are seeded, so students differ only by
their loss and the comparison between distillation modes is paired. Data stay uint8 tensors on
the device; per-batch statistics stay on the device too and are read once per epoch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .data import Splits, augment_batch, augment_generator, epoch_batches
from .packed import PackedModels
from .store import atomic_torch_save, safe_torch_load


PACK_CHOICES = ("auto", "on", "off")
# torch.compile's modes; reduce-overhead adds CUDA graphs (one replay per step instead of a launch
# per kernel), which only a GPU has
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


class NonFiniteLoss(RuntimeError):
    """Training diverged; the message names the model, seed and epoch."""


@dataclass
class Recipe:
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list = field(default_factory=list)
    gamma: float = 0.1
    augment: bool = False
    mixup_alpha: float = 0.0  # > 0: mixup (Zhang et al. 2018) with Beta(alpha, alpha) weights
    stop_epoch: int = 0  # > 0: stop there, on the full run's schedule (an early-stopped model)

    def lr_at(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        if self.schedule == "cosine":
            progress = (epoch * steps_per_epoch + step) / (self.epochs * steps_per_epoch)
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


@dataclass
class Engine:
    """How to run (not what to learn): device, mixed precision, memory format, compile, and
    whether the members of a group train as one packed network (kdcal.packed): "on", "off", or
    "auto" (packed on CUDA; on a CPU the separate loops measured faster, see BENCHMARKS.md).
    Packing changes results in the last bits only (grouped kernels round differently), so a
    results table is byte-identical between runs of one setting, not across settings."""
    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None
    channels_last: bool = True
    compile: bool = False
    pack_students: str = "auto"
    compile_mode: str = "default"  # torch.compile's mode, when compile is on

    def packs(self, n_members: int) -> bool:
        """Whether a group of ``n_members`` trains packed."""
        return packs(self.pack_students, self.device, n_members, "pack_students")

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def compiled(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` itself, or compiled in this engine's mode when compile is on."""
        return torch.compile(net, mode=self.compile_mode) if self.compile else net

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def packs(setting: str, device: torch.device, n_members: int, name: str = "pack_students") -> bool:
    """Whether ``n_members`` models train as one packed network under ``setting`` (the config
    key ``name``): "on", "off", or "auto" = on CUDA only."""
    if setting not in PACK_CHOICES:
        raise ValueError(f"unknown {name} {setting!r}; valid: {', '.join(PACK_CHOICES)}")
    if n_members < 2 or setting == "off":
        return False
    return setting == "on" or device.type == "cuda"


def _beta(gen: torch.Generator, alpha: float) -> float:
    """A Beta(alpha, alpha) draw from a seeded generator (Johnk's algorithm), so that a resumed
    mixup run draws the same weights; torch.distributions cannot take a generator."""
    while True:
        u = torch.rand(2, generator=gen, dtype=torch.float64) ** (1.0 / alpha)
        total = float(u.sum())
        if 0 < total <= 1.0:
            return float(u[0]) / total


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_engine(device: str = "cpu", amp: str = "auto", channels_last: bool = True,
                compile: bool = False, pack_students: str = "auto",
                compile_mode: str = "default") -> Engine:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if amp == "bf16":
        dtype = torch.bfloat16
    elif amp == "auto":
        fast = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_bf16()
        dtype = torch.bfloat16 if fast else None
    else:
        dtype = None
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile_mode {compile_mode!r}; valid: {', '.join(COMPILE_MODES)}")
    engine = Engine(dev, dtype, channels_last, compile, pack_students, compile_mode)
    engine.packs(2)  # an unknown pack_students fails here, before any work
    return engine


@dataclass
class Member:
    """A model in a training group and its loss ``loss(logits, labels, teacher_logits)``."""
    model: torch.nn.Module
    loss: Callable
    needs_teacher: bool = False
    # this member's own teacher targets, one row per training image (a calibrated teacher's
    # distribution as logits); used instead of the shared teacher logits
    teacher_logits: torch.Tensor | None = None


@torch.inference_mode()
def predict(model: torch.nn.Module, x_uint8: torch.Tensor, splits: Splits, engine: Engine,
            batch_size: int = 1000) -> torch.Tensor:
    """Float32 logits of ``model`` on uint8 images, in eval mode, on the CPU."""
    model.eval()
    out = []
    for start in range(0, len(x_uint8), batch_size):
        xb = engine.inputs(splits.normalize(x_uint8[start:start + batch_size].to(engine.device)))
        with engine.autocast():
            out.append(model(xb).float())
    return torch.cat(out).cpu()


def train_group(members: dict[str, Member], splits: Splits, recipe: Recipe, seed: int,
                engine: Engine, checkpoint: Path | None = None, desc: str = "train",
                teacher: torch.nn.Module | None = None,
                teacher_logits: torch.Tensor | None = None, log: Callable = print,
                study_seed: int | None = None) -> dict:
    """Train ``members`` together; resume from ``checkpoint``; return per-member history, failures
    and optimizer steps.

    Teacher outputs come from ``teacher_logits`` (one row per training image; used when the
    inputs are not augmented) or from a forward of ``teacher`` on each augmented batch.
    """
    names = list(members)
    nets = {n: engine.prepare(m.model) for n, m in members.items()}
    sgd = dict(lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
               nesterov=recipe.momentum > 0)
    packed = PackedModels([nets[n] for n in names]) if engine.packs(len(names)) else None
    if packed is not None:  # one network, one optimizer: SGD is elementwise, so per member
        packed_net = engine.prepare(packed.net)
        runner = engine.compiled(packed_net)
        packed_opt = torch.optim.SGD(packed_net.parameters(), **sgd)
        opts = {}
    else:
        runners = {n: engine.compiled(net) for n, net in nets.items()}
        opts = {n: torch.optim.SGD(net.parameters(), **sgd) for n, net in nets.items()}
    history = {n: [] for n in names}
    failed: dict[str, str] = {}
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        state = safe_torch_load(checkpoint)
        if sorted(state["models"]) == sorted(names):
            if packed is not None:
                packed.load_members([state["models"][n] for n in names])
                packed.load_optim_states(packed_opt, [state["optims"][n] for n in names])
            else:
                for n in names:
                    nets[n].load_state_dict(state["models"][n])
                    opts[n].load_state_dict(state["optims"][n])
            history, failed, start_epoch = state["history"], state["failed"], state["epoch"]
            log(f"[{desc}] resumed from epoch {start_epoch} ({checkpoint})")
    if any(m.needs_teacher for m in members.values()) and teacher is None and teacher_logits is None:
        raise ValueError("a distillation member needs teacher or teacher_logits")
    if teacher is not None:
        teacher = engine.prepare(teacher).eval()
        teacher_logits = None if recipe.augment else teacher_logits
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(engine.device)
    own_targets = {n: m.teacher_logits.to(engine.device) for n, m in members.items()
                   if m.teacher_logits is not None}
    if own_targets and recipe.augment:
        raise ValueError("per-member teacher targets need un-augmented inputs (augment=False)")

    n_train = len(splits.train_y)
    batches = epoch_batches(n_train, recipe.batch_size, seed, 0)
    steps, n_seen = len(batches), sum(len(b) for b in batches)  # the same every epoch
    pad = max(1, splits.image_size // 8)
    last_epoch = recipe.stop_epoch or recipe.epochs
    bar = tqdm(total=last_epoch * steps, initial=start_epoch * steps, desc=desc,
               unit="batch", leave=False, mininterval=1.0)
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        active = [n for n in names if n not in failed]
        for n in active:
            nets[n].train()
        if packed is not None:
            packed_net.train()
        loss_sum = {n: torch.zeros((), device=engine.device) for n in active}
        correct = {n: torch.zeros((), device=engine.device, dtype=torch.long) for n in active}
        gen = augment_generator(seed, epoch)
        for step, idx in enumerate(epoch_batches(n_train, recipe.batch_size, seed, epoch, engine.device)):
            xb_u8, yb = splits.train_x[idx], splits.train_y[idx]
            if recipe.augment:
                xb_u8 = augment_batch(xb_u8, pad, gen)
            xb = engine.inputs(splits.normalize(xb_u8))
            mix = None
            if recipe.mixup_alpha > 0:  # one weight and pairing per batch, seeded per step
                lam = _beta(gen, recipe.mixup_alpha)
                perm = torch.randperm(len(yb), generator=gen).to(yb.device)
                xb = lam * xb + (1 - lam) * xb[perm]
                mix = (lam, perm)
            tb = None
            if teacher_logits is not None:
                tb = teacher_logits[idx]
            elif teacher is not None:
                with torch.no_grad(), engine.autocast():
                    tb = teacher(xb).float()
            lr = recipe.lr_at(epoch, step, steps)

            def member_loss(n, out):
                target = own_targets[n][idx] if n in own_targets else tb
                loss = members[n].loss(out, yb, target)
                if mix is not None:
                    loss = mix[0] * loss + (1 - mix[0]) * members[n].loss(out, yb[mix[1]], target)
                loss_sum[n] += loss.detach() * len(yb)
                correct[n] += (out.detach().argmax(1) == yb).sum()
                return loss

            if packed is not None:
                for group in packed_opt.param_groups:
                    group["lr"] = lr
                with engine.autocast():
                    out = runner(xb).float()  # [batch, member, class]
                # the sum's gradient is each member's own; a failed member's share is left out
                total = sum(member_loss(n, out[:, k]) for k, n in enumerate(names) if n in active)
                packed_opt.zero_grad(set_to_none=True)
                total.backward()
                packed_opt.step()
            else:
                for n in active:
                    for group in opts[n].param_groups:
                        group["lr"] = lr
                    with engine.autocast():
                        out = runners[n](xb).float()
                    loss = member_loss(n, out)
                    opts[n].zero_grad(set_to_none=True)
                    loss.backward()
                    opts[n].step()
            bar.update(1)
        seconds = time.perf_counter() - t0
        for n in active:
            mean_loss = float(loss_sum[n]) / n_seen
            acc = float(correct[n]) / n_seen
            if not math.isfinite(mean_loss):
                named = seed if study_seed is None else study_seed  # the seed a user knows
                failed[n] = f"{n} (seed {named}): loss became {mean_loss} at epoch {epoch + 1}"
                log(f"[{desc}] FAILED {failed[n]}")
                continue
            history[n].append({"epoch": epoch + 1, "loss": mean_loss, "train_acc": acc,
                               "lr": lr, "seconds": seconds})
            log(f"[{desc}] {n} epoch {epoch + 1}/{recipe.epochs} loss {mean_loss:.4f} "
                f"train_acc {acc:.4f} lr {lr:.4f} {seconds:.1f}s")
        if checkpoint is not None:
            if packed is not None:  # the members' own states: checkpoints resume either way
                models = {n: packed.member_state(k) for k, n in enumerate(names)}
                optims = {n: packed.member_optim_state(packed_opt, k) for k, n in enumerate(names)}
            else:
                models = {n: nets[n].state_dict() for n in names}
                optims = {n: opts[n].state_dict() for n in names}
            atomic_torch_save({"epoch": epoch + 1, "models": models, "optims": optims,
                               "history": history, "failed": failed}, checkpoint)
        if len(failed) == len(names):
            break
    bar.close()
    if packed is not None:
        packed.unpack_into([nets[n] for n in names])
    # optimizer steps each member took (its finished epochs, a resumed run's included): the
    # training budget results.csv reports
    return {"history": history, "failed": failed, "models": nets,
            "steps": {n: len(history[n]) * steps for n in names}}
