"""Synthetic data sets in the real layouts (tests, offline runs, `test_run.py --synthetic`): CIFAR-10's
python batches and CIFAR-100's python files, with classes a small network learns well above chance."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from utils.data import BATCHES_DIR, CIFAR100_DIR, TEST_FILES, TRAIN_FILES
from utils.faults import writing


def _synthetic(rng: np.random.Generator, n: int, colors: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """n images (n, 3072) uint8 and labels: each class has its own mean colour (``colors``, one row per
    class) and stripe direction, so that a small network learns it well above chance."""
    num_classes = len(colors)
    yy, xx = np.mgrid[0:32, 0:32]
    labels = rng.integers(0, num_classes, size=n)
    imgs = np.empty((n, 3, 32, 32), dtype=np.float64)
    for i, c in enumerate(labels):
        angle = c * 3.14 / num_classes
        stripes = 30 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.8)
        imgs[i] = colors[c][:, None, None] + stripes[None] + rng.normal(0, 20, size=(3, 32, 32))
    return np.clip(imgs, 0, 255).astype(np.uint8).reshape(n, -1), labels.tolist()


def write_synthetic_cifar(root: str | os.PathLike, per_batch: int = 100, n_test: int = 100,
                          seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 look-alike in the python-batch layout: 5 train batches of ``per_batch``
    images and a test batch.  Returns the ``cifar-10-batches-py`` folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / BATCHES_DIR
    with writing(folder):  # a full disk: one WriteError line (test_run.py --synthetic)
        folder.mkdir(parents=True, exist_ok=True)
        colors = rng.integers(40, 216, size=(10, 3))  # one palette for every file
        for name in TRAIN_FILES + TEST_FILES:
            data, labels = _synthetic(rng, n_test if name == "test_batch" else per_batch, colors)
            with open(folder / name, "wb") as f:
                pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                             b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}, f, protocol=4)
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                          b"horse", b"ship", b"truck"], b"num_cases_per_batch": per_batch,
                         b"num_vis": 3072}, f, protocol=4)
    return folder


def write_synthetic_cifar100(root: str | os.PathLike, n_train: int = 500, n_test: int = 100, seed: int = 0) -> Path:
    """A tiny CIFAR-100 look-alike in the ``cifar-100-python`` layout (train, test, meta; fine labels)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR100_DIR
    folder.mkdir(parents=True, exist_ok=True)
    colors = rng.integers(40, 216, size=(100, 3))
    for name, n in (("train", n_train), ("test", n_test)):
        data, labels = _synthetic(rng, n, colors)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels, b"coarse_labels": [c // 5 for c in labels]}, f,
                        protocol=4)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)]}, f, protocol=4)
    return folder
