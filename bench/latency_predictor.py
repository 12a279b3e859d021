"""How well does a latency table predict the measured forward latency of derived networks?

For each batch size: build a latency table on this machine (utils.latency.build_table), then for
``--nets`` random derived networks of the tree space measure the end-to-end forward latency (eval,
inference mode, median of timed runs, the same timer as the table) and compare it with the table's
prediction: mean absolute percentage error (MAPE) and Pearson r.

Random networks must span a real range of latencies, or r measures noise: each network draws its
own op mixture from a Dirichlet(``--concentration``) over the 7 ops, then an op per edge from that
mixture, so some networks are mostly identity/pooling and others mostly 7x7 separable convs.

Ends with ``name=value`` lines: latency_mape_b{batch}, latency_r_b{batch} (and the latency range).
Run: python bench/latency_predictor.py [--B 3 --F 160 --batches 1 32 --threads 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genotypes import Genotype  # noqa: E402
from models import build_net  # noqa: E402
from models.space import EDGES_PER_CELL, NUM_STAGES, PRIMITIVES  # noqa: E402
from utils.errors import run_cli  # noqa: E402
from utils.latency import BACKENDS, LatencyTable, measure, predict_genotype, table_items, table_meta  # noqa: E402


def random_genotypes(B: int, F: int, n: int, concentration: float, seed: int) -> list[Genotype]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        mix = rng.dirichlet([concentration] * len(PRIMITIVES))
        ops = rng.choice(len(PRIMITIVES), size=(NUM_STAGES * B, EDGES_PER_CELL), p=mix)
        out.append(Genotype(B, F, [[PRIMITIVES[i] for i in row] for row in ops]))
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--B", type=int, default=3, help="blocks per stage")
    p.add_argument("--F", type=int, default=160, help="final width")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="batch sizes to check")
    p.add_argument("--nets", type=int, default=20, help="random derived networks per batch size")
    p.add_argument("--device", choices=BACKENDS, default="cpu", help="latency backend (networks run on it too)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (1: on a machine shared with other jobs, more threads time the contention)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per table entry / network")
    p.add_argument("--repeats", type=int, default=15, help="timed runs per table entry / network")
    p.add_argument("--min-run-ms", type=float, default=2.0, help="a timed run repeats a call until it lasts this long")
    p.add_argument("--concentration", type=float, default=0.3, help="Dirichlet concentration of a network's op mix")
    p.add_argument("--seed", type=int, default=0, help="seed of the random networks")
    p.add_argument("--save-tables", default="", help="folder to save the tables in (empty: not saved)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def main(args: argparse.Namespace) -> dict[str, float]:
    nets = random_genotypes(args.B, args.F, args.nets, args.concentration, args.seed)
    results: dict[str, float] = {}
    for batch in args.batches:
        # Table entries and networks are timed in one interleaved loop (each round runs every entry
        # and every network once): on a machine shared with other jobs, both see the same load.
        items = table_items(args.B, args.F, PRIMITIVES, batch, args.device, seed=args.seed)
        x = torch.randn((batch, 3, 32, 32), generator=torch.Generator().manual_seed(args.seed))
        items += [(f"net{i}", build_net(g).eval(), x) for i, g in enumerate(nets)]
        timed = measure(items, args.device, args.threads, args.warmup, args.repeats, args.min_run_ms,
                        progress=not args.no_progress, desc=f"table + networks b{batch}")
        meas = {k: timed.pop(k) for k in list(timed) if k.startswith("net")}
        meta = table_meta(args.B, args.F, PRIMITIVES, batch, args.device, args.threads, args.warmup,
                          args.repeats, args.min_run_ms)
        table = LatencyTable(timed, meta)
        if args.save_tables:
            table.save(Path(args.save_tables) / f"lat_{args.device}_B{args.B}_F{args.F}_b{batch}.json")
        print(f"\nbatch {batch}: {len(table.entries)} table entries ({table.meta['device_name']}, "
              f"{table.meta['threads']} threads); median of {args.repeats} runs each")
        print(f"{'net':>3} {'identity':>8} {'sep':>4} {'pool':>4} {'pred_ms':>9} {'meas_ms':>9} {'iqr_ms':>8} "
              f"{'err%':>6} {'pred_cpu':>9} {'meas_cpu':>9} {'err%':>6}")
        rows = []
        for i, g in enumerate(nets):
            m = meas[f"net{i}"]
            p, pm = predict_genotype(table, g), predict_genotype(table, g, stat="cpu_median_ms")
            rows.append((p, m["median_ms"], pm, m["cpu_median_ms"]))
            c = g.op_counts()
            sep = c["sep_3x3"] + c["sep_5x5"] + c["sep_7x7"] + c["dil_sep_3x3"]
            pool = c["avg_pool_3x3"] + c["max_pool_3x3"]
            print(f"{i:>3} {c['identity']:>8} {sep:>4} {pool:>4} {p:>9.3f} {m['median_ms']:>9.3f} "
                  f"{m['spread_ms']:>8.3f} {100 * (p / m['median_ms'] - 1):>+6.1f} {pm:>9.3f} {m['cpu_median_ms']:>9.3f} "
                  f"{100 * (pm / m['cpu_median_ms'] - 1):>+6.1f}")
        pred, med, pred_cpu, cpus = np.array(rows).T
        results[f"latency_mape_b{batch}"] = float(np.mean(np.abs(pred / med - 1)) * 100)
        results[f"latency_r_b{batch}"] = pearson(pred, med)
        results[f"latency_mape_cpu_b{batch}"] = float(np.mean(np.abs(pred_cpu / cpus - 1)) * 100)
        results[f"latency_r_cpu_b{batch}"] = pearson(pred_cpu, cpus)
        results[f"latency_range_b{batch}"] = float(med.max() / med.min())
    print(f"\nB={args.B} F={args.F} device={args.device} threads={args.threads} nets={args.nets} "
          f"(mape in %, r: Pearson, range: slowest/fastest measured network; *_cpu_*: process CPU time)")
    for k, v in results.items():
        print(f"{k}={v:.4f}")
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser())
