"""How does a search's supernet rank the candidate ops?  For each checkpoint: the network with every edge
fixed to one op, BatchNorm statistics recalibrated on its own paths, evaluated on test images.

    python bench/supernet_ranking.py runs/search/checkpoint.pth --data ./data
    python bench/supernet_ranking.py ep3.pth ep6.pth ep12.pth --data ./data      # over a warm-up

Why: the gradient the architecture step follows compares ops on the supernet's current weights.  When
those weights are young (a short search), an op with weights can rank below a parameter-free op that it
would beat once trained, and no step size or number of architecture steps fixes that: the search then
drifts toward pooling and identity.  This bench shows the ranking the search saw.  It ends with
``param_free_minus_weighted_loss=...`` per checkpoint: mean test loss of the parameter-free single-op
networks minus that of the ones with weights (negative: the supernet prefers parameter-free ops).
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from utils.checkpoint import load_supernet  # noqa: E402
from utils.data import BatchLoader, take  # noqa: E402
from utils.datasets import load_dataset  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.train import evaluate, make_amp, recalibrate_bn  # noqa: E402



def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="search checkpoints (a run folder means its checkpoint.pth)")
    p.add_argument("--data", default="./data", help="the dataset folder the search read")
    p.add_argument("--eval-images", type=int, default=2000, help="test images each network is evaluated on")
    p.add_argument("--calib-batches", type=int, default=10, help="training batches of 64 for the BN statistics")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p


def rank_ops(supernet, calibration: BatchLoader, test: BatchLoader, batches: int) -> dict[str, dict[str, float]]:
    """{op: {"loss", "acc"}} of the supernet with every edge fixed to op (BN recalibrated per op)."""
    amp, out = make_amp(torch.device("cpu"), "off"), {}
    for op in supernet.candidates:
        supernet.fix(supernet.genotype_of([supernet.candidates.index(op)] * supernet.num_decisions))
        with supernet.gate_mode("fixed"), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # every op is calibrated on the same batches
            recalibrate_bn(supernet, (x for x, _ in itertools.islice(iter(calibration), batches)))
            out[op] = evaluate(supernet, test, criterion=nn.CrossEntropyLoss(), amp=amp, progress=False)
    return out


def preference(ranks: dict[str, dict[str, float]], parameter_free: tuple[str, ...]) -> float:
    """Mean loss of parameter-free single-op networks minus that of the ones with weights."""
    free = [r["loss"] for op, r in ranks.items() if op in parameter_free]
    weighted = [r["loss"] for op, r in ranks.items() if op not in parameter_free]
    if not free or not weighted:
        raise UserError("the candidates need at least one parameter-free op and one op with weights")
    return statistics.mean(free) - statistics.mean(weighted)


def main(args: argparse.Namespace) -> list[float]:
    if args.eval_images < 1 or args.calib_batches < 1 or args.threads < 1:
        raise UserError("--eval-images, --calib-batches and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    figures, datasets = [], {}
    for path in args.checkpoints:
        supernet, saved = load_supernet(path)
        a = saved["args"]
        key = (a["dataset"], a["image_size"], a["resize"])  # checkpoints of one search read its data once
        if key not in datasets:
            datasets[key] = load_dataset(a["dataset"], args.data, False, a["image_size"], a["resize"])
        train, test, _ = datasets[key]
        ranks = rank_ops(supernet, BatchLoader(take(train, a["train_subset"]), 64, train=True),
                         BatchLoader(take(test, args.eval_images), 500, train=False), args.calib_batches)
        print(f"{path} (after epoch {saved['epoch']}):")
        for op, r in sorted(ranks.items(), key=lambda kv: kv[1]["loss"]):
            print(f"  {op:14s} loss {r['loss']:.4f}  acc {r['acc']:5.2f} %")
        figures.append(preference(ranks, supernet.space.parameter_free))
        print(f"param_free_minus_weighted_loss={figures[-1]:.4f}", flush=True)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
