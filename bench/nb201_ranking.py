"""How far can a NAS-Bench-201 supernet be trusted?  Kendall tau between the supernet's estimate of a cell
and the benchmark's table, for cells drawn uniformly from the space.

For every search checkpoint given: ``--cells`` cells drawn uniformly (seeded; the same draw for every
checkpoint), each run in the supernet with its gates fixed to that cell, BatchNorm statistics recalibrated
on ``--calib-batches`` training batches of its own paths (as the search's argmax evaluation does; a
"plain"-BN supernet uses batch statistics anyway), and its accuracy measured on ``--eval-images`` test
images.  Kendall's tau-b between those accuracies and the table's CIFAR-10 (200-epoch) accuracy says how
well the supernet ranks cells at that point of the search: 1 = the table's order, 0 = no relation.

    python bench/nb201_ranking.py runs/nb201_bench/search_s0/warmup.pth runs/nb201_bench/search_s0 --data ../data

Ends with one ``kendall_tau=`` line per checkpoint (and ``top_cell_table_acc=``: the table accuracy of the
cell the supernet ranks first).
"""
from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from models.nb201.arch import CellGenotype  # noqa: E402
from utils.checkpoint import load_supernet  # noqa: E402
from utils.data import BatchLoader, take  # noqa: E402
from utils.datasets import load_dataset  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from models.nb201.table import NB201Table, column_for  # noqa: E402
from utils.train import bn_statistics_kept, evaluate, make_amp, recalibrate_bn  # noqa: E402

TABLE = ROOT / "nb201_table" / "accuracy.csv.gz"


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (scipy.stats: ties in either list counted as neither concordant nor discordant)."""
    from scipy import stats

    if len(a) != len(b) or len(a) < 2:
        raise UserError("Kendall tau needs two lists of the same length >= 2")
    return float(stats.kendalltau(a, b, variant="b")[0])


def draw_cells(candidates: tuple[str, ...], n: int, seed: int) -> list[CellGenotype]:
    rng = random.Random(seed)
    return [CellGenotype(tuple(rng.choice(candidates) for _ in range(6))) for _ in range(n)]


def supernet_accuracies(supernet, cells: list[CellGenotype], calibration: BatchLoader, test: BatchLoader,
                        batches: int) -> list[float]:
    """Each cell's test accuracy in the supernet (gates fixed to it, BN recalibrated on its own paths)."""
    amp, out = make_amp(torch.device("cpu"), "off"), []
    with bn_statistics_kept(supernet):
        for cell in cells:
            supernet.fix(cell)
            with supernet.gate_mode("fixed"), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # every cell is calibrated on the same batches
                recalibrate_bn(supernet, (x for x, _ in itertools.islice(iter(calibration), batches)))
                out.append(evaluate(supernet, test, criterion=nn.CrossEntropyLoss(), amp=amp, progress=False)["acc"])
    return out


def open_search(path, data: str, datasets: dict):
    """A NAS-Bench-201 search checkpoint's supernet, its saved state and the search's train / test data
    (``datasets`` caches the data between checkpoints)."""
    supernet, saved = load_supernet(path)
    if supernet.space.name != "nb201":
        raise UserError(f"{path} is a search of the {supernet.space.name} space; this bench reads NAS-Bench-201 cells")
    a = saved["args"]
    key = (a["dataset"], a["image_size"], a["resize"])
    if key not in datasets:
        datasets[key] = load_dataset(a["dataset"], data, False, a["image_size"], a["resize"])
    train, test, _ = datasets[key]
    return supernet, saved, train, test


def search_accuracies(supernet, saved: dict, cells: list[CellGenotype], train, test, args) -> list[float]:
    """supernet_accuracies with the search's own training batches for BN (``args.eval_images``, ``args.calib_batches``)."""
    calibration = BatchLoader(take(train, saved["args"]["train_subset"]), saved["args"]["batch_size"], train=True)
    return supernet_accuracies(supernet, cells, calibration, BatchLoader(take(test, args.eval_images), 500, train=False),
                               args.calib_batches)


def rank_checkpoint(path, table: NB201Table, args, datasets: dict) -> dict[str, float]:
    supernet, saved, train, test = open_search(path, args.data, datasets)
    cells = draw_cells(tuple(supernet.candidates), args.cells, args.seed)
    accs = search_accuracies(supernet, saved, cells, train, test, args)
    column = column_for(saved["args"]["dataset"])
    truth = [table.lookup(c, column) for c in cells]
    best = max(range(len(cells)), key=accs.__getitem__)
    return {"epoch": saved["epoch"], "kendall_tau": kendall_tau(accs, truth), "top_cell_table_acc": truth[best],
            "supernet_acc_mean": sum(accs) / len(accs)}


def add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    """The inputs of a bench that scores cells in NAS-Bench-201 search checkpoints (this one, nb201_edge_bias)."""
    p.add_argument("checkpoints", nargs="+", help="NAS-Bench-201 search checkpoints (a run folder: its checkpoint.pth)")
    p.add_argument("--data", default="./data", help="the data set folder the search read")
    p.add_argument("--table", default=str(TABLE), help="NAS-Bench-201 table (.csv or .csv.gz)")
    p.add_argument("--eval-images", type=int, default=1000, help="test images each cell is evaluated on")
    p.add_argument("--calib-batches", type=int, default=5, help="training batches (the search's batch size) for each cell's BN statistics")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_checkpoint_args(p)
    p.add_argument("--cells", type=int, default=100, help="cells drawn uniformly from the search's candidates")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw")
    return p


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    if min(args.cells, args.eval_images, args.calib_batches, args.threads) < 1 or args.cells < 2:
        raise UserError("--cells must be >= 2; --eval-images, --calib-batches and --threads >= 1")
    torch.set_num_threads(args.threads)
    table, datasets, out = NB201Table.load(args.table), {}, []
    for path in args.checkpoints:
        r = rank_checkpoint(path, table, args, datasets)
        out.append(r)
        print(f"{path} (after epoch {r['epoch']}): supernet accuracy of {args.cells} cells, mean "
              f"{r['supernet_acc_mean']:.2f} %", flush=True)
        print(f"kendall_tau={r['kendall_tau']:.4f}\ntop_cell_table_acc={r['top_cell_table_acc']:.4f}", flush=True)
    return out


if __name__ == "__main__":
    run_cli(main, get_args_parser())
