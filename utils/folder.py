"""Your own images: a torchvision ImageFolder-style tree, decoded once, resized, held as uint8 tensors.

    PATH/train/<class>/*.png|jpg|jpeg|gif|webp      (any size; grayscale, RGBA, palette -> RGB)
    PATH/val/<class>/...   (or PATH/test/<class>/...; the same class folders as train/)

Each image is decoded with torchvision's decoders and resized to ``image_size`` x ``image_size``:
``resize="square"`` scales both sides (the aspect ratio changes), ``resize="crop"`` scales the shorter
side to ``image_size`` and takes the centre square.  The result is cached next to the data, in
``PATH/.pnas_cache_<size>_<resize>.pt``, with a fingerprint of every file's path, size and modification
time: the second run loads the tensors without decoding, and adding, removing or changing a file
rebuilds the cache.  Mean and standard deviation are those of the training split.

Files that are not images (another extension, or a decoder that refuses them) are skipped with one
warning that counts them; an empty class folder, train/val folders with other classes, or a data set
that would not fit in memory at this size are errors that say what to change.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch


from utils.checkpoint import atomic_write
from utils.data import DataError, DataWarning, Split
from utils.faults import WriteError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")
RESIZE_MODES = ("square", "crop")
CACHE_FORMAT = 1


def decode(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB; the one place images are decoded (tests count the calls).

    torchvision 0.29 (pinned in requirements.txt) announces that its image decoders will move to
    TorchCodec; they work, and this is the one call to change when they do: the notice is silenced here."""
    from torchvision.io import ImageReadMode, decode_image
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*image decoding and encoding", category=DeprecationWarning)
        return decode_image(str(path), mode=ImageReadMode.RGB)


def resize(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF
    if mode == "square":
        return TF.resize(image, [size, size], antialias=True)
    image = TF.resize(image, size, antialias=True)  # the shorter side becomes ``size``
    return TF.center_crop(image, [size, size])


def _split_dirs(root: Path) -> tuple[Path, Path]:
    train = root / "train"
    evaluation = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not train.is_dir() or evaluation is None:
        raise DataError(f"{root} is not an image-folder data set: it needs {root / 'train'}/<class>/ and "
                        f"{root / 'val'}/<class>/ (or test/) folders of images")
    return train, evaluation


def _files(split_dir: Path) -> dict[str, list[Path]]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} holds no class folders")
    out = {}
    for c in classes:
        files = sorted(p for p in (split_dir / c).rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"class folder {split_dir / c} is empty")
        out[c] = files
    return out


def check_size(image_size) -> None:
    """The size images are decoded to: an integer >= 8 (each space has its own rule on top)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise DataError(f"the image size must be an integer >= 8, got {image_size!r}")


def class_files(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]], list[str]]:
    """(training files by class, evaluation files by class, class names) of an image-folder tree; train/ and
    val/ (or test/) must hold the same class folders."""
    train_dir, eval_dir = _split_dirs(root)
    train_files, eval_files = _files(train_dir), _files(eval_dir)
    if list(train_files) != list(eval_files):
        only_train = sorted(set(train_files) - set(eval_files))
        only_eval = sorted(set(eval_files) - set(train_files))
        raise DataError(f"{train_dir} and {eval_dir} hold different classes (only in train: "
                        f"{', '.join(only_train) or '-'}; only in {eval_dir.name}: {', '.join(only_eval) or '-'})")
    return train_files, eval_files, list(train_files)


def _fingerprint(files: list[Path], root: Path) -> str:
    h = hashlib.sha1()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def available_memory() -> int:
    """Bytes of memory available now (Linux: MemAvailable, which counts reclaimable caches), or 0 when
    unknown (no check then)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # not Linux
    return 0


def _load_split(by_class: dict[str, list[Path]], classes: list[str], size: int, mode: str,
                skipped: list[Path]) -> Split:
    images, labels = [], []
    for label, c in enumerate(classes):
        for p in by_class[c]:
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(p)
                continue
            try:
                img = decode(p)
            except RuntimeError:  # torchvision's word for a file its decoders cannot read
                skipped.append(p)
                continue
            images.append(resize(img, size, mode))
            labels.append(label)
    if not images:
        raise DataError(f"no image could be decoded among {sum(map(len, by_class.values()))} files "
                        f"(e.g. {next(iter(by_class.values()))[0]})")
    return Split(torch.stack(images), torch.tensor(labels, dtype=torch.long))


def mean_std(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images in [0, 1] units (float64 sums, in chunks)."""
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].double() / 255.0
        s += x.sum((0, 2, 3))
        s2 += (x * x).sum((0, 2, 3))
    n = images.numel() / 3
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def load_image_folder(root: str | os.PathLike, image_size: int = 32, resize_mode: str = "square",
                      cache: bool = True) -> tuple[Split, Split, list[str]]:
    """(train, evaluation, class names); the splits carry the training split's mean and std."""
    root = Path(root)
    check_size(image_size)
    if resize_mode not in RESIZE_MODES:
        raise DataError(f"unknown resize mode {resize_mode!r}; choose {' or '.join(RESIZE_MODES)}")
    train_files, eval_files, classes = class_files(root)
    every = [p for files in (*train_files.values(), *eval_files.values()) for p in files]
    need = len(every) * 3 * image_size * image_size
    have = available_memory()
    if have and need > 0.8 * have:
        raise DataError(f"{len(every)} images at {image_size}x{image_size} need {need / 2**30:.1f} GiB as uint8 "
                        f"tensors, more than the {have / 2**30:.1f} GiB of memory available; use a smaller image size")
    cache_file = root / f".pnas_cache_{image_size}_{resize_mode}.pt"
    fingerprint = _fingerprint(every, root)
    if cache and cache_file.is_file():
        try:
            saved = torch.load(cache_file, weights_only=True)
        except Exception:  # another version's or a damaged cache: rebuilt below, as a stale one is
            saved = {}
        if saved.get("format") == CACHE_FORMAT and saved.get("fingerprint") == fingerprint:
            return _splits(saved), _splits(saved, "eval"), saved["classes"]
    skipped: list[Path] = []
    train = _load_split(train_files, classes, image_size, resize_mode, skipped)
    evaluation = _load_split(eval_files, classes, image_size, resize_mode, skipped)
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} file(s) that are not images "
                      f"(e.g. {', '.join(str(p.relative_to(root)) for p in skipped[:3])})", DataWarning, stacklevel=2)
    mean, std = mean_std(train.images)
    saved = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "classes": classes, "mean": mean, "std": std,
             "train": (train.images, train.labels), "eval": (evaluation.images, evaluation.labels)}
    if cache:
        try:
            atomic_write(cache_file, lambda f: torch.save(saved, f))
        except WriteError as e:  # a read-only or full data folder: the run works, only the next one decodes again
            warnings.warn(f"no cache: {e.line('or ignore this: the next run decodes the images again')}",
                          DataWarning, stacklevel=2)
    return _splits(saved), _splits(saved, "eval"), classes


def _splits(saved: dict, which: str = "train") -> Split:
    images, labels = saved[which]
    return Split(images, labels, tuple(saved["mean"]), tuple(saved["std"]))
