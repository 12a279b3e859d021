"""A short end-to-end run to try first: search -> genotype -> retrain -> pictures -> ONNX, on a CIFAR-10 subset.

It calls the real scripts (search_cifar, train_cifar, visualize_cifar, export_onnx) with small settings,
so a working run means the whole pipeline works on this machine.  With the default flags it takes
under 10 minutes on a 2-core CPU (docs/test_run.md); accuracies are those of a tiny network trained on a
few thousand images for a few minutes, a smoke test, not a result.

    python test_run.py                     # CIFAR-10 in ./data (downloaded if missing)
    python test_run.py --synthetic         # offline: a synthetic CIFAR-format data set
    python test_run.py --space nb201       # the NAS-Bench-201 space (C=8, N=1 for the search and the retraining)
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import time
import warnings
from pathlib import Path

import numpy as np

import export_onnx
import genotypes
import search_cifar
import train_cifar
import visualize_cifar
from models.spaces import DEFAULT_SPACE, SPACES, get_space
from utils import data as cifar
from utils.checkpoint import atomic_write
from utils.errors import UserError, run_cli
from utils.faults import WriteError, check_writable
from utils.datasets import DATASETS
from utils.run import refuse_existing_run
from utils.space_args import add_space_flags, resolve_space
from utils.synthetic import write_synthetic_cifar


# small networks for a quick run (the space's own defaults are full-size)
SMALL = {name: space.small_macro for name, space in SPACES.items()}  # each space's data
# alpha's Adam step for a search of a few hundred architecture steps.  Adam moves alpha by about its learning
# rate per step, so the paper's 0.006 (made for 200 epochs) leaves alpha uniform here: entropy 1.946 -> 1.946 on
# the tree space in the default run (`python test_run.py --synthetic`; 1.644 at 0.2, the default here)
SHORT_ARCH_LR = 0.2
NB201_TABLE = Path(get_space("nb201").accuracy_table)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="cifar10",
                   help="cifar10: fixed train/test subsets are written first; cifar100 / folder: --train-images "
                        "is the training subset and the whole test (or val) split is used")
    p.add_argument("--data", default="./data",
                   help="folder holding cifar-10-batches-py or cifar-100-python (downloaded there if missing), "
                        "or the image folder (train/<class>/, val/<class>/)")
    p.add_argument("--image-size", type=int, default=None, help="folder: images resized to this size (default 32)")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download")
    p.add_argument("--synthetic", action="store_true", help="use a synthetic CIFAR-format data set (no download)")
    p.add_argument("--output", default="runs/test_run", help="run directory")
    p.add_argument("--train-images", type=int, default=2500,
                   help="training images used (a fixed subset); the search holds out --arch-split of them")
    p.add_argument("--arch-split", type=int, default=500, help="images of the subset that train alpha in the search")
    p.add_argument("--test-images", type=int, default=2000, help="test images used (a fixed subset)")
    p.add_argument("--warmup-epochs", type=int, default=2, help="search warm-up epochs")
    p.add_argument("--search-epochs", type=int, default=8, help="search epochs after warm-up")
    p.add_argument("--arch-every", type=int, default=5, help="one architecture step every K weight steps (the paper's 5)")
    p.add_argument("--arch-lr", type=float, default=SHORT_ARCH_LR,
                   help="alpha's Adam learning rate: larger than a full search's (0.006, for 200 epochs) so that "
                        "alpha visibly leaves uniform in a few hundred steps")
    p.add_argument("--train-epochs", type=int, default=10, help="retraining epochs")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of search and retraining")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_space_flags(p, title="search space and the size of the searched and retrained networks (defaults here: "
                             + ", ".join(f"{k}: {' '.join(f'{f}={_v(v)}' for f, v in m.items())}" for k, m in SMALL.items())
                             + ")")
    return p


def write_subset(src: Path | None, args, out: Path) -> Path:
    """Write the fixed train/test subsets as a CIFAR-format folder that every stage reads."""
    if src is None:  # synthetic
        per_batch = math.ceil(args.train_images / 5)
        return write_synthetic_cifar(out, per_batch=per_batch, n_test=args.test_images, seed=args.seed).parent
    train, test = cifar.load_cifar10(src, download=args.download)
    train, test = cifar.take(train, args.train_images), cifar.take(test, args.test_images)
    folder = out / cifar.BATCHES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(train)), 5)
    for name, idx in zip(cifar.TRAIN_FILES, chunks):
        _dump(folder / name, train.images[idx].numpy(), train.labels[idx].numpy())
    _dump(folder / "test_batch", test.images.numpy(), test.labels.numpy())
    return out


def prepare_data(args, out: Path, common: list[str], times: dict) -> Path:
    """The folder every stage reads; adds the data flags to ``common``."""
    if args.dataset != "cifar10":  # the data set as it is, limited to --train-images
        times["data"] = 0.0
        common += ["--train-subset", str(args.train_images)] + ([] if args.download else ["--no-download"])
        return Path(args.data)
    common.append("--no-download")  # a CIFAR-format folder of the fixed subsets
    warnings.filterwarnings("ignore", category=cifar.DataWarning)  # our own subset files: md5s differ by design
    return _stage("data", lambda: write_subset(None if args.synthetic else Path(args.data), args, out / "data"), times)


def _dump(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    atomic_write(path, lambda f: pickle.dump({b"data": images.reshape(len(images), -1), b"labels": labels.tolist()},
                                             f, protocol=4))


def _stage(name: str, fn, times: dict):
    print(f"\n=== {name}", flush=True)
    t0 = time.perf_counter()
    result = fn()
    times[name] = time.perf_counter() - t0
    return result


def main(args: argparse.Namespace) -> dict:
    if args.arch_split >= args.train_images:
        raise UserError("--arch-split must be smaller than --train-images")
    if args.synthetic and args.dataset != "cifar10":
        raise UserError("--synthetic makes a CIFAR-10 look-alike: it goes with --dataset cifar10")
    for flag, value in SMALL[args.space or DEFAULT_SPACE].items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    space, macro = resolve_space(args)
    size = ["--space", space.name] + [a for k, v in macro.items() for a in (f"--{k}", _v(v))]
    out = Path(args.output)
    refuse_existing_run(out, ("search", "train"), "test run", "delete it or choose another --output")
    try:  # before the data and the stages: a folder that cannot be written is refused now
        check_writable(out)
    except WriteError as e:
        raise UserError(e.line("or choose another --output")) from None
    out.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--seed", str(args.seed), "--batch-size", str(args.batch_size),
              "--dataset", args.dataset] + ([] if args.progress else ["--no-progress"])
    common += ["--image-size", str(args.image_size)] if args.image_size else []
    times: dict[str, float] = {}
    start = time.perf_counter()

    data_dir = prepare_data(args, out, common, times)

    search_dir = out / "search"
    # NAS-Bench-201 on CIFAR: the shipped table judges the argmax cell every epoch
    judge = ["--nb201-table", space.accuracy_table] if space.accuracy_table and args.dataset != "folder" else []
    _stage("search", lambda: search_cifar.main(search_cifar.get_args_parser().parse_args([
        "--data", str(data_dir), *size, "--arch-split", str(args.arch_split),
        "--warmup-epochs", str(args.warmup_epochs), "--epochs", str(args.search_epochs), "--arch-lr", str(args.arch_lr),
        "--arch-every", str(args.arch_every),
        "--arch-batch-size", str(args.batch_size), "--output", str(search_dir), "--no-tensorboard", *common, *judge])),
           times)
    search_log = [json.loads(l) for l in (search_dir / "log.jsonl").read_text().splitlines()]
    genotype_path = search_dir / "genotype_final.json"

    train_dir = out / "train"  # (retrained in the searched size: a size the genotype carries may be repeated)
    train = _stage("retrain", lambda: train_cifar.main(train_cifar.get_args_parser().parse_args([
        "--genotype", str(genotype_path), "--data", str(data_dir), "--epochs", str(args.train_epochs),
        "--output", str(train_dir), "--no-tensorboard", *size, *common])), times)

    pictures = _stage("visualize", lambda: visualize_cifar.main(visualize_cifar.get_args_parser().parse_args([
        str(out / "pictures" / "searched"), "--genotype", str(genotype_path),
        "--checkpoint", str(search_dir / "checkpoint.pth")])), times)

    export = _stage("export", lambda: export_onnx.main(export_onnx.get_args_parser().parse_args([
        "--genotype", str(genotype_path), "--checkpoint", str(train_dir / "last.pth"),
        "--output", str(out / "model.onnx")])), times)
    total = time.perf_counter() - start

    g = genotypes.get(str(genotype_path))
    rows = [
        ("data", times["data"], f"{args.dataset}: {args.train_images} train images / "
                                + (f"{args.test_images} test images" if args.dataset == "cifar10" else "the test split")
                                + (" (synthetic)" if args.synthetic else "")),
        ("search", times["search"], f"argmax net on the alpha split: {search_log[-1]['valid_argmax_acc']:.1f} % "
                                    f"(entropy {search_log[-1]['entropy']:.3f})"),
        ("retrain", times["retrain"], f"test acc {train['final_test_acc']:.1f} % (best {train['best_test_acc']:.1f} %), "
                                      f"{train['params']:,} params, {train['multiply_adds'] / 1e6:.1f} M mult-adds"),
        ("visualize", times["visualize"], f"{len(pictures)} files"),
        ("export", times["export"], f"max |ort - torch| {max(export['max_abs_diff'].values()):.1e}, "
                                    f"ort latency {export.get('ort_ms', float('nan')):.2f} ms at batch 1"),
    ]
    print(f"\n{'stage':<10} {'time':>8}  result")
    for name, t, text in rows:
        print(f"{name:<10} {t:>7.0f}s  {text}")
    print(f"{'total':<10} {total:>7.0f}s")
    print(f"\ngenotype ({g.describe_counts()}): {genotype_path}")
    learned = search_learning(search_log, args, judged=bool(judge))
    print(*learned["lines"], sep="\n")
    print("files:", *[str(p) for p in [search_dir / "checkpoint.pth", train_dir / "results.json",
                                       out / "model.onnx", *pictures]], sep="\n  ")
    return {"times": times, "total_s": total, "search": search_log[-1], "train": train, "export": export,
            "pictures": pictures, "genotype": g, "learning": learned}


def search_learning(log: list[dict], args, judged: bool) -> dict:
    """Did alpha learn?  Figures from the search's log: alpha's entropy and the most probable op's mean
    probability at the end of warm-up (alpha untouched) and at the end; the accuracy on the alpha split of
    networks sampled from alpha in the first and last search epochs; on NAS-Bench-201 the argmax cell's
    table accuracy against the mean of all cells (a uniformly drawn cell)."""
    if len(log) <= args.warmup_epochs:
        return {"lines": ["search learning: no search epochs (--search-epochs 0)"]}
    start = log[args.warmup_epochs - 1] if args.warmup_epochs else None
    first, end = log[args.warmup_epochs], log[-1]
    e0 = start["entropy"] if start else None
    p0 = start["argmax_prob_mean"] if start else None
    out = {"entropy_start": e0, "entropy_end": end["entropy"], "prob_start": p0, "prob_end": end["argmax_prob_mean"],
           "sampled_acc_first": first["valid_acc"], "sampled_acc_last": end["valid_acc"]}
    lines = [f"search learning ({len(log) - args.warmup_epochs} search epochs, alpha lr {args.arch_lr:g}): "
             f"entropy {_f(e0)} -> {end['entropy']:.3f} nats, most probable op's mean probability "
             f"{_f(p0)} -> {end['argmax_prob_mean']:.3f}; networks sampled from alpha on the alpha split "
             f"{first['valid_acc']:.1f} % (first search epoch) -> {end['valid_acc']:.1f} % (last)"]
    if judged:
        from models.nb201.table import NB201Table, column_for
        table = NB201Table.load(NB201_TABLE)
        values = table.values(column_for(args.dataset))
        acc = end[f"nb201_{args.dataset}_test"]
        out.update(table_acc=acc, random_mean=sum(values) / len(values))
        lines.append(f"argmax cell {end['nb201_arch']}: {args.dataset} test {acc:.2f} % in the NAS-Bench-201 table "
                     f"(a random cell: {out['random_mean']:.2f} % on average; the best: {values[-1]:.2f} %)"
                     + ("; this search saw synthetic images, the table is real CIFAR-10" if args.synthetic else ""))
    out["lines"] = lines
    return out


def _v(value) -> str:
    """A size flag's value on the command line (per-stage sizes comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    run_cli(main, get_args_parser())
