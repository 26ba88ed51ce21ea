"""Datasets as uint8 tensors in memory, the train/validation split, and on-device batches.

Fashion-MNIST is found locally first (``$KDCAL_DATA`` or ``./data``, then Debian's
``dataset-fashion-mnist``) and downloaded by torchvision otherwise. CIFAR-10/100 are read from
their python pickles ourselves, so that archives without torchvision's md5 sums (tests, mirrors)
load too. Everything the training loop touches stays a tensor on the training device: no
DataLoader, no per-sample Python (the airbench recipe).
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("fmnist", "cifar10", "cifar100", "synthetic")
# training images per dataset (synthetic: its synthetic_train), for sizes known before any load
TRAIN_POOL = {"fmnist": 60000, "cifar10": 50000, "cifar100": 50000}
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


class DatasetError(RuntimeError):
    """A dataset is missing or unreadable; the message says which file and how to fix it."""


class _ImageShape:
    """Shape facts read off ``train_x`` [N, C, H, W]."""

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


@dataclass
class Dataset(_ImageShape):
    name: str
    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def default_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("KDCAL_DATA") or "data")


def load_dataset(name: str, root=None, download: bool = True, **synthetic) -> Dataset:
    """Load a dataset by name; ``synthetic`` keyword arguments go to :func:`make_synthetic`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if name == "synthetic":
        return make_synthetic(**synthetic)
    root = default_root(root)
    if name == "fmnist":
        return load_fmnist(root, download)
    return load_cifar(name, root, download)


# ---------------------------------------------------------------- Fashion-MNIST
def _fmnist_raw(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _stage_fmnist(root: Path) -> bool:
    """Make the four idx files exist, uncompressed, in torchvision's raw folder."""
    raw = _fmnist_raw(root)
    if all((raw / f).exists() for f in FMNIST_FILES):
        return True
    for source in (raw, root, DEBIAN_FMNIST):
        if all((source / f"{f}.gz").exists() or (source / f).exists() for f in FMNIST_FILES):
            raw.mkdir(parents=True, exist_ok=True)
            for f in FMNIST_FILES:
                if (raw / f).exists():
                    continue
                src = source / f if (source / f).exists() else source / f"{f}.gz"
                # a temporary name of its own: parallel workers may stage the same file at once,
                # and each must rename only what it wrote (the contents are the same)
                fd, name = tempfile.mkstemp(dir=raw, prefix=f".{f}.", suffix=".tmp")
                tmp = Path(name)
                try:
                    opener = gzip.open if src.suffix == ".gz" else open
                    with os.fdopen(fd, "wb") as fout, opener(src, "rb") as fin:
                        shutil.copyfileobj(fin, fout)
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    tmp.unlink(missing_ok=True)
                    raise DatasetError(f"corrupt Fashion-MNIST file {src}: {exc}") from None
                tmp.replace(raw / f)
            return True
    return False


def load_fmnist(root: Path, download: bool = True) -> Dataset:
    from torchvision.datasets import FashionMNIST

    root = Path(root)
    found = _stage_fmnist(root)
    if not found and not download:
        raise DatasetError(
            f"Fashion-MNIST not found in {_fmnist_raw(root)} or {DEBIAN_FMNIST}; "
            "install Debian's dataset-fashion-mnist, copy the four idx files there, or allow download")
    try:
        tr = FashionMNIST(str(root), train=True, download=not found)
        te = FashionMNIST(str(root), train=False, download=False)
    except (RuntimeError, ValueError, OSError) as exc:
        raise DatasetError(
            f"Fashion-MNIST could not be read or downloaded into {_fmnist_raw(root)} ({exc}); "
            "install Debian's dataset-fashion-mnist or set KDCAL_DATA to a folder holding the idx files"
        ) from None
    _check_idx(tr.data, tr.targets, 60000, _fmnist_raw(root) / FMNIST_FILES[0])
    _check_idx(te.data, te.targets, 10000, _fmnist_raw(root) / FMNIST_FILES[2])
    return Dataset("fmnist", tr.data.unsqueeze(1).contiguous(), tr.targets.long(),
                   te.data.unsqueeze(1).contiguous(), te.targets.long(), list(FMNIST_CLASSES))


def _check_idx(x: torch.Tensor, y: torch.Tensor, n: int, path: Path) -> None:
    if x.shape[0] != n or y.shape[0] != n or int(y.max()) > 9 or int(y.min()) < 0:
        raise DatasetError(f"corrupt Fashion-MNIST file {path}: {x.shape[0]} images and "
                           f"{y.shape[0]} labels, expected {n}")


# ---------------------------------------------------------------- CIFAR
def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")  # the CIFAR format itself is a pickle
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated or foreign file
        raise DatasetError(f"corrupt CIFAR file {path}: {exc}") from None


def _cifar_arrays(batches: list[dict], label_key: str, path: Path):
    try:
        data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        data = data.reshape(-1, 3, 32, 32)
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"corrupt CIFAR file in {path}: {exc}") from None
    if len(data) != len(labels):
        raise DatasetError(f"corrupt CIFAR file in {path}: {len(data)} images, {len(labels)} labels")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def load_cifar(name: str, root: Path, download: bool = True) -> Dataset:
    """Read CIFAR-10/100 from ``root``: the extracted folder, a local archive, or a download."""
    root = Path(root)
    folder = root / CIFAR_DIRS[name]
    archive = root / CIFAR_ARCHIVES[name]
    if not folder.exists() and archive.exists():
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(root, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"corrupt CIFAR archive {archive}: {exc}") from None
    if not folder.exists():
        if not download:
            raise DatasetError(f"{name} not found in {folder}; put {archive.name} in {root} "
                               "or run with download allowed (needs internet)")
        from torchvision import datasets

        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        try:
            cls(str(root), train=True, download=True)
        except Exception as exc:
            raise DatasetError(f"{name} download into {root} failed ({exc}); "
                               f"put {archive.name} in {root} by hand") from None
    try:
        if name == "cifar10":
            train = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
            test = [_unpickle(folder / "test_batch")]
            classes = _unpickle(folder / "batches.meta")["label_names"]
            key = "labels"
        else:
            train, test = [_unpickle(folder / "train")], [_unpickle(folder / "test")]
            classes = _unpickle(folder / "meta")["fine_label_names"]
            key = "fine_labels"
    except FileNotFoundError as exc:
        raise DatasetError(f"{name} is incomplete: missing {exc.filename}") from None
    except (KeyError, TypeError) as exc:
        meta = folder / ("batches.meta" if name == "cifar10" else "meta")
        raise DatasetError(f"corrupt CIFAR file {meta}: no {exc} entry") from None
    train_x, train_y = _cifar_arrays(train, key, folder)
    test_x, test_y = _cifar_arrays(test, key, folder)
    return Dataset(name, train_x, train_y, test_x, test_y, list(classes))


# ---------------------------------------------------------------- synthetic
def make_synthetic(n_train: int = 1200, n_test: int = 400, num_classes: int = 10,
                   channels: int = 1, size: int = 16, noise: float = 0.35, seed: int = 0) -> Dataset:
    """Class prototypes plus pixel noise: learnable in seconds, not trivially separable."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(num_classes, channels, size // 4, size // 4, generator=g)
    protos = torch.nn.functional.interpolate(protos, size=(size, size), mode="bilinear",
                                             align_corners=False)

    def sample(n):
        y = torch.randint(num_classes, (n,), generator=g)
        x = protos[y] + noise * torch.randn(n, channels, size, size, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    return Dataset("synthetic", train_x, train_y, test_x, test_y,
                   [f"class{i}" for i in range(num_classes)])


# ---------------------------------------------------------------- split and batches
def split_indices(n: int, val_size: int, seed: int, train_size: int = 0):
    """Seeded disjoint (train, val) index tensors carved from ``n`` training examples."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be in 1..{n - 1}, got {val_size}")
    available = n - val_size
    if train_size < 0 or train_size > available:
        raise ValueError(f"train_size must be in 0..{available} (0 = all), got {train_size}")
    perm = _permutation(n, seed)
    val = perm[:val_size].sort().values
    train = perm[val_size:val_size + (train_size or available)].sort().values
    return train, val


def _permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def transfer_indices(n: int, val_size: int, seed: int, train_size: int, transfer_size: int):
    """Images for distillation that the teachers never saw: the tail of the split's permutation.

    Taken from the end, so the teachers' training images (the head, after validation) are the
    same with and without a transfer split, and teachers are shared between the two regimes.
    """
    if train_size <= 0:
        raise ValueError("a transfer split needs train_size > 0 (0 = all images left for training)")
    if transfer_size <= 0 or val_size + train_size + transfer_size > n:
        raise ValueError(f"transfer_size must be in 1..{n - val_size - train_size}, got {transfer_size}")
    return _permutation(n, seed)[n - transfer_size:].sort().values


def noisy_labels(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> torch.Tensor:
    """Symmetric label noise: exactly round(fraction * n) labels, chosen with ``seed``, moved to
    a different class drawn uniformly from the other ``num_classes - 1``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"label noise must be in [0, 1), got {fraction}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    flip = torch.randperm(n, generator=g)[:round(fraction * n)].to(labels.device)
    shift = torch.randint(1, num_classes, (len(flip),), generator=g).to(labels.device)
    out = labels.clone()
    out[flip] = (labels[flip] + shift) % num_classes
    return out


@dataclass
class Splits(_ImageShape):
    """Train/val/test tensors (uint8 images) on one device, plus normalisation constants."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # [1, C, 1, 1] float
    std: torch.Tensor
    num_classes: int
    classes: list[str]
    transfer_x: torch.Tensor | None = None  # distillation images the teachers never trained on
    transfer_y: torch.Tensor | None = None

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div_(255) - self.mean) / self.std


def make_splits(ds: Dataset, val_size: int, split_seed: int, train_size: int = 0,
                test_size: int = 0, device="cpu", transfer_size: int = 0) -> Splits:
    tr, va = split_indices(len(ds.train_y), val_size, split_seed, train_size)
    if test_size < 0 or test_size > len(ds.test_y):
        raise ValueError(f"test_size must be in 0..{len(ds.test_y)} (0 = all), got {test_size}")
    te = torch.arange(test_size or len(ds.test_y))
    train_x = ds.train_x[tr]
    xf = train_x.float().div(255)
    mean = xf.mean(dim=(0, 2, 3), keepdim=True)
    std = xf.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    dev = torch.device(device)
    transfer = {}
    if transfer_size:
        xi = transfer_indices(len(ds.train_y), val_size, split_seed, train_size, transfer_size)
        transfer = {"transfer_x": ds.train_x[xi].to(dev), "transfer_y": ds.train_y[xi].to(dev)}
    return Splits(train_x.to(dev), ds.train_y[tr].to(dev), ds.train_x[va].to(dev),
                  ds.train_y[va].to(dev), ds.test_x[te].to(dev), ds.test_y[te].to(dev),
                  mean.to(dev), std.to(dev), ds.num_classes, ds.classes, **transfer)


def with_label_noise(splits: Splits, fraction: float, seed: int) -> Splits:
    """The same splits with noisy training labels; validation, test and transfer stay clean."""
    if not fraction:
        return splits
    return dataclasses.replace(splits, train_y=noisy_labels(splits.train_y, fraction,
                                                            splits.num_classes, seed))


def as_transfer(splits: Splits) -> Splits:
    """The splits with the transfer images in the training slot: what students distill on."""
    if splits.transfer_x is None:
        raise ValueError("these splits have no transfer images (transfer_size=0)")
    return dataclasses.replace(splits, train_x=splits.transfer_x, train_y=splits.transfer_y)


def augment_batch(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, batched on ``x``'s device."""
    return apply_augment(x, pad, *augment_draws(len(x), pad, generator))


def augment_draws(n: int, pad: int, generator: torch.Generator):
    """The random (flip, dy, dx) of :func:`augment_batch` for ``n`` images, in its draw order:
    several batches, each drawn from its own generator, can then be augmented in one gather."""
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device)
    return flip, dy, dx


def apply_augment(x: torch.Tensor, pad: int, flip: torch.Tensor, dy: torch.Tensor,
                  dx: torch.Tensor) -> torch.Tensor:
    """Image i cropped at offset (dy[i], dx[i]) of its zero-padded self, flipped where flip[i]."""
    n, c, h, w = x.shape
    dev = x.device
    flip, dy, dx = flip.to(dev), dy.to(dev), dx.to(dev)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=dev)[None]
    cols = dx[:, None] + torch.arange(w, device=dev)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None, None]
    idx_c = torch.arange(c, device=dev)[None, :, None, None]
    return xp[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, device="cpu"):
    """Shuffled full index batches for one epoch, seeded by (seed, epoch) so a resumed run is identical.

    The last partial batch is dropped (a fresh shuffle each epoch uses it later): one batch shape
    keeps the CPU kernels cached and batch-norm statistics sound.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).to(device)
    full = batches_per_epoch(n, batch_size) * batch_size if n >= batch_size else n
    return list(perm[:full].split(batch_size))


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of :func:`epoch_batches` (full batches only; one batch of
    all ``n`` images when ``n < batch_size``): what a step budget counts in."""
    return max(1, n // batch_size)


def augment_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch + 7919)
