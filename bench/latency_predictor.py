"""How well does a latency table predict the measured forward latency of derived networks?

For each batch size: measure the latency table entries of the space (utils.latency.table_items, the
same entries ``python -m utils.latency build`` times) and the end-to-end forward latency of ``--nets``
random derived networks (eval, inference mode, median of timed runs), then compare the table's
prediction with the measurement: mean absolute percentage error (MAPE) and Pearson r.

Table entries and networks are timed in one interleaved loop (each round calls every entry and every
network once), so that on a machine shared with other jobs both see the same load.

Clock (``--clock``): ``cpu`` (default, needs --threads 1) is the process CPU time of each call: the
forward's latency less the time the scheduler gave to other processes.  ``wall`` is the wall-clock
time, the right figure on a dedicated machine; on a busy one a 50 ms forward is preempted while a
50 us table entry is not, so wall-clock figures measure the other jobs.  Both are printed; the
headline lines use ``--clock``.

Random networks must span a real range of latencies, or r measures noise: each network draws its
own op mixture from a Dirichlet(``--concentration``) over the space's ops, then an op per decision from
that mixture, so some networks are mostly identity or pooling and others mostly convolutions.
``--space nb201`` checks the NAS-Bench-201 table (cells of one architecture in the benchmark's network).

Ends with ``name=value`` lines: latency_mape_b{batch}, latency_r_b{batch} (headline clock),
latency_{mape,r}_{other clock}_b{batch}, latency_range_b{batch} (slowest / fastest network).
Run: python bench/latency_predictor.py [--B 3 --F 160 --batches 1 32 --threads 1 --clock cpu]
     python bench/latency_predictor.py --space nb201 [--C 16 --N 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import build_net  # noqa: E402
from bench._common import add_sized_space_flags, check_args, check_cpu_clock, resolve_sized_space  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.latency import (BACKENDS, CALIBRATION, as_trained, assemble, measure, predict_genotype, table_items,
                           table_meta)  # noqa: E402
from utils.latency_table import random_architectures  # noqa: E402

STAT = {"wall": "median_ms", "cpu": "cpu_median_ms"}


# this bench's network sizes when none are given (the tree space's own defaults are the paper's large network)
SIZES = {"tree": {"B": 3, "F": 160}, "nb201": {"C": 16, "N": 5}}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="batch sizes to check")
    p.add_argument("--nets", type=int, default=20, help="random derived networks per batch size")
    p.add_argument("--device", choices=[b for b in BACKENDS if b != "cuda"], default="cpu",
                   help="latency backend (the networks run on it too)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--clock", choices=list(STAT), default="cpu",
                   help="headline clock: process CPU time (one thread; robust to other jobs) or wall clock")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per table entry / network")
    p.add_argument("--repeats", type=int, nargs="+", default=None,
                   help="timed runs per table entry / network: one, or one per batch size (50 at batch 1, 10 above)")
    p.add_argument("--min-run-ms", type=float, default=0.0, help="a timed run repeats a call until it lasts this long")
    p.add_argument("--concentration", type=float, default=0.3, help="Dirichlet concentration of a network's op mix")
    p.add_argument("--seed", type=int, default=0, help="seed of the random networks and inputs")
    p.add_argument("--calibration", type=int, default=CALIBRATION,
                   help="calibration networks of the table (python -m utils.latency build --calibration)")
    p.add_argument("--save-tables", default="", help="folder to save the tables in (empty: not saved)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_sized_space_flags(p, SIZES)
    return p


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats
    return float(stats.pearsonr(a, b)[0])


def main(args: argparse.Namespace) -> dict[str, float]:
    space, macro = resolve_sized_space(args, SIZES)
    args.repeats = args.repeats or [50 if b == 1 else 10 for b in args.batches]  # the default follows --batches
    check_args(args)
    if len(args.repeats) not in (1, len(args.batches)):
        raise UserError(f"--repeats needs one value or one per batch size ({len(args.batches)} given)")
    check_cpu_clock(args)
    repeats = dict(zip(args.batches, args.repeats * len(args.batches) if len(args.repeats) == 1 else args.repeats))
    other = "wall" if args.clock == "cpu" else "cpu"
    nets = random_architectures(space, macro, args.nets, args.concentration, args.seed)
    results: dict[str, float] = {}
    for batch in args.batches:
        items = table_items(space, macro, space.primitives, batch, args.device, seed=args.seed,
                            calibration=args.calibration)
        x = torch.randn((batch, 3, 32, 32), generator=torch.Generator().manual_seed(args.seed))
        items += [(f"bench-net{i}", as_trained(build_net(g, macro=macro), i), x) for i, g in enumerate(nets)]
        timed = measure(items, args.device, args.threads, args.warmup, repeats[batch], args.min_run_ms,
                        progress=not args.no_progress, desc=f"table + networks b{batch}")
        meas = {k: timed.pop(k) for k in list(timed) if k.startswith("bench-net")}
        table = assemble(space, macro, space.primitives, timed, table_meta(
            space, macro, space.primitives, batch, args.device, args.threads, args.warmup, repeats[batch],
            args.min_run_ms, calibration=args.calibration))
        if args.save_tables:
            size = "_".join(f"{k}{v}" for k, v in macro.items())
            table.save(Path(args.save_tables) / f"lat_{args.device}_{space.name}_{size}_b{batch}.json")
        print(f"\nbatch {batch}: {len(table.entries)} table entries + {len(nets)} networks on {args.device} "
              f"({table.meta['device_name']}, {args.threads} threads), median of {repeats[batch]} runs each")
        print(f"{'net':>3} {'free':>4} {'conv':>4} | {args.clock + ' pred':>10} {'meas':>9} {'iqr':>8} "
              f"{'err%':>6} | {other + ' pred':>10} {'meas':>9} {'err%':>6}")
        rows = []
        for i, g in enumerate(nets):
            m, r = meas[f"bench-net{i}"], []
            for clock in (args.clock, other):
                pred, got = predict_genotype(table, g, stat=STAT[clock]), m[STAT[clock]]
                r += [pred, got, 100 * (pred / got - 1)]
            rows.append(r)
            free = sum(n for op, n in g.op_counts().items() if op in space.parameter_free)
            conv = sum(g.op_counts().values()) - free
            iqr = m["spread_ms" if args.clock == "wall" else "cpu_spread_ms"]
            print(f"{i:>3} {free:>4} {conv:>4} | {r[0]:>10.3f} {r[1]:>9.3f} {iqr:>8.3f} "
                  f"{r[2]:>+6.1f} | {r[3]:>10.3f} {r[4]:>9.3f} {r[5]:>+6.1f}")
        a = np.array(rows)
        for suffix, (p, m) in (("", (a[:, 0], a[:, 1])), (f"_{other}", (a[:, 3], a[:, 4]))):
            results[f"latency_mape{suffix}_b{batch}"] = float(np.mean(np.abs(p / m - 1)) * 100)
            results[f"latency_r{suffix}_b{batch}"] = pearson(p, m)
        results[f"latency_range_b{batch}"] = float(a[:, 1].max() / a[:, 1].min())
    print(f"\n{space.name} space {space.describe_macro(macro)} device={args.device} threads={args.threads} nets={args.nets} clock={args.clock} "
          f"(mape in %, r: Pearson, range: slowest / fastest network)")
    for k, v in results.items():
        print(f"{k}={v:.4f}")
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser())
