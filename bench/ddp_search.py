"""Data-parallel search on the CPU: collectives per step and step time of 1 vs 2 processes (gloo).

    python bench/ddp_search.py                     # B=1 F=64, global batch 32, synthetic data
    python bench/ddp_search.py --data ../data      # a CIFAR-10 folder instead (cifar-10-batches-py)

Runs search_cifar.py three times with the same flags and global batches: one process with 2 intra-op
threads, torchrun with 2 processes of one thread (the same two cores), and one process with one thread
(how one core does: the ideal 2-process time is half of it).  Reads the search log: per epoch the search records how many all-reduces it made
and how many bytes they carried, per purpose (weights: the sampled path's gradients, one flattened
all-reduce per weight step; arch: alpha's gradients or REINFORCE's rewards per architecture step).
Ends with name=value lines; the time ratio compares search epochs (warm-up excluded) at the same
global batch, as the median over epochs.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/ddp_search.py): make the repo importable
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402

from bench._common import print_figures  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Collectives and step time of a 2-process search vs one process.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None, help="CIFAR-10 folder (default: a synthetic one made in a temp dir)")
    p.add_argument("--B", type=int, default=1, help="blocks per stage")
    p.add_argument("--F", type=int, default=64, help="final width")
    p.add_argument("--batch-size", type=int, default=32, help="global weight and architecture batch")
    p.add_argument("--images", type=int, default=1280, help="training images used (a fixed subset)")
    p.add_argument("--epochs", type=int, default=3, help="search epochs (after one warm-up epoch)")
    p.add_argument("--algo", choices=("gradient", "reinforce"), default="gradient", help="architecture algorithm")
    p.add_argument("--sync-bn", action="store_true", help="global BatchNorm statistics (adds BN all-reduces)")
    return p


def search(data: Path, out: Path, args, processes: int, threads: int) -> list[dict]:
    flags = ["--data", str(data), "--no-download", "--train-subset", str(args.images), "--arch-split",
             str(args.images // 5), "--B", str(args.B), "--F", str(args.F), "--warmup-epochs", "1", "--epochs",
             str(args.epochs), "--batch-size", str(args.batch_size), "--arch-batch-size", str(args.batch_size),
             "--algo", args.algo, "--output", str(out), "--no-progress", "--no-tensorboard"]
    flags += ["--sync-bn"] if args.sync_bn and processes > 1 else []
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
              if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    print(f"== {processes} process(es), {threads} thread(s) each", flush=True)
    proc = subprocess.run([*launch, "search_cifar.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise UserError(f"the search failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def main(args) -> dict[str, float]:
    if args.batch_size % 2 or args.images < 5 * args.batch_size:
        raise UserError("--batch-size must be even and --images at least 5 x --batch-size")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            from utils.synthetic import write_synthetic_cifar
            data = Path(tmp) / "data"
            write_synthetic_cifar(data, per_batch=-(-args.images // 5), n_test=100, seed=0)
        one = search(data, Path(tmp) / "one", args, 1, 2)  # the same two cores as ...
        two = search(data, Path(tmp) / "two", args, 2, 1)  # ... two processes of one thread
        single = search(data, Path(tmp) / "single", args, 1, 1)  # one core: the scaling of one thread
    search_epochs = [(a, b, c) for a, b, c in zip(one, two, single) if a["phase"] == "search"]
    last = two[-1]
    figures = {
        "allreduce_calls_per_weight_step": last["comm_weights_calls"] / last["weight_steps"],
        "allreduce_bytes_per_weight_step": last["comm_weights_bytes"] / last["weight_steps"],
        "allreduce_calls_per_arch_step": last.get("comm_arch_calls", 0) / max(last["arch_steps"], 1),
        "allreduce_bytes_per_arch_step": last.get("comm_arch_bytes", 0) / max(last["arch_steps"], 1),
        "epoch_time_2proc_over_1proc_2threads": statistics.median(b["epoch_time_s"] / a["epoch_time_s"]
                                                                  for a, b, _ in search_epochs),
        "epoch_time_2proc_over_1proc_1thread": statistics.median(b["epoch_time_s"] / c["epoch_time_s"]
                                                                 for _, b, c in search_epochs),
    }
    print(f"B={args.B} F={args.F} global batch {args.batch_size}, {args.images} images, algo={args.algo}, "
          f"sync_bn={args.sync_bn}; weight steps/epoch {last['weight_steps']}, arch steps/epoch {last['arch_steps']}")
    print_figures(figures)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
