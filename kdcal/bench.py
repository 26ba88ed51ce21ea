"""Distillation throughput: a standard PyTorch KD loop against kdcal's engine, side by side.

    python -m kdcal.bench [--steps N] [--device cpu|cuda] [--quick-only] [--json [PATH]]
    python -m kdcal.bench --fill [--quick] [--models K] [--batch B] [--json [PATH]]

The standard loop is what most KD code does: a torch DataLoader over PIL images with torchvision
transforms, batch 64, and for every student its own pass over the data with a teacher forward
per batch. kdcal's engine keeps uint8 data on the device, augments there in batches, runs one
teacher forward per batch for all the students of that teacher, and uses bf16 autocast and
channels_last where the hardware has them. Both train the same models with the same SGD recipe.
kdcal's rows come twice where a case has several students: their separate loops, and one packed
network (grouped convolutions, kdcal.packed). The rows also give each path's share of the
measured bf16 matmul and convolution peaks.

``--fill`` asks instead how full the device is: training images per second in all, and their
share of the bf16 matmul peak measured in the same run, for K resnet8 models at 28x28 (the study's
student, Fashion-MNIST's shape) trained three ways: ``separate`` (one training per model, as the
teachers train without packing), ``packed-students`` (K students of one teacher as one packed
network, KD on stored teacher logits) and ``packed-teachers`` (K teachers of K seeds as one packed
program, each on its own split and batches: kdcal.packed_seeds). ``--quick`` makes it a check
of seconds on a CPU. ``--json`` alone prints the rows to stdout (the other lines go to stderr).
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from dataclasses import replace
from functools import partial

import torch

from .config import resolve
from .data import Splits, make_splits, make_synthetic
from .inference import t_interval
from .distill import kd_loss, make_kd_loss, make_loss
from .metrics import summarize
from .models import build_model, forward_macs
from .packed_seeds import SeedMember, train_packed_seeds
from .runs import load_splits, teacher_recipe
from .train import Member, Recipe, make_engine, predict, train_group


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


def reset_peak_memory(device: torch.device) -> None:
    """Start a GPU measurement's peak afresh (the peak measurements' matrices are far larger).
    A CPU process's peak RSS cannot be reset: there the column is the process peak so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


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
                 device: torch.device, batch_size: int = 64, amp: str = "auto",
                 pack: str = "off") -> float:
    """Seconds per student-image of kdcal's train_group (one teacher forward per batch for all)."""
    engine = make_engine(device.type, amp, pack_students=pack)
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


def conv_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """Best measured FLOP/s of 3x3 convolutions (channels_last, a few shapes): the ceiling that
    ResNet training, mostly such convolutions, can approach on this device."""
    shapes = ((128, 64, 16), (128, 128, 16)) if device.type == "cpu" else ((512, 256, 32), (256, 512, 16))
    best = 0.0
    for batch, channels, size in shapes:
        x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype)
        w = w.contiguous(memory_format=torch.channels_last)
        conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
        for _ in range(2):
            conv()
        _sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conv()
            reps += 1
        _sync(device)
        best = max(best, 2 * batch * channels * channels * 9 * size * size * reps
                   / (time.perf_counter() - t0))
    return best


def quick_group_students() -> int:
    """Students in the quick profile's largest group (seed 0: its modes and controls), counted
    as study.student_plan plans them."""
    cfg = resolve("quick")
    controls = ([v for v in cfg.tau_grid if v != cfg.tau]
                + [v for v in cfg.teacher_temperature_grid if v != 1.0])
    return len(cfg.modes) + len(controls)


def _parallel_worker(args) -> float:
    """One spawned process of :func:`kdcal_parallel`: 1 thread, its own data, its own group."""
    (channels, size, teacher, student, k, steps, batch, pack, seed, start) = args
    torch.set_num_threads(1)
    ds = make_synthetic(n_train=(steps + 3) * max(64, batch) + 64, n_test=64, channels=channels,
                        size=size, seed=seed)
    splits = make_splits(ds, 32, 0)
    start.wait()  # every worker starts timing together
    return kdcal_engine(splits, teacher, student, k, steps, torch.device("cpu"), batch, pack=pack)


def kdcal_parallel(channels: int, size: int, teacher: str, student: str, students: int,
                   steps: int, batch: int, workers: int = 2, pack: str = "off") -> float:
    """Seconds per student-image of ``workers`` groups trained side by side, one thread each:
    how the study uses a CPU (``workers=2``: independent trainings in parallel processes)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(workers) as pool:
        start = manager.Barrier(workers)
        args = [(channels, size, teacher, student, students, steps, batch, pack, i, start)
                for i in range(workers)]
        per_image = pool.map(_parallel_worker, args)
    # each worker trained steps * batch * students images in per_image * that many seconds
    return max(per_image) / workers


def bench_cases(quick_only: bool = False) -> list[tuple]:
    """(data label, teacher, student, channels, size, students, kdcal batch) of every row."""
    quick_batch = resolve("quick").student_batch_size
    cases = [("quick (Fashion-MNIST shapes)", "resnet44", "resnet8", 1, 28, k, 64) for k in (1, 4)]
    cases.append(("quick group (Fashion-MNIST shapes)", "resnet44", "resnet8", 1, 28,
                  quick_group_students(), quick_batch))
    if not quick_only:
        cases = [("CIFAR (3x32x32)", "resnet56", "resnet20", 3, 32, k, 64) for k in (1, 4)] + cases
    return cases


def run(steps: int, device: str, quick_only: bool = False, workers: int = 2,
        peak_seconds: float = 1.0, parallel: int = 2, say=print) -> list[dict]:
    """Every case side by side: the standard loop, kdcal with separate student loops, kdcal
    with the students packed (kdcal.packed) where there are several, and on a CPU kdcal as the
    study runs it there: ``parallel`` groups side by side, one thread each."""
    dev = torch.device(device)
    engine = make_engine(device, "auto")
    peak32 = matmul_peak(torch.float32, dev, peak_seconds)
    bf16 = engine.amp_dtype is not None
    peak16 = matmul_peak(torch.bfloat16, dev, peak_seconds) if bf16 else float("nan")
    conv16 = conv_peak(torch.bfloat16, dev, peak_seconds) if bf16 else float("nan")
    say(_machine(dev))
    say(f"measured peak: fp32 matmul {peak32 / 1e9:.0f} GFLOP/s, bf16 matmul {peak16 / 1e9:.0f} "
          f"GFLOP/s, bf16 3x3 conv {conv16 / 1e9:.0f} GFLOP/s; kdcal engine amp: {engine.amp_dtype}")
    rows = []
    for label, teacher, student, channels, size, k, batch in bench_cases(quick_only):
        ds = make_synthetic(n_train=(steps + 3) * max(64, batch) + 64, n_test=64, channels=channels,
                            size=size)
        splits = make_splits(ds, 32, 0, device=dev)
        t_macs = forward_macs(teacher, channels, 10, size)
        s_macs = forward_macs(student, channels, 10, size)
        reset_peak_memory(dev)
        std = standard_loop(splits, teacher, student, k, steps, dev, workers=workers)
        mem_std = peak_memory_mb(dev)
        # FLOPs per student-image: training the student (3x forward) plus its share of teacher forwards
        flops_std = 2 * (3 * s_macs + t_macs)
        flops_fast = 2 * (3 * s_macs + t_macs / k)
        paths = ("separate", "packed") if k > 1 else ("separate",)
        if dev.type == "cpu" and parallel > 1 and k > 1:
            paths += (f"{parallel} workers",)
        for path in paths:
            reset_peak_memory(dev)
            if path.endswith("workers"):
                fast = kdcal_parallel(channels, size, teacher, student, k, steps, batch, parallel)
            else:
                fast = kdcal_engine(splits, teacher, student, k, steps, dev, batch,
                                    pack="on" if path == "packed" else "off")
            row = {"pair": f"{teacher} -> {student}", "data": label, "students": k, "path": path,
                   "batch": batch, "standard_img_s": 1 / std, "kdcal_img_s": 1 / fast,
                   "speedup": std / fast, "kdcal_img_s_all": k / fast,
                   "standard_gflop_s": flops_std / std / 1e9, "kdcal_gflop_s": flops_fast / fast / 1e9,
                   "standard_pct_fp32_matmul": 100 * flops_std / std / peak32,
                   "kdcal_pct_bf16_matmul": 100 * flops_fast / fast / peak16,
                   "kdcal_pct_bf16_conv": 100 * flops_fast / fast / conv16,
                   "peak_mb_standard": mem_std, "peak_mb_kdcal": peak_memory_mb(dev)}
            rows.append(row)
            say(f"{row['pair']:>20} {label:<34} students {k} {path:<8}: standard "
                  f"{row['standard_img_s']:7.1f} img/s/student, kdcal {row['kdcal_img_s']:7.1f}, "
                  f"speed-up {row['speedup']:.2f}x | GFLOP/s {row['standard_gflop_s']:.1f} vs "
                  f"{row['kdcal_gflop_s']:.1f} (standard {row['standard_pct_fp32_matmul']:.0f}% of "
                  f"fp32 matmul; kdcal {row['kdcal_pct_bf16_matmul']:.0f}% of bf16 matmul, "
                  f"{row['kdcal_pct_bf16_conv']:.0f}% of bf16 conv) | peak "
                  f"{'GPU MB' if dev.type == 'cuda' else 'RSS MB'} {mem_std:.0f} / "
                  f"{row['peak_mb_kdcal']:.0f}")
    return rows


def _machine(dev: torch.device) -> str:
    return (f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
            f"threads, torch {torch.__version__}, device {dev.type}"
            + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else ""))


# ---------------------------------------------------------------- --fill: how full is the device
FILL_ARCH, FILL_SIZE = "resnet8", 28
FILL_PATHS = ("separate", "packed-students", "packed-teachers")


def _fill_splits(k: int, n_train: int, device: torch.device) -> list[Splits]:
    """K seeds' own splits of one synthetic 1x28x28 data set (as split_per_seed gives them)."""
    ds = make_synthetic(n_train=n_train + 64, n_test=64, channels=1, size=FILL_SIZE, seed=0)
    return [make_splits(ds, 64, seed, device=device) for seed in range(k)]


def _fill_once(path: str, splits: list[Splits], recipe: Recipe, engine) -> None:
    """One epoch of ``recipe`` on ``splits[k]`` for K fresh resnet8 models, trained ``path``'s way."""
    quiet = lambda line: None  # noqa: E731
    ce = make_loss("baseline", 4.0, 0.9)
    models = [build_model(FILL_ARCH, 1, 10) for _ in splits]
    if path == "separate":
        for k, (m, s) in enumerate(zip(models, splits)):
            train_group({"m": Member(m, ce)}, s, recipe, k, replace(engine, pack_students="off"),
                        log=quiet)
    elif path == "packed-students":  # the students of one teacher: its stored logits, one split
        logits = torch.randn(len(splits[0].train_y), 10, generator=torch.Generator().manual_seed(0))
        members = {f"s{k}": Member(m, make_kd_loss(4.0, 0.9), True) for k, m in enumerate(models)}
        train_group(members, splits[0], recipe, 0, replace(engine, pack_students="on"),
                    teacher_logits=logits, log=quiet)
    else:
        train_packed_seeds([SeedMember("m", m, ce, s, k) for k, (m, s) in
                            enumerate(zip(models, splits))], recipe, engine, log=quiet)


def fill(device: str, models: int = 8, batch: int = 512, steps: int = 40, peak_seconds: float = 1.0,
         augment: bool = False, compile_mode: str = "", say=print) -> list[dict]:
    """Training images per second in all, and their share of the measured bf16 matmul peak, of
    ``models`` resnet8s at 28x28 on each path (a warm-up epoch of 3 batches, then ``steps``)."""
    engine = make_engine(device, "auto", compile=bool(compile_mode),
                         compile_mode=compile_mode or "default")
    dev = engine.device
    peak16 = matmul_peak(torch.bfloat16, dev, peak_seconds)
    say(_machine(dev))
    say(f"measured bf16 matmul peak {peak16 / 1e12:.2f} TFLOP/s; engine amp {engine.amp_dtype}, "
        f"compile {compile_mode or 'off'}")
    flops = 2 * 3 * forward_macs(FILL_ARCH, 1, 10, FILL_SIZE)  # forward + backward, per image
    warm = _fill_splits(models, 3 * batch, dev)
    timed = _fill_splits(models, steps * batch, dev)
    rows = []
    for path in FILL_PATHS:
        _fill_once(path, warm, Recipe(1, batch, 0.05, augment=augment), engine)
        reset_peak_memory(dev)
        _sync(dev)
        t0 = time.perf_counter()
        _fill_once(path, timed, Recipe(1, batch, 0.05, augment=augment), engine)
        _sync(dev)
        seconds = time.perf_counter() - t0
        images = models * steps * batch
        row = {"kind": "fill", "arch": FILL_ARCH, "image": f"1x{FILL_SIZE}x{FILL_SIZE}",
               "path": path, "models": models, "batch": batch, "steps": steps,
               "augment": augment, "device": dev.type,
               "amp": "bf16" if engine.amp_dtype is torch.bfloat16 else "fp32",
               "compile": compile_mode or "off", "seconds": seconds,
               "img_s_all": images / seconds, "img_s_per_model": images / seconds / models,
               "tflop_s": flops * images / seconds / 1e12, "bf16_matmul_peak_tflop_s": peak16 / 1e12,
               "pct_bf16_matmul": 100 * flops * images / seconds / peak16,
               "peak_mb": peak_memory_mb(dev)}
        rows.append(row)
        say(f"{FILL_ARCH} 1x{FILL_SIZE}x{FILL_SIZE} {path:<16} {models} models, batch {batch}: "
            f"{row['img_s_all']:10.0f} img/s in all ({row['img_s_per_model']:.0f} per model), "
            f"{row['tflop_s']:.2f} TFLOP/s = {row['pct_bf16_matmul']:.2f}% of the bf16 matmul "
            f"peak | peak {'GPU MB' if dev.type == 'cuda' else 'RSS MB'} {row['peak_mb']:.0f}")
    return rows


def write_json(rows: list[dict], path) -> None:
    """The rows as a JSON list of objects (NaN, where a peak was not measured, as null), into
    ``path``, or onto stdout when ``path`` is "-"."""
    import json
    import math
    from pathlib import Path

    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
             for r in rows]
    text = json.dumps(clean, indent=1) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def accuracy_check(arch: str = "resnet20", seeds=(0, 1, 2), profile: str = "quick") -> list[dict]:
    """Same recipe and seeds with fp32 and with the engine's bf16: test accuracy side by side."""
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
    p.add_argument("--steps", type=int, default=30, help="timed batches per measurement")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the standard loop")
    p.add_argument("--quick-only", action="store_true", help="only the Fashion-MNIST-shaped pair")
    p.add_argument("--peak-seconds", type=float, default=1.0,
                   help="seconds per shape of the matmul and conv peak measurements")
    p.add_argument("--json", metavar="PATH", nargs="?", const="-",
                   help="also write the rows there as a JSON list (no PATH: onto stdout, and "
                        "the other lines onto stderr)")
    p.add_argument("--fill", action="store_true",
                   help="instead: images/s in all and share of the bf16 peak of resnet8s at "
                        "28x28, separate, packed students and packed teachers")
    p.add_argument("--quick", action="store_true",
                   help="with --fill: a small size, seconds on a CPU (2 models, batch 32, 2 steps)")
    p.add_argument("--models", type=int, default=8, help="with --fill: models per path")
    p.add_argument("--batch", type=int, default=512, help="with --fill: batch per model")
    p.add_argument("--augment", action="store_true", help="with --fill: augmented batches")
    p.add_argument("--compile-mode", default="", choices=("", "default", "reduce-overhead",
                                                          "max-autotune"),
                   help="with --fill: torch.compile in this mode (reduce-overhead: CUDA graphs)")
    p.add_argument("--parallel", type=int, default=2,
                   help="on a CPU, also kdcal with this many groups side by side, 1 thread each "
                        "(how the study trains there; 1 = off)")
    p.add_argument("--accuracy", action="store_true",
                   help="instead: train resnet20 on the quick profile's data with fp32 and bf16 "
                        "(3 seeds each) and compare test accuracy")
    args = p.parse_args(argv)
    say = partial(print, flush=True)
    if args.json == "-":  # stdout holds the JSON alone
        def say(line):
            print(line, file=sys.stderr, flush=True)
    if args.accuracy:
        accuracy_check()
        return
    if args.fill:
        size = dict(models=2, batch=32, steps=2) if args.quick else \
            dict(models=args.models, batch=args.batch, steps=args.steps)
        for name, value in size.items():
            if value < 1:
                p.error(f"--{name} must be at least 1, got {value}")
        rows = fill(args.device, **size, augment=args.augment, compile_mode=args.compile_mode,
                    peak_seconds=min(args.peak_seconds, 0.05) if args.quick else args.peak_seconds,
                    say=say)
    else:
        rows = run(args.steps, args.device, args.quick_only, args.workers, args.peak_seconds,
                   args.parallel, say=say)
    if args.json:
        write_json(rows, args.json)


if __name__ == "__main__":
    main()
