"""Distillation throughput: a standard PyTorch KD loop against kdcal's engine, side by side.

    python -m kdcal.bench [--steps N] [--device cpu|cuda] [--quick-only]

The standard loop is what most KD code does: a torch DataLoader over PIL images with torchvision
transforms, batch 64, and for every student its own pass over the data with a teacher forward
per batch. kdcal's engine keeps uint8 data on the device, augments there in batches, runs one
teacher forward per batch for all the students of that teacher, and uses bf16 autocast and
channels_last where the hardware has them. Both train the same models with the same SGD recipe.
"""
from __future__ import annotations

import argparse
import platform
import resource
import time
from dataclasses import replace

import torch

from .data import Splits, make_synthetic, make_splits
from .distill import kd_loss
from .models import build_model, forward_macs
from .train import Member, Recipe, make_engine, train_group


def matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """Best measured FLOP/s of square matmuls (several sizes): the practical ceiling that the
    training FLOP/s is compared to. On a CPU with a variable clock it is itself a noisy number."""
    sizes = (1024, 2048, 4096) if device.type == "cpu" else (4096, 8192)
    return max(_matmul_flops(dtype, device, n, seconds) for n in sizes)


def _matmul_flops(dtype: torch.dtype, device: torch.device, n: int, seconds: float) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


class _PilDataset(torch.utils.data.Dataset):
    """Images served one by one as PIL, like torchvision's CIFAR10 does."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, transform):
        self.x = x_uint8.permute(0, 2, 3, 1).numpy()
        self.y = y.numpy()
        self.transform = transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        img = self.x[i]
        img = Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img)
        return self.transform(img), int(self.y[i])


def standard_loop(splits: Splits, teacher_arch: str, student_arch: str, students: int, steps: int,
                  device: torch.device, batch_size: int = 64, workers: int = 2) -> float:
    """Seconds per student-image of the usual loop: each student its own pass and teacher forwards."""
    import torchvision.transforms as T

    size = splits.image_size
    mean = splits.mean.flatten().cpu().tolist()
    std = splits.std.flatten().cpu().tolist()
    transform = T.Compose([T.RandomCrop(size, padding=max(1, size // 8)), T.RandomHorizontalFlip(),
                           T.ToTensor(), T.Normalize(mean, std)])
    ds = _PilDataset(splits.train_x.cpu(), splits.train_y.cpu(), transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    teacher = build_model(teacher_arch, splits.in_channels, splits.num_classes).to(device).eval()
    total_time, total_images = 0.0, 0
    for _ in range(students):
        student = build_model(student_arch, splits.in_channels, splits.num_classes).to(device)
        opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        it = iter(loader)
        for step in range(steps + 3):
            if step == 3:  # warm-up done
                _sync(device)
                t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                it = iter(loader)
                x, y = next(it)
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                t = teacher(x)
            s = student(x)
            loss = kd_loss(s, t, y, tau=4.0, alpha=0.9)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _sync(device)
        total_time += time.perf_counter() - t0
        total_images += steps * batch_size
    return total_time / total_images


def kdcal_engine(splits: Splits, teacher_arch: str, student_arch: str, students: int, steps: int,
                 device: torch.device, batch_size: int = 64, amp: str = "auto") -> float:
    """Seconds per student-image of kdcal's train_group (one teacher forward per batch for all)."""
    engine = make_engine(device.type, amp)
    teacher = build_model(teacher_arch, splits.in_channels, splits.num_classes)
    members = {f"s{i}": Member(build_model(student_arch, splits.in_channels, splits.num_classes),
                               lambda s, y, t: kd_loss(s, t, y, 4.0, 0.9), True)
               for i in range(students)}
    # A warm-up epoch of three batches, then the timed epoch of `steps` batches.
    warm = replace(splits, train_x=splits.train_x[:3 * batch_size], train_y=splits.train_y[:3 * batch_size])
    train_group(members, warm, Recipe(1, batch_size, 0.05, augment=True), 0, engine, teacher=teacher,
                log=lambda s: None)
    timed = replace(splits, train_x=splits.train_x[:steps * batch_size],
                    train_y=splits.train_y[:steps * batch_size])
    _sync(device)
    t0 = time.perf_counter()
    train_group(members, timed, Recipe(1, batch_size, 0.05, augment=True), 1, engine,
                teacher=teacher, log=lambda s: None)
    _sync(device)
    return (time.perf_counter() - t0) / (steps * batch_size * students)


def run(steps: int, device: str, quick_only: bool = False, workers: int = 2) -> list[dict]:
    dev = torch.device(device)
    engine = make_engine(device, "auto")
    peak32 = matmul_peak(torch.float32, dev)
    peak16 = matmul_peak(torch.bfloat16, dev) if engine.amp_dtype is not None else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else ""))
    print(f"measured matmul peak: fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s; "
          f"kdcal engine amp: {engine.amp_dtype}")
    pairs = [("quick (Fashion-MNIST shapes)", "resnet44", "resnet8", 1, 28)]
    if not quick_only:
        pairs.insert(0, ("CIFAR (3x32x32)", "resnet56", "resnet20", 3, 32))
    rows = []
    for label, teacher, student, channels, size in pairs:
        ds = make_synthetic(n_train=(steps + 3) * 64 + 64, n_test=64, channels=channels, size=size)
        splits = make_splits(ds, 32, 0, device=dev)
        t_macs = forward_macs(teacher, channels, 10, size)
        s_macs = forward_macs(student, channels, 10, size)
        for k in (1, 4):
            std = standard_loop(splits, teacher, student, k, steps, dev, workers=workers)
            mem_std = peak_memory_mb(dev)
            fast = kdcal_engine(splits, teacher, student, k, steps, dev)
            mem_fast = peak_memory_mb(dev)
            # FLOPs per student-image: training the student (3x forward) plus its share of teacher forwards
            flops_std = 2 * (3 * s_macs + t_macs)
            flops_fast = 2 * (3 * s_macs + t_macs / k)
            row = {"pair": f"{teacher} -> {student}", "data": label, "students": k,
                   "standard img/s": 1 / std, "kdcal img/s": 1 / fast, "speed-up": std / fast,
                   "standard GFLOP/s": flops_std / std / 1e9, "kdcal GFLOP/s": flops_fast / fast / 1e9,
                   "standard % fp32 peak": 100 * flops_std / std / peak32,
                   "kdcal % fp32 peak": 100 * flops_fast / fast / peak32,
                   "kdcal % bf16 peak": 100 * flops_fast / fast / peak16,
                   "peak MB after standard": mem_std, "peak MB after kdcal": mem_fast}
            rows.append(row)
            print(f"{row['pair']:>20} {label:<28} students {k}: standard {row['standard img/s']:7.1f} "
                  f"img/s/student, kdcal {row['kdcal img/s']:7.1f}, speed-up {row['speed-up']:.2f}x | "
                  f"GFLOP/s {row['standard GFLOP/s']:.1f} vs {row['kdcal GFLOP/s']:.1f} "
                  f"({row['standard % fp32 peak']:.0f}% vs {row['kdcal % fp32 peak']:.0f}% of fp32 "
                  f"matmul peak; kdcal {row['kdcal % bf16 peak']:.0f}% of bf16) | "
                  f"peak RSS {mem_std:.0f} / {mem_fast:.0f} MB", flush=True)
    return rows


def accuracy_check(arch: str = "resnet20", seeds=(0, 1, 2), profile: str = "quick") -> list[dict]:
    """Same recipe and seeds with fp32 and with the engine's bf16: test accuracy side by side."""
    from .analysis import t_interval
    from .config import resolve
    from .distill import make_loss
    from .metrics import summarize
    from .study import engine_for, load_splits, teacher_recipe
    from .train import predict

    cfg = resolve(profile)
    rows = []
    for amp in ("off", "bf16"):
        engine = make_engine(cfg.device, amp)
        splits = load_splits(cfg, engine)
        for seed in seeds:
            torch.manual_seed(seed)
            model = build_model(arch, splits.in_channels, splits.num_classes)
            t0 = time.perf_counter()
            out = train_group({arch: Member(model, make_loss("baseline", cfg.tau, cfg.alpha))}, splits,
                              teacher_recipe(cfg), seed, engine, log=lambda s: None)
            seconds = time.perf_counter() - t0
            z = predict(out["models"][arch], splits.test_x, splits, engine)
            m = summarize(z, splits.test_y.cpu())
            rows.append({"amp": amp, "seed": seed, "seconds": seconds, **m})
            print(f"{arch} {profile} recipe, amp {amp:<4} seed {seed}: test acc {m['acc']:.4f} "
                  f"ece {m['ece']:.4f} nll {m['nll']:.4f} ({seconds:.0f}s)", flush=True)
    diffs = [b["acc"] - a["acc"] for a, b in zip(rows[:len(seeds)], rows[len(seeds):])]
    mean, _, lo, hi, n = t_interval(diffs)
    print(f"bf16 - fp32 test accuracy, paired by seed: {mean:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}, n={n}); "
          f"time fp32 {sum(r['seconds'] for r in rows[:len(seeds)]):.0f}s, "
          f"bf16 {sum(r['seconds'] for r in rows[len(seeds):]):.0f}s")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kdcal.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed batches of 64 per measurement")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the standard loop")
    p.add_argument("--quick-only", action="store_true", help="only the Fashion-MNIST-shaped pair")
    p.add_argument("--accuracy", action="store_true",
                   help="instead: train resnet20 on the quick profile's data with fp32 and bf16 "
                        "(3 seeds each) and compare test accuracy")
    args = p.parse_args(argv)
    if args.accuracy:
        accuracy_check()
    else:
        run(args.steps, args.device, args.quick_only, args.workers)


if __name__ == "__main__":
    main()
