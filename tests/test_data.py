"""Data: split, synthetic set, CIFAR and Fashion-MNIST readers on files in the real formats,
augmentation and epoch batches."""
from __future__ import annotations

import gzip
import io
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcal import data
from kdcal.data import (DatasetError, augment_batch, epoch_batches, load_dataset, load_fmnist,
                        make_synthetic, split_indices)


# ---------------------------------------------------------------- split_indices
def test_split_disjoint_sizes_sorted():
    train, val = split_indices(100, 20, seed=0)
    assert len(val) == 20 and len(train) == 80
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_split_deterministic_per_seed():
    a = split_indices(100, 20, seed=3)
    b = split_indices(100, 20, seed=3)
    c = split_indices(100, 20, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_split_train_size_subset():
    full_train, val = split_indices(100, 20, seed=1)
    train, val2 = split_indices(100, 20, seed=1, train_size=30)
    assert len(train) == 30
    assert torch.equal(val, val2)  # the validation set does not depend on train_size
    assert set(train.tolist()) <= set(full_train.tolist())
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert len(split_indices(100, 20, seed=1, train_size=80)[0]) == 80


@pytest.mark.parametrize("val_size", [0, -1, 100, 101])
def test_split_bad_val_size(val_size):
    with pytest.raises(ValueError, match="val_size"):
        split_indices(100, val_size, seed=0)


@pytest.mark.parametrize("train_size", [-1, 81, 1000])
def test_split_bad_train_size(train_size):
    with pytest.raises(ValueError, match="train_size"):
        split_indices(100, 20, seed=0, train_size=train_size)


# ---------------------------------------------------------------- synthetic
def test_make_synthetic_deterministic_uint8_shapes():
    a = make_synthetic(n_train=50, n_test=20, num_classes=4, channels=3, size=8, seed=5)
    b = make_synthetic(n_train=50, n_test=20, num_classes=4, channels=3, size=8, seed=5)
    c = make_synthetic(n_train=50, n_test=20, num_classes=4, channels=3, size=8, seed=6)
    assert a.train_x.shape == (50, 3, 8, 8) and a.test_x.shape == (20, 3, 8, 8)
    assert a.train_y.shape == (50,) and a.test_y.shape == (20,)
    assert a.train_x.dtype == torch.uint8 and a.test_x.dtype == torch.uint8
    assert a.train_y.dtype == torch.int64
    assert int(a.train_y.min()) >= 0 and int(a.train_y.max()) < 4
    assert a.num_classes == 4 and a.in_channels == 3 and a.image_size == 8
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.train_x, c.train_x)


def test_load_dataset_synthetic_and_unknown():
    ds = load_dataset("synthetic", n_train=10, n_test=5, size=8)
    assert ds.train_x.shape == (10, 1, 8, 8)
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("mnist")


# ---------------------------------------------------------------- CIFAR in the real on-disk format
class _Py2Pickler(pickle._Pickler):
    """Write pickles the way the CIFAR files were written (Python 2 cPickle, protocol 2).

    Python 2 ``str`` (the dict keys, label names, array buffers) is stored with the
    SHORT_BINSTRING/BINSTRING opcodes; Python 3 reads those back as ``bytes`` with
    ``encoding="bytes"`` (hence ``d[b"data"]`` in the CIFAR page's snippet) and as ``str`` with
    ``encoding="latin1"``. A plain Python 3 ``pickle.dump`` of ``bytes`` would instead write
    ``_codecs.encode`` calls, which come back as ``bytes`` whatever the encoding: not the real format.
    Arrays reference ``numpy.core.multiarray._reconstruct`` as numpy 1.x wrote it.
    """
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", "") in ("numpy._core.multiarray", "numpy.core.multiarray"):
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n"
                       + (name or obj.__name__).encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _py2_pickle(obj, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 5) -> dict:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta; returns the arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        x = _images(per_batch, seed=i)
        y = [(i + j) % 10 for j in range(per_batch)]
        _py2_pickle({b"batch_label": f"training batch {i} of 5".encode(), b"labels": y,
                     b"data": x, b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]},
                    folder / f"data_batch_{i}")
        train_x.append(x)
        train_y += y
    test_x = _images(per_batch, seed=99)
    test_y = [(3 * j) % 10 for j in range(per_batch)]
    _py2_pickle({b"batch_label": b"testing batch 1 of 1", b"labels": test_y, b"data": test_x,
                 b"filenames": [f"test_{j}.png".encode() for j in range(per_batch)]},
                folder / "test_batch")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    _py2_pickle({b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072},
                folder / "batches.meta")
    return {"train_x": np.concatenate(train_x), "train_y": train_y, "test_x": test_x,
            "test_y": test_y, "classes": [n.decode() for n in names]}


def write_cifar100(root: Path, n_train: int = 7, n_test: int = 4) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x = _images(n, seed)
        fine = [(7 * j + seed) % 100 for j in range(n)]
        _py2_pickle({b"filenames": [f"{split}_{j}.png".encode() for j in range(n)],
                     b"batch_label": f"{split}ing batch 1 of 1".encode(), b"fine_labels": fine,
                     b"coarse_labels": [f // 5 for f in fine], b"data": x}, folder / split)
        out[f"{split}_x"], out[f"{split}_y"] = x, fine
    names = [f"fine{i}".encode() for i in range(100)]
    _py2_pickle({b"fine_label_names": names,
                 b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, folder / "meta")
    out["classes"] = [n.decode() for n in names]
    return out


def _assert_images_roundtrip(x: torch.Tensor, flat: np.ndarray) -> None:
    """Image i, channel c, row r, column k is byte c*1024 + r*32 + k of row i."""
    assert x.dtype == torch.uint8 and x.shape == (len(flat), 3, 32, 32)
    xn = x.numpy()
    rng = np.random.default_rng(0)
    for _ in range(200):
        i, c, r, k = (int(rng.integers(len(flat))), int(rng.integers(3)), int(rng.integers(32)),
                      int(rng.integers(32)))
        assert xn[i, c, r, k] == flat[i, c * 1024 + r * 32 + k]
    # and exhaustively, via the documented layout
    assert np.array_equal(xn.reshape(len(flat), -1), flat)
    assert xn[0, 1, 2, 3] == flat[0, 1024 + 2 * 32 + 3]


def test_py2_pickles_look_like_the_real_cifar_files(tmp_path):
    """Our fixture writer produces what the CIFAR page documents: b"data" keys with encoding=bytes."""
    write_cifar10(tmp_path)
    raw = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02" and b"U\x04data" in raw and b"cnumpy.core.multiarray\n" in raw
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (5, 3072)


def test_cifar10_folder_roundtrip(tmp_path):
    ref = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path, download=False)
    assert ds.name == "cifar10"
    _assert_images_roundtrip(ds.train_x, ref["train_x"])
    _assert_images_roundtrip(ds.test_x, ref["test_x"])
    assert ds.train_x.shape == (25, 3, 32, 32) and ds.test_x.shape == (5, 3, 32, 32)
    assert ds.train_y.dtype == torch.int64
    assert ds.train_y.tolist() == ref["train_y"] and ds.test_y.tolist() == ref["test_y"]
    assert ds.classes == ref["classes"]
    assert all(isinstance(c, str) for c in ds.classes)
    assert ds.num_classes == 10 and ds.in_channels == 3 and ds.image_size == 32


def test_cifar100_folder_roundtrip(tmp_path):
    ref = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", root=tmp_path, download=False)
    _assert_images_roundtrip(ds.train_x, ref["train_x"])
    _assert_images_roundtrip(ds.test_x, ref["test_x"])
    assert ds.train_y.tolist() == ref["train_y"]  # fine labels, not coarse
    assert ds.test_y.tolist() == ref["test_y"]
    assert ds.classes == ref["classes"] and ds.num_classes == 100


def test_cifar10_from_archive(tmp_path):
    staging = tmp_path / "staging"
    ref = write_cifar10(staging)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", root=root, download=False)
    assert (root / "cifar-10-batches-py" / "data_batch_1").exists()  # extracted next to it
    _assert_images_roundtrip(ds.train_x, ref["train_x"])
    assert ds.train_y.tolist() == ref["train_y"] and ds.test_y.tolist() == ref["test_y"]
    assert ds.classes == ref["classes"]


def test_corrupt_cifar_archive(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path, download=False)


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"),
                                         ("cifar100", "cifar-100-python")])
def test_missing_cifar_names_folder(tmp_path, name, folder):
    with pytest.raises(DatasetError) as info:
        load_dataset(name, root=tmp_path, download=False)
    assert str(tmp_path / folder) in str(info.value)


def test_truncated_cifar_pickle_names_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert "data_batch_3" in str(info.value) and str(path) in str(info.value)


def test_foreign_cifar_meta_names_file(tmp_path):
    """A readable pickle without the expected key is a DatasetError naming the file too."""
    write_cifar10(tmp_path)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    _py2_pickle({b"num_cases_per_batch": 10000}, meta)  # no label_names
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert "batches.meta" in str(info.value)


def test_foreign_cifar_batch_is_dataset_error(tmp_path):
    write_cifar10(tmp_path)
    _py2_pickle({b"data": _images(5, 0)}, tmp_path / "cifar-10-batches-py" / "data_batch_2")
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_incomplete_cifar_names_missing_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset("cifar10", root=tmp_path, download=False)


# ---------------------------------------------------------------- Fashion-MNIST idx files
# Known non-zero pixels (split, image, row, col, value) and the label rule.
FMNIST_PIXELS = [("train", 0, 0, 0, 1), ("train", 0, 5, 7, 200), ("train", 12345, 27, 0, 77),
                 ("train", 59999, 27, 27, 255), ("test", 0, 13, 14, 9), ("test", 9999, 1, 2, 128)]


def _fmnist_labels(n: int) -> np.ndarray:
    return ((np.arange(n) * 7 + 3) % 10).astype(np.uint8)


def _idx_images(n: int, split: str) -> bytes:
    x = np.zeros((n, 28, 28), dtype=np.uint8)
    for s, i, r, c, v in FMNIST_PIXELS:
        if s == split:
            x[i, r, c] = v
    return struct.pack(">iiii", 2051, n, 28, 28) + x.tobytes()


def _idx_labels(n: int) -> bytes:
    return struct.pack(">ii", 2049, n) + _fmnist_labels(n).tobytes()


@pytest.fixture(scope="module")
def fmnist_gz(tmp_path_factory) -> Path:
    """The four Fashion-MNIST idx files, full size, gzipped, in one folder (written once)."""
    folder = tmp_path_factory.mktemp("fmnist_gz")
    content = {"train-images-idx3-ubyte": _idx_images(60000, "train"),
               "train-labels-idx1-ubyte": _idx_labels(60000),
               "t10k-images-idx3-ubyte": _idx_images(10000, "test"),
               "t10k-labels-idx1-ubyte": _idx_labels(10000)}
    for name, raw in content.items():
        with gzip.open(folder / f"{name}.gz", "wb", compresslevel=1) as f:
            f.write(raw)
    return folder


def _copy_gz(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in data.FMNIST_FILES:
        shutil.copy(src / f"{f}.gz", dst / f"{f}.gz")
    return dst


def test_fmnist_idx_roundtrip(fmnist_gz, tmp_path):
    root = _copy_gz(fmnist_gz, tmp_path / "root")
    ds = load_fmnist(root, download=False)
    assert ds.name == "fmnist"
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    for s, i, r, c, v in FMNIST_PIXELS:
        x = ds.train_x if s == "train" else ds.test_x
        assert int(x[i, 0, r, c]) == v
    assert int(ds.train_x.sum()) == sum(v for s, *_, v in FMNIST_PIXELS if s == "train")
    assert int(ds.test_x.sum()) == sum(v for s, *_, v in FMNIST_PIXELS if s == "test")
    assert np.array_equal(ds.train_y.numpy(), _fmnist_labels(60000))
    assert np.array_equal(ds.test_y.numpy(), _fmnist_labels(10000))
    assert ds.classes == data.FMNIST_CLASSES and ds.num_classes == 10
    # staged, uncompressed, into torchvision's raw folder
    assert all((root / "FashionMNIST" / "raw" / f).exists() for f in data.FMNIST_FILES)


def test_fmnist_from_raw_folder_gz(fmnist_gz, tmp_path):
    root = tmp_path / "root"
    _copy_gz(fmnist_gz, root / "FashionMNIST" / "raw")
    ds = load_dataset("fmnist", root=root, download=False)
    assert int(ds.train_x[0, 0, 5, 7]) == 200 and len(ds.test_y) == 10000


def test_fmnist_truncated_gz_names_file(fmnist_gz, tmp_path):
    root = _copy_gz(fmnist_gz, tmp_path / "root")
    bad = root / "t10k-labels-idx1-ubyte.gz"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError) as info:
        load_fmnist(root, download=False)
    assert str(bad) in str(info.value)


def test_fmnist_missing_names_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FMNIST", tmp_path / "no-debian-package")
    with pytest.raises(DatasetError) as info:
        load_dataset("fmnist", root=tmp_path, download=False)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(info.value)


@pytest.mark.skipif(not data.DEBIAN_FMNIST.exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fmnist_real_debian_data(tmp_path):
    ds = load_dataset("fmnist", root=tmp_path, download=False)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8
    assert torch.bincount(ds.test_y, minlength=10).tolist() == [1000] * 10
    assert torch.bincount(ds.train_y, minlength=10).tolist() == [6000] * 10
    assert int(ds.train_x.max()) > 200  # real images, not zeros


# ---------------------------------------------------------------- augmentation
def _batch(n=6, c=2, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_augment_shape_dtype_and_determinism():
    x = _batch()
    a = augment_batch(x, 2, torch.Generator().manual_seed(11))
    b = augment_batch(x, 2, torch.Generator().manual_seed(11))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    outs = [augment_batch(x, 2, torch.Generator().manual_seed(s)) for s in range(5)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_augment_pad0_is_identity_or_flip():
    x = _batch(n=32)
    out = augment_batch(x, 0, torch.Generator().manual_seed(1))
    flips = 0
    for i in range(len(x)):
        same, flipped = torch.equal(out[i], x[i]), torch.equal(out[i], x[i].flip(-1))
        assert same or flipped
        flips += flipped and not same
    assert 0 < flips < len(x)  # both happen in a batch of 32


def test_augment_pad_is_shifted_crop_of_zero_padded_input():
    pad = 2
    x = _batch(n=12, h=6, w=7)
    out = augment_batch(x, pad, torch.Generator().manual_seed(3))
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[-2:]
    seen = set()
    for i in range(len(x)):
        matches = [(dy, dx, fl) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   for fl in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if fl else c)(
                       xp[i, :, dy:dy + h, dx:dx + w]))]
        assert matches, f"image {i} is not a (flipped) crop of the padded input"
        seen.add(matches[0])
    assert len(seen) > 1


# ---------------------------------------------------------------- epoch batches
def test_epoch_batches_cover_each_index_once_when_divisible():
    batches = epoch_batches(96, 16, seed=2, epoch=0)
    assert [len(b) for b in batches] == [16] * 6
    assert sorted(torch.cat(batches).tolist()) == list(range(96))


def test_epoch_batches_drop_partial_batch_without_repeats():
    """kdcal drops the last partial batch (documented in epoch_batches): full batches only, no
    index twice in an epoch, and other epochs' shuffles reach the dropped indices."""
    batches = epoch_batches(103, 16, seed=2, epoch=0)
    assert [len(b) for b in batches] == [16] * 6
    flat = torch.cat(batches).tolist()
    assert len(set(flat)) == len(flat) == 96 and set(flat) <= set(range(103))
    seen = set()
    for epoch in range(20):
        seen |= set(torch.cat(epoch_batches(103, 16, seed=2, epoch=epoch)).tolist())
    assert seen == set(range(103))


def test_epoch_batches_smaller_than_one_batch():
    batches = epoch_batches(10, 16, seed=0, epoch=0)
    assert len(batches) == 1 and sorted(batches[0].tolist()) == list(range(10))


def test_epoch_batches_deterministic_per_seed_and_epoch():
    batches = epoch_batches(103, 16, seed=2, epoch=0)
    again = epoch_batches(103, 16, seed=2, epoch=0)
    assert len(batches) == len(again) and all(torch.equal(a, b) for a, b in zip(batches, again))
    flat = torch.cat(batches)
    other_epoch = torch.cat(epoch_batches(103, 16, seed=2, epoch=1))
    other_seed = torch.cat(epoch_batches(103, 16, seed=3, epoch=0))
    assert not torch.equal(flat, other_epoch) and not torch.equal(flat, other_seed)


def test_fmnist_staged_by_two_workers_at_once(fmnist_gz, tmp_path, monkeypatch):
    """Two workers of a study may stage the same idx file at the same moment (workers=2 on an
    empty data folder): each writes its own temporary file, so neither loses its rename. Here
    the second stages everything while the first is in the middle of its first copy."""
    root = _copy_gz(fmnist_gz, tmp_path / "root")
    real_copy, calls = shutil.copyfileobj, []

    def interleaved(fin, fout, *args):
        calls.append(1)
        if len(calls) == 1:
            assert data._stage_fmnist(root)  # the other worker, start to finish
        return real_copy(fin, fout, *args)

    monkeypatch.setattr(data.shutil, "copyfileobj", interleaved)
    assert data._stage_fmnist(root)
    monkeypatch.setattr(data.shutil, "copyfileobj", real_copy)
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.FMNIST_FILES)  # no temporary left
    for f in data.FMNIST_FILES:
        with gzip.open(root / f"{f}.gz", "rb") as g:
            assert (raw / f).read_bytes() == g.read(), f
