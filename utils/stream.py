"""Image folders too large for memory (ImageNet at 224 px): decoded batch by batch, with ImageNet's augmentation.

``--dataset folder-stream`` reads the same tree as ``folder`` (``PATH/train/<class>/``, ``PATH/val/<class>/``) but
keeps only file names in memory.  Each batch is decoded by DataLoader workers: training images get the usual
random-resized crop (8-100 % of the area, aspect 3/4-4/3) to the image size and a horizontal flip, evaluation
images are resized to 256/224 of it and centre-cropped.  Batches are normalized with ImageNet's mean and
standard deviation (a streamed data set is not read twice to measure its own).

Order and augmentation are reproducible: a pass's permutation comes from torch's global RNG, as for in-memory
data (``BatchLoader``), and so does one seed per pass from which every image's crop and flip are drawn; a
seeded run, and a run resumed with its RNG state, see the same batches.  Data-parallel processes shard each pass
as ``BatchLoader`` does.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .data import BatchLoader, DataError, Split, normalize, shard_indices, shard_len
from .folder import IMAGE_EXTENSIONS, check_size, class_files, decode

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EVAL_RESIZE = 256 / 224  # evaluation: shorter side to 256/224 of the crop, then the centre crop (the usual ratio)


@dataclass(frozen=True)
class FileSplit:
    """A split as file names and labels; images are decoded when a batch asks for them."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> "FileSplit":
        return replace(self, paths=tuple(self.paths[i] for i in idx.tolist()), labels=self.labels[idx])


def scan_folder(root, image_size: int) -> tuple[FileSplit, FileSplit, list[str]]:
    """(train, evaluation, class names) of an image-folder tree, as file names (files without an image extension
    are left out; a file that does not decode is an error when its batch comes)."""
    check_size(image_size)
    train_files, eval_files, classes = class_files(Path(root))

    def split(by_class) -> FileSplit:
        pairs = [(str(p), label) for label, c in enumerate(classes) for p in by_class[c]
                 if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not pairs:
            raise DataError(f"no image files among {sum(map(len, by_class.values()))} files")
        return FileSplit(tuple(p for p, _ in pairs), torch.tensor([label for _, label in pairs], dtype=torch.long))

    return split(train_files), split(eval_files), classes


def crop_box(height: int, width: int, g: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
             ) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random-resized crop drawn with ``g``: area a share in ``scale`` of the image's,
    aspect (log-uniform) in ``ratio``; after 10 misses the largest centred crop of an aspect within ``ratio``."""
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=g).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_r[0] + (log_r[1] - log_r[0]) * u[1])
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(height - h + 1, (), generator=g))
            left = int(torch.randint(width - w + 1, (), generator=g))
            return top, left, h, w
    aspect = width / height
    w, h = (round(height * ratio[1]), height) if aspect > ratio[1] else (
        (width, round(width / ratio[0])) if aspect < ratio[0] else (width, height))
    return (height - h) // 2, (width - w) // 2, h, w


class _Decoded(torch.utils.data.Dataset):
    """The images of one pass, in its order: item j is file ``order[j]``, cropped with seed ``seed + j``."""

    def __init__(self, split: FileSplit, order: list[int], size: int, train: bool, seed: int):
        self.split, self.order, self.size, self.train, self.seed = split, order, size, train, seed

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2 import functional as TF
        i = self.order[j]
        path = self.split.paths[i]
        try:
            img = decode(path)
        except RuntimeError as e:
            raise DataError(f"cannot decode {path}: {e}") from None
        if self.train:
            g = torch.Generator().manual_seed(self.seed + j)
            top, left, h, w = crop_box(img.shape[1], img.shape[2], g)
            img = TF.resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)
            if bool(torch.rand((), generator=g) < 0.5):
                img = img.flip(-1)
        else:
            img = TF.center_crop(TF.resize(img, round(self.size * EVAL_RESIZE), antialias=True), [self.size, self.size])
        return img, int(self.split.labels[i])


class StreamLoader:
    """``BatchLoader``'s interface over a FileSplit: ``len()`` batches, each ``(x, y)`` on ``device``, ``x``
    normalized; train=True: a new permutation and new crops each pass (unless augment=False: resize + centre
    crop).  ``workers``: decoding processes (None: the cores but one, at most 8; 0: in this process)."""

    def __init__(self, split: FileSplit, batch_size: int, device: torch.device | str = "cpu", *, train: bool,
                 image_size: int, cutout: int = 0, drop_last: bool | None = None, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False, augment: bool | None = None, name: str = "data set",
                 dtype: torch.dtype = torch.float32, workers: int | None = None):
        if batch_size < 1:
            raise DataError(f"the batch size of the {name} must be >= 1, got {batch_size}")
        if cutout:
            raise DataError("cutout is a CIFAR augmentation; a streamed image folder uses random-resized crops")
        self.split, self.batch_size, self.device, self.train, self.size = split, batch_size, device, train, image_size
        self.augment = train if augment is None else augment
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size
        self.labels = split.labels
        if len(self) == 0:
            raise DataError(f"the {name} holds {len(split)} images, fewer than one batch of {batch_size}: "
                            "it yields no batch")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.dtype = dtype
        self.workers = min(8, max(0, (os.cpu_count() or 1) - 1)) if workers is None else workers

    def __len__(self) -> int:
        return shard_len(len(self.labels), self.batch_size, self.world_size, self.drop_last)

    def __iter__(self):
        idx = shard_indices(len(self.labels), self.train, self.rank, self.world_size, self.drop_last)
        idx = idx[: len(self) * self.batch_size]  # whole batches only where drop_last
        # one draw per pass from torch's global RNG (so seeds and resumed RNG states reproduce it), even when the
        # pass is not augmented: the RNG stream does not depend on the augmentation setting
        seed = int(torch.randint(2 ** 62, ())) if self.train else 0
        data = _Decoded(self.split, idx.tolist(), self.size, self.augment, seed)
        batches = torch.utils.data.DataLoader(data, self.batch_size, num_workers=self.workers,
                                              pin_memory=torch.device(self.device).type == "cuda")
        for x, y in batches:
            x = normalize(x.to(self.device, non_blocking=True), self.dtype, self.split.mean, self.split.std)
            yield x.contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)


def make_loader(split: Split | FileSplit, batch_size: int, device: torch.device | str = "cpu", *, train: bool,
                image_size: int, cutout: int = 0, drop_last: bool | None = None, rank: int = 0, world_size: int = 1,
                channels_last: bool = False, augment: bool | None = None, name: str = "data set",
                dtype: torch.dtype = torch.float32):
    """The loader of a split: in-memory (``BatchLoader``) or streamed (``StreamLoader``)."""
    if isinstance(split, FileSplit):
        return StreamLoader(split, batch_size, device, train=train, image_size=image_size, cutout=cutout,
                            drop_last=drop_last, rank=rank, world_size=world_size, channels_last=channels_last,
                            augment=augment, name=name, dtype=dtype)
    return BatchLoader(split, batch_size, device, train=train, cutout=cutout, drop_last=drop_last, rank=rank,
                       world_size=world_size, channels_last=channels_last, augment=augment, name=name, dtype=dtype)
