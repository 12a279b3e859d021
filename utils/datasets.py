"""One entry point for every data set: ``load_dataset(name, root, ...)`` -> (train, test, DatasetInfo).

cifar10 / cifar100: the python layouts (utils/data.py); folder: an image folder decoded once into memory
(utils/folder.py); folder-stream: an image folder decoded batch by batch with ImageNet's augmentation (utils/stream.py).
"""
from __future__ import annotations

import os

from utils.data import DataError, DatasetInfo, Split, load_cifar10, load_cifar100
from utils.folder import load_image_folder
from utils.stream import FileSplit, scan_folder

DATASETS = ("cifar10", "cifar100", "folder", "folder-stream")


def load_dataset(name: str, root: str | os.PathLike, download: bool = True, image_size: int | None = None,
                 resize: str = "square") -> tuple[Split | FileSplit, Split | FileSplit, DatasetInfo]:
    """(train, test, info) of ``name`` (cifar10 | cifar100 | folder).  CIFAR images are 32x32; an image
    folder is resized to ``image_size`` (default 32) -- see utils/folder.py."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "folder-stream":
        size = image_size or 224
        train, test, classes = scan_folder(root, size)
        return train, test, DatasetInfo(name, len(classes), size, train.mean, train.std)
    if name != "folder":
        if image_size not in (None, 32):
            raise DataError(f"{name} images are 32x32; another image size applies to image folders")
        train, test = load_cifar10(root, download) if name == "cifar10" else load_cifar100(root, download)
        return train, test, DatasetInfo(name, 10 if name == "cifar10" else 100, 32, train.mean, train.std)
    size = image_size or 32
    train, test, classes = load_image_folder(root, size, resize)
    return train, test, DatasetInfo("folder", len(classes), size, train.mean, train.std)
