"""Data sets held in memory as uint8 tensors and augmented in batches: CIFAR-10 and CIFAR-100 in their
python layouts (``cifar-10-batches-py``, ``cifar-100-python``, fine labels); image folders are
utils/folder.py, and utils/datasets.py: load_dataset gives (train, test, DatasetInfo) for any of them.

Why no DataLoader workers: CIFAR-10 is 180 MB of uint8; it is moved to the training device once,
and random crop / flip / cutout run as a few batched tensor ops there.  On a GPU this removes the
CPU-side per-image pipeline and host->device copies per step; everywhere it makes every random
draw come from torch's global CPU RNG, so a resumed run (which restores that RNG) sees exactly
the same batches and augmentations as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from utils.errors import UserError

CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
# Official md5 sums (the same as torchvision's CIFAR10 lists).
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddbe9f20f8a3b2fc2bdf",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR100_DIR = "cifar-100-python"
CIFAR100_MD5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}
# the training set's per-channel mean and (population) std, as commonly used for CIFAR-100
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)
SPLIT_SEED = 0  # the 45k/5k split is a fixed permutation: torch.randperm(50000, seed 0)
ARCH_SPLIT = 0.1  # the paper's 5,000 of CIFAR-10's 50,000 training images


class DataError(UserError):
    pass


class DataWarning(UserWarning):
    pass


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64
    mean: tuple[float, ...] = CIFAR_MEAN  # per channel, in [0, 1] units: how batches are normalized
    std: tuple[float, ...] = CIFAR_STD

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.images[idx], self.labels[idx], self.mean, self.std)


@dataclass(frozen=True)
class DatasetInfo:
    """What a network trained on a data set needs to know about it; travels with checkpoints and results,
    so that evaluation, export and pictures need no data-set flags."""

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, ...] = CIFAR_MEAN
    std: tuple[float, ...] = CIFAR_STD

    def to_dict(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "image_size": self.image_size,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DatasetInfo":
        """None (a checkpoint from before data sets were recorded): CIFAR-10."""
        if d is None:
            return CIFAR10
        return cls(d["name"], int(d["num_classes"]), int(d["image_size"]), tuple(d["mean"]), tuple(d["std"]))


CIFAR10 = DatasetInfo("cifar10", 10, 32)


HOW_TO_GET = ("get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into "
              "{root}, or use a folder that holds cifar-10-batches-py")


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_batches(root: str | os.PathLike) -> Path:
    """``root/cifar-10-batches-py``, or ``root`` itself when it is that folder."""
    root = Path(root)
    return root if (root / TRAIN_FILES[0]).exists() and root.name == BATCHES_DIR else root / BATCHES_DIR


def _download(root: Path) -> None:
    import torchvision  # the only use of torchvision: fetching and checking the official archive

    try:
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # URLError, timeout, HTTP errors, a bad archive: all mean "no data"
        raise DataError(f"CIFAR-10 is not at {root / BATCHES_DIR} and downloading it failed "
                        f"({type(e).__name__}: {e}); " + HOW_TO_GET.format(root=root)) from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # unpickling garbage raises many types; all mean a corrupt file
        raise DataError(f"{path} is not a readable CIFAR-10 python batch ({type(e).__name__}: {e}); "
                        + HOW_TO_GET.format(root=path.parent.parent)) from None
    if len(data) != len(labels) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels in 0..9")
    return data, labels


def load_cifar10(root: str | os.PathLike = "./data", download: bool = True,
                 check_md5: bool = True) -> tuple[Split, Split]:
    """(train, test) as uint8 tensors.  Downloads with torchvision when missing (unless forbidden).
    A local copy whose files differ from the official md5 sums still loads, with one DataWarning."""
    root = Path(root)
    folder = find_batches(root)
    missing = [f for f in TRAIN_FILES + TEST_FILES if not (folder / f).is_file()]
    if missing:
        if not download:
            raise DataError(f"CIFAR-10 not found: {folder} lacks {', '.join(missing)} and downloading is "
                            f"off; " + HOW_TO_GET.format(root=root))
        _download(root)
        folder = root / BATCHES_DIR
    if check_md5:
        differ = [f for f in TRAIN_FILES + TEST_FILES if _md5(folder / f) != OFFICIAL_MD5[f]]
        if differ:
            warnings.warn(f"{folder}: {', '.join(differ)} differ from the official CIFAR-10 md5 sums "
                          f"(a re-encoded or synthetic copy?); loading it anyway", DataWarning, stacklevel=2)

    def cat(files):
        parts = [_read_batch(folder / f) for f in files]
        return Split(torch.from_numpy(np.concatenate([p[0] for p in parts])),
                     torch.from_numpy(np.concatenate([p[1] for p in parts])))

    return cat(TRAIN_FILES), cat(TEST_FILES)


def _download_cifar100(root: Path) -> None:
    import torchvision
    try:
        torchvision.datasets.CIFAR100(str(root), train=True, download=True)
    except Exception as e:  # URLError, timeout, HTTP errors, a bad archive: all mean "no data"
        raise DataError(f"CIFAR-100 is not at {root / CIFAR100_DIR} and downloading it failed "
                        f"({type(e).__name__}: {e}); get cifar-100-python.tar.gz from "
                        f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root}") from None


def load_cifar100(root: str | os.PathLike = "./data", download: bool = True) -> tuple[Split, Split]:
    """(train, test) of CIFAR-100 (fine labels, 100 classes) from ``root/cifar-100-python``; downloaded
    with torchvision when missing (unless forbidden); other md5 sums than the official ones: one warning."""
    root = Path(root)
    folder = root if root.name == CIFAR100_DIR else root / CIFAR100_DIR
    missing = [f for f in CIFAR100_MD5 if not (folder / f).is_file()]
    if missing:
        if not download:
            raise DataError(f"CIFAR-100 not found: {folder} lacks {', '.join(missing)} and downloading is off; get "
                            f"cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
                            f"into {root}")
        _download_cifar100(root)
        folder = root / CIFAR100_DIR
    differ = [f for f in CIFAR100_MD5 if _md5(folder / f) != CIFAR100_MD5[f]]
    if differ:
        warnings.warn(f"{folder}: {', '.join(differ)} differ from the official CIFAR-100 md5 sums; loading it anyway",
                      DataWarning, stacklevel=2)
    out = []
    for name in CIFAR100_MD5:
        try:
            with open(folder / name, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            images = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(d[b"fine_labels"], dtype=np.int64)
        except Exception as e:  # unpickling garbage raises many types; all mean a corrupt file
            raise DataError(f"{folder / name} is not a readable CIFAR-100 python file ({type(e).__name__}: {e})") from None
        if len(images) != len(labels) or labels.min(initial=0) < 0 or labels.max(initial=0) > 99:
            raise DataError(f"{folder / name}: {len(images)} images but {len(labels)} labels in 0..99")
        out.append(Split(torch.from_numpy(images), torch.from_numpy(labels), CIFAR100_MEAN, CIFAR100_STD))
    return out[0], out[1]


def arch_split_size(value: int | float, n_train: int) -> int:
    """--arch-split as a count (an int) or a fraction of the training images (a float in (0, 1))."""
    if isinstance(value, float):
        if not 0 < value < 1:
            raise DataError(f"the architecture split as a fraction must be in (0, 1), got {value}")
        return max(1, round(value * n_train))
    return value


def split_train(train: Split, arch_size: int = 5000, seed: int = SPLIT_SEED) -> tuple[Split, Split]:
    """(weights split, architecture split): a fixed random permutation of the training set, the
    first ``arch_size`` images for the architecture parameters (50,000 -> 45,000 + 5,000)."""
    if not 0 < arch_size < len(train):
        raise DataError(f"the architecture split ({arch_size}) must be between 1 and the training "
                        f"set size - 1 ({len(train) - 1})")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    arch_idx, weight_idx = perm[:arch_size].sort().values, perm[arch_size:].sort().values
    return train.subset(weight_idx), train.subset(arch_idx)


def take(split: Split, n: int | None, seed: int = SPLIT_SEED) -> Split:
    """A fixed random subset of n images (all when n is None or >= the size)."""
    if n is None or n >= len(split):
        return split
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + 1))
    return split.subset(perm[:n].sort().values)


# ---------------------------------------------------------------- batched augmentation
def augment(x: torch.Tensor, pad: int = 4, flip: bool = True, cutout: int = 0, dtype: torch.dtype = torch.float32,
            mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD) -> torch.Tensor:
    """Random crop with zero padding, horizontal flip, normalization and cutout, for a batch.

    x: (N, 3, H, W) uint8 on any device.  Random numbers are drawn on the CPU (global RNG).
    Cutout (DeVries & Taylor) zeroes a size x size square, clipped at the border, after normalizing.
    """
    n, _, h, w = x.shape
    dev = x.device
    if pad:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,)).to(dev, non_blocking=True)
        dx = torch.randint(0, 2 * pad + 1, (n,)).to(dev, non_blocking=True)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (n,1,h,1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (n,1,1,w)
        bidx = torch.arange(n, device=dev)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    if flip:
        mask = (torch.rand(n) < 0.5).to(dev, non_blocking=True)[:, None, None, None]
        x = torch.where(mask, x.flip(3), x)
    x = normalize(x, dtype, mean, std)
    if cutout:
        cy = torch.randint(0, h, (n,)).to(dev, non_blocking=True)[:, None, None]
        cx = torch.randint(0, w, (n,)).to(dev, non_blocking=True)[:, None, None]
        yy = torch.arange(h, device=dev)[None, :, None]
        xx = torch.arange(w, device=dev)[None, None, :]
        half = cutout // 2
        hole = (yy >= cy - half) & (yy < cy + half) & (xx >= cx - half) & (xx < cx + half)
        x = x * (~hole)[:, None].to(x.dtype)
    return x


def normalize(x: torch.Tensor, dtype: torch.dtype = torch.float32, mean: tuple[float, ...] = CIFAR_MEAN,
              std: tuple[float, ...] = CIFAR_STD) -> torch.Tensor:
    mean = torch.tensor(mean, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    return (x.to(dtype) / 255.0 - mean) / std


class BatchLoader:
    """Batches of a Split held on ``device``.  train=True: a new permutation each pass (torch's
    global CPU RNG) and, unless augment=False, augmentation; train=False: fixed order, normalization only.
    rank/world_size shard each pass's permutation like DistributedSampler (same permutation on
    every rank, since all ranks seed alike; each takes every world_size-th index)."""

    def __init__(self, split: Split, batch_size: int, device: torch.device | str = "cpu", *, train: bool,
                 cutout: int = 0, drop_last: bool | None = None, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False, augment: bool | None = None, name: str = "data set",
                 dtype: torch.dtype = torch.float32):
        if batch_size < 1:
            raise DataError(f"the batch size of the {name} must be >= 1, got {batch_size}")
        self.batch_size, self.train, self.cutout = batch_size, train, cutout
        self.augment = train if augment is None else augment
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size
        self.labels = split.labels  # (len() reads it)
        if len(self) == 0:  # caught here: an endless() of it would cycle forever, a loop would do nothing
            per = f" ({world_size} processes)" if world_size > 1 else ""
            raise DataError(f"the {name} holds {len(split)} images, fewer than one batch of {batch_size}{per}: "
                            "it yields no batch")
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.dtype = dtype  # of the normalized images (float64 only for numerical checks)
        self.stats = {"dtype": dtype, "mean": split.mean, "std": split.std}

    def __len__(self) -> int:
        return shard_len(len(self.labels), self.batch_size, self.world_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # one host->device copy of the pass's order, not one per batch
        idx = shard_indices(len(self.labels), self.train, self.rank, self.world_size, self.drop_last)
        idx = idx.to(self.images.device, non_blocking=True)
        for i in range(len(self)):
            b = idx[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[b]
            x = augment(x, cutout=self.cutout, **self.stats) if self.augment else normalize(x, **self.stats)
            yield x.contiguous(memory_format=self.memory_format), self.labels[b]


def shard_indices(n: int, shuffle: bool, rank: int, world_size: int, drop_last: bool) -> torch.Tensor:
    """One pass's order of n items (a permutation from torch's global CPU RNG when ``shuffle``), this process's
    share of it as DistributedSampler shards (every rank draws the same permutation: all ranks seed alike)."""
    idx = torch.randperm(n) if shuffle else torch.arange(n)
    if world_size > 1:
        per = n // world_size if drop_last else -(-n // world_size)
        idx = torch.cat([idx, idx[: per * world_size - n]]) if per * world_size > n else idx
        idx = idx[rank: per * world_size: world_size]
    return idx


def shard_len(n: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    """Batches per pass of this process's share of n items."""
    per = n // world_size if drop_last else -(-n // world_size)
    return per // batch_size if drop_last else -(-per // batch_size)


def endless(loader) -> Iterator:
    """Cycle through a loader forever (a new pass, and permutation, each time round)."""
    if len(loader) == 0:
        raise DataError("cannot cycle through a loader that yields no batch")
    while True:
        yield from loader
