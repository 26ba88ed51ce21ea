"""Models of one architecture, each with its own data and seed, trained as one packed program.

The teachers of one architecture across a study's seeds share only their shape: each has its
own initialisation, split (``split_per_seed``), label-noise draw, batch order and augmentation.
Packed with ``shared_input=False`` (kdcal.packed), member k reads its own batch in input channels
chunk k, so one forward and one backward per step train all K, each on exactly the batches,
augmentation and loss that its separate :func:`kdcal.train.train_group` would give it: the
results equal separate training up to the rounding of grouped kernels (tested in float64).
Data and augmentation stay on the device: K batches are gathered, augmented in one gather and
normalised in one broadcast, each from its own seeded draws.

Each member's checkpoint has train_group's format for a group of one (the member's name, its
model, its share of the optimizer), so a packed run resumes a separate one and the reverse.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .data import (Splits, apply_augment, augment_draws, augment_generator,
                   batches_per_epoch, epoch_batches)
from .packed import PackedModels
from .store import atomic_torch_save, safe_torch_load
from .train import Engine, Recipe


@dataclass
class SeedMember:
    """One model of a packed program: its data, loss ``loss(logits, labels, None)`` and seed."""
    name: str  # its name in its checkpoint (train_group's member name)
    model: torch.nn.Module
    loss: Callable
    splits: Splits
    seed: int  # batch order and augmentation: train_group's ``seed``
    checkpoint: Path | None = None
    label: str = ""  # how log lines name it (default: name)
    study_seed: int | None = None  # the seed a failure message names (default: seed)


def train_packed_seeds(members: list[SeedMember], recipe: Recipe, engine: Engine,
                       desc: str = "train", log: Callable = print) -> list[dict]:
    """Train ``members`` as one packed program, each resumed from its own checkpoint; return,
    per member, ``{"model", "history", "failed", "steps"}`` (failed: the divergence message or
    None; steps: the optimizer steps it took).

    Members whose checkpoints stopped at different epochs (a kill between two members' writes,
    or a switch between packed and separate runs) train as one packed program per epoch."""
    _check(members, recipe)
    resumed = [_load(m, log, desc) for m in members]
    cohorts: dict[int, list[int]] = {}
    for i, state in enumerate(resumed):
        cohorts.setdefault(state["epoch"] if state else 0, []).append(i)
    results: list[dict] = [{}] * len(members)
    for start, idx in sorted(cohorts.items()):
        out = _train_cohort([members[i] for i in idx], [resumed[i] for i in idx], start, recipe,
                            engine, desc, log)
        for i, r in zip(idx, out):
            results[i] = r
    return results


def _check(members: list[SeedMember], recipe: Recipe) -> None:
    if not members:
        raise ValueError("nothing to train: no members")
    if recipe.mixup_alpha > 0:
        raise ValueError("packed seeds train without mixup (mixup_alpha=0); train mixup "
                         "teachers separately")
    first = members[0].splits
    for m in members[1:]:
        s = m.splits
        if len(s.train_y) != len(first.train_y) or s.train_x.shape[1:] != first.train_x.shape[1:]:
            raise ValueError(f"packed members need training sets of one size and image shape: "
                             f"{m.label or m.name} has {tuple(s.train_x.shape)}, "
                             f"{members[0].label or members[0].name} {tuple(first.train_x.shape)}")


def _load(member: SeedMember, log: Callable, desc: str) -> dict | None:
    """The member's checkpoint when it holds this member, else None (a fresh start)."""
    if member.checkpoint is None or not member.checkpoint.exists():
        return None
    state = safe_torch_load(member.checkpoint)
    if sorted(state["models"]) != [member.name]:
        return None
    log(f"[{desc}] {member.label or member.name} resumed from epoch {state['epoch']} "
        f"({member.checkpoint})")
    return state


def _train_cohort(members: list[SeedMember], resumed: list[dict | None], start_epoch: int,
                  recipe: Recipe, engine: Engine, desc: str, log: Callable) -> list[dict]:
    """Members that start at one epoch: one packed net, one optimizer, K batches per step."""
    k = len(members)
    nets = [engine.prepare(m.model) for m in members]
    history: list[list] = [[] for _ in members]
    failed: dict[int, str] = {}
    for i, (m, state) in enumerate(zip(members, resumed)):
        if state is not None:
            nets[i].load_state_dict(state["models"][m.name])
            history[i] = state["history"][m.name]
            if m.name in state["failed"]:
                failed[i] = state["failed"][m.name]
    packed = PackedModels(nets, shared_input=False)
    net = engine.prepare(packed.net)
    runner = engine.compiled(net)
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)
    if start_epoch > 0:
        packed.load_optim_states(opt, [s["optims"][m.name] for m, s in zip(members, resumed)])

    data = [m.splits for m in members]
    n_train, (c, h, w) = len(data[0].train_y), data[0].train_x.shape[1:]
    steps = batches_per_epoch(n_train, recipe.batch_size)
    batch = min(recipe.batch_size, n_train)  # epoch_batches' batches: all full
    n_seen = steps * batch  # the same every epoch
    pad = max(1, data[0].image_size // 8)
    mean = torch.stack([s.mean for s in data])  # [K, 1, C, 1, 1]: each member's own split
    std = torch.stack([s.std for s in data])
    last_epoch = recipe.stop_epoch or recipe.epochs
    bar = tqdm(total=last_epoch * steps, initial=start_epoch * steps, desc=desc, unit="batch",
               leave=False, mininterval=1.0)
    for epoch in range(start_epoch, last_epoch):
        if len(failed) == k:
            break
        t0 = time.perf_counter()
        active = [i for i in range(k) if i not in failed]
        net.train()
        loss_sum = torch.zeros(k, device=engine.device)
        correct = torch.zeros(k, device=engine.device, dtype=torch.long)
        gens = [augment_generator(m.seed, epoch) for m in members]
        orders = [epoch_batches(n_train, recipe.batch_size, m.seed, epoch, engine.device)
                  for m in members]
        for step in range(steps):
            idx = [order[step] for order in orders]
            x = torch.stack([s.train_x[i] for s, i in zip(data, idx)])  # [K, B, C, H, W] uint8
            y = torch.stack([s.train_y[i] for s, i in zip(data, idx)])  # [K, B]
            if recipe.augment:  # each member's own draws, one gather for all
                draws = [augment_draws(batch, pad, g) for g in gens]
                flip, dy, dx = (torch.cat(d) for d in zip(*draws))
                x = apply_augment(x.flatten(0, 1), pad, flip, dy, dx).view(k, batch, c, h, w)
            xf = (x.float().div_(255) - mean) / std  # Splits.normalize, per member
            xb = engine.inputs(xf.transpose(0, 1).reshape(batch, k * c, h, w))
            lr = recipe.lr_at(epoch, step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            with engine.autocast():
                out = runner(xb).float()  # [batch, member, class]
            total = 0
            for i in active:  # the sum's gradient is each member's own
                loss = members[i].loss(out[:, i], y[i], None)
                loss_sum[i] += loss.detach() * batch
                correct[i] += (out[:, i].detach().argmax(1) == y[i]).sum()
                total = total + loss
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            bar.update(1)
        seconds = time.perf_counter() - t0
        # one read per epoch; divided as train_group divides, so histories match it
        losses = [v / n_seen for v in loss_sum.tolist()]
        accs = [v / n_seen for v in correct.tolist()]
        for i in active:
            m = members[i]
            if not math.isfinite(losses[i]):
                named = m.seed if m.study_seed is None else m.study_seed
                failed[i] = f"{m.name} (seed {named}): loss became {losses[i]} at epoch {epoch + 1}"
                log(f"[{desc}] FAILED {failed[i]}")
                continue
            history[i].append({"epoch": epoch + 1, "loss": losses[i], "train_acc": accs[i],
                               "lr": lr, "seconds": seconds})
            log(f"[{desc}] {m.label or m.name} epoch {epoch + 1}/{recipe.epochs} loss "
                f"{losses[i]:.4f} train_acc {accs[i]:.4f} lr {lr:.4f} {seconds:.1f}s")
        for i, m in enumerate(members):
            if m.checkpoint is not None:  # train_group's format for a group of one
                atomic_torch_save({"epoch": epoch + 1, "models": {m.name: packed.member_state(i)},
                                   "optims": {m.name: packed.member_optim_state(opt, i)},
                                   "history": {m.name: history[i]},
                                   "failed": {m.name: failed[i]} if i in failed else {}},
                                  m.checkpoint)
    bar.close()
    packed.unpack_into(nets)
    # optimizer steps each member took (its finished epochs, a resumed run's included), as
    # train_group counts them
    return [{"model": nets[i], "history": history[i], "failed": failed.get(i),
             "steps": len(history[i]) * steps} for i in range(k)]
