"""Hardware-aware search on NAS-Bench-201: search for a latency target on this device, judged by the table.

1. A CPU latency table of the benchmark's network (``--C 16 --N 5`` by default, batch 1, one thread; built
   here unless ``--latency-table`` is given) predicts the latency of all 15,625 cells.
2. The targets are percentiles of those latencies (``--targets 25 50``: the 25th and the 50th).
3. For every target, a search of the bench's proxy supernet (bench/nb201_search.py's flags) with
   ``--latency-table --target-latency`` (the proxy has the same 6 decisions, so it searches for the latency
   of the table's network; utils/objective.py).
4. Reported per target: the searched cell's predicted latency / target, its table accuracy, the best table
   accuracy among cells predicted within the target (regret = best - searched), and the mean accuracy of the
   cells within +-5 % of the searched cell's latency (a random cell at equal latency).

    python bench/nb201_latency_targets.py --data ../data --output runs/nb201_latency

Ends with name=value lines per target p: latency_ratio_pP, acc_pP, best_within_pP, regret_pP,
random_equal_latency_pP.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import nb201_search  # noqa: E402
from models.nb201.arch import PRIMITIVES, CellGenotype  # noqa: E402
from models.nb201.space import NB201  # noqa: E402
from utils.checkpoint import save_json  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.latency_table import LatencyTable, group_costs  # noqa: E402
from models.nb201.table import NB201Table  # noqa: E402

BAND = 0.05  # "equal latency": within +-5 % of the searched cell's prediction
STAT = "cpu_median_ms"  # one thread, process CPU time: the latency an idle machine shows, measured on a busy one


def get_args_parser() -> argparse.ArgumentParser:
    p = nb201_search.get_args_parser()
    p.description = __doc__.split("\n\n")[0]
    p.set_defaults(output="runs/nb201_latency", seeds=[0])
    g = p.add_argument_group("latency targets")
    g.add_argument("--latency-table", default=None,
                   help="an NB201 latency table (python -m utils.latency build --space nb201 ...); default: build one "
                        "into OUTPUT/latency.json (--table-C, --table-N, batch 1, one thread)")
    g.add_argument("--table-C", type=int, default=16, help="the deployed network's C (table built here)")
    g.add_argument("--table-N", type=int, default=5, help="the deployed network's N (table built here)")
    g.add_argument("--targets", type=float, nargs="+", default=[25.0, 50.0],
                   help="latency targets as percentiles of the predicted latencies of all cells")
    g.add_argument("--latency-loss", choices=("add", "mul", "hinge"), default="hinge", help="the search's latency loss")
    g.add_argument("--latency-lambda", type=float, default=0.1,
                   help="lambda of the add / hinge loss (2.0 collapsed the 25th-percentile search to skips and none)")
    return p


def cell_latencies(table: LatencyTable) -> tuple[list[CellGenotype], np.ndarray]:
    """Every cell and its predicted latency (ms) in the table's network."""
    idx = np.array(list(itertools.product(range(len(PRIMITIVES)), repeat=6)))
    lat = group_costs(table, NB201, table.macro, PRIMITIVES, STAT).predict(torch.from_numpy(idx)).numpy()
    return [CellGenotype(tuple(PRIMITIVES[i] for i in row)) for row in idx], lat


def latency_table(args, out: Path) -> Path:
    if args.latency_table:
        return Path(args.latency_table)
    path = out / "latency.json"
    if not path.is_file():
        from utils.latency import build_table
        build_table(NB201, {"C": args.table_C, "N": args.table_N}, batch_size=1, device="cpu", threads=1,
                    warmup=10, repeats=100, progress=True).save(path)
    return path


def target_row(accs: np.ndarray, index: dict[str, int], lat: np.ndarray, pct: float, target: float, stage: Path,
               seed: int) -> dict:
    """``accs``, ``lat``: every cell's table accuracy and predicted latency; ``index``: cell string -> position."""
    searched = CellGenotype.from_dict(json.loads((stage / "genotype_final.json").read_text()))
    i = index[searched.to_string()]
    within = lat <= target
    near = np.abs(lat / lat[i] - 1) <= BAND
    best = float(accs[within].max())
    return {"percentile": pct, "seed": seed, "target_ms": target, "arch": searched.to_string(),
            "predicted_ms": float(lat[i]), "latency_ratio": float(lat[i] / target), "acc": float(accs[i]),
            "best_within": best, "regret": best - float(accs[i]), "random_equal_latency": float(accs[near].mean()),
            "cells_within": int(within.sum())}


def main(args: argparse.Namespace) -> dict[str, float]:
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds has repeats: {args.seeds}")
    if any(not 0 < t < 100 for t in args.targets):
        raise UserError("--targets are percentiles strictly between 0 and 100")
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    out = Path(args.output)
    acc = NB201Table.load(args.table)
    table_path = latency_table(args, out)
    table = LatencyTable.load(table_path)
    if table.space is not NB201 or STAT not in next(iter(table.entries.values())):
        raise UserError(f"{table_path} is not an NB201 table with CPU-time entries (build it with --device cpu)")
    cells, lat = cell_latencies(table)
    accs = np.array([acc.lookup(c) for c in cells])  # once: 15,625 lookups
    index = {c.to_string(): i for i, c in enumerate(cells)}
    rows, figures = [], {}
    base_flags = list(args.search_flags)
    for pct in args.targets:
        target = float(np.percentile(lat, pct))
        for seed in args.seeds:
            stage = out / f"target_p{pct:g}_s{seed}"
            args.search_flags = base_flags + ["--latency-table", str(table_path), "--target-latency", f"{target:.6f}",
                                              "--latency-loss", args.latency_loss, "--latency-lambda",
                                              str(args.latency_lambda), "--latency-stat", STAT]
            nb201_search.run_search(args, seed, stage)
            rows.append(target_row(accs, index, lat, pct, target, stage, seed))
            r = rows[-1]
            print(f"p{pct:g} seed {seed}: target {target:.3f} ms, {r['arch']} predicted {r['predicted_ms']:.3f} ms "
                  f"({r['latency_ratio']:.3f} x), acc {r['acc']:.2f}, best within {r['best_within']:.2f}, "
                  f"regret {r['regret']:.2f}, random at equal latency {r['random_equal_latency']:.2f}", flush=True)
        mine = [r for r in rows if r["percentile"] == pct]
        for key in ("latency_ratio", "acc", "best_within", "regret", "random_equal_latency"):
            figures[f"{key}_p{pct:g}"] = statistics.mean(r[key] for r in mine)
    save_json({"settings": vars(args), "latency_table": str(table_path), "rows": rows, "summary": figures},
              out / "results.json")
    for k, v in figures.items():
        print(f"{k}={v:.4f}")
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
