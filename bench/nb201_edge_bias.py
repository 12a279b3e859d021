"""Which op does a NAS-Bench-201 supernet prefer on one edge, and does the table agree?

Kendall tau over uniformly drawn cells (bench/nb201_ranking.py) says how far a supernet can be trusted
on the whole; this bench looks at one edge.  For ``--contexts`` cells drawn uniformly (seeded, the same
draw for every checkpoint), the chosen ``--edge`` takes every candidate in turn while the other five
edges stay: the supernet's accuracy of each variant (gates fixed, BN recalibrated on its own paths,
``--eval-images`` test images: nb201_ranking.supernet_accuracies) against the table's.  Why: every cell
our searches found had a convolution on 0->3, while 48 of the table's top 50 cells have ``skip_connect``
there (the cell's residual; with a 3x3 convolution on 0->3 the best cell is 93.94 % and only 29 cells reach
93.6 %).  A supernet that ranks the op of an edge against the table in most contexts steers every
search away from the top cells, whatever the search does with its ranking.

    python bench/nb201_edge_bias.py runs/nb201_bench/search_s0 --data ../data --edge 0-\\>3

Per checkpoint, per candidate: mean accuracy (supernet, table) over the contexts and how often the op
ranks first on the edge (supernet, table); ends with ``first_agree=`` (share of contexts where the
supernet's first op is the table's) and ``first_<op>_supernet=`` / ``first_<op>_table=`` lines.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.nb201_ranking import add_checkpoint_args, open_search, search_accuracies  # noqa: E402
from models.nb201.arch import EDGE_NAMES, CellGenotype  # noqa: E402
from models.nb201.table import NB201Table, column_for  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402


def variants(candidates: tuple[str, ...], edge: int, contexts: int, seed: int,
             context_ops: tuple[str, ...] | None = None) -> list[list[CellGenotype]]:
    """``contexts`` cells drawn uniformly (the other edges from ``context_ops``, default: the candidates),
    each as len(candidates) cells that differ on ``edge`` only."""
    rng, pool = random.Random(seed), context_ops or candidates
    out = []
    for _ in range(contexts):
        ops = [rng.choice(pool) for _ in range(len(EDGE_NAMES))]
        out.append([CellGenotype(tuple(ops[:edge]) + (op,) + tuple(ops[edge + 1:])) for op in candidates])
    return out


def first_share(scores: list[list[float]], candidates: tuple[str, ...]) -> dict[str, float]:
    """Per candidate, the share of contexts where it scores highest (a tie: shared equally)."""
    share = dict.fromkeys(candidates, 0.0)
    for row in scores:
        top = [i for i, v in enumerate(row) if v == max(row)]
        for i in top:
            share[candidates[i]] += 1 / len(top) / len(scores)
    return share


def edge_bias(supernet_scores: list[list[float]], table_scores: list[list[float]],
              candidates: tuple[str, ...]) -> dict:
    """The figures of one checkpoint from per-context scores (rows: contexts, columns: candidates)."""
    agree = sum(max(range(len(s)), key=s.__getitem__) == max(range(len(t)), key=t.__getitem__)
                for s, t in zip(supernet_scores, table_scores)) / len(supernet_scores)
    n = len(supernet_scores)
    return {"first_agree": agree,
            "first_supernet": first_share(supernet_scores, candidates),
            "first_table": first_share(table_scores, candidates),
            "mean_supernet": {c: sum(r[i] for r in supernet_scores) / n for i, c in enumerate(candidates)},
            "mean_table": {c: sum(r[i] for r in table_scores) / n for i, c in enumerate(candidates)}}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_checkpoint_args(p)
    p.add_argument("--edge", default="0->3", choices=EDGE_NAMES, help="the edge whose op varies")
    p.add_argument("--contexts", type=int, default=30, help="cells drawn uniformly; the edge varies in each")
    p.add_argument("--context-ops", nargs="+", default=None,
                   help="the ops the other edges draw from (default: the supernet's candidates); e.g. "
                        "nor_conv_1x1 nor_conv_3x3: the region of the table's top cells")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    if min(args.contexts, args.eval_images, args.calib_batches, args.threads) < 1:
        raise UserError("--contexts, --eval-images, --calib-batches and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    table, datasets, out = NB201Table.load(args.table), {}, []
    edge = EDGE_NAMES.index(args.edge)
    for path in args.checkpoints:
        supernet, saved, train, test = open_search(path, args.data, datasets)
        cands = tuple(supernet.candidates)
        extra = sorted(set(args.context_ops or ()) - set(cands))
        if extra:
            raise UserError(f"--context-ops {', '.join(extra)}: not a candidate of {path} ({', '.join(cands)})")
        groups = variants(cands, edge, args.contexts, args.seed, tuple(args.context_ops or ()))
        accs = search_accuracies(supernet, saved, [c for g in groups for c in g], train, test, args)
        column, k = column_for(saved["args"]["dataset"]), len(cands)
        sup = [accs[i * k:(i + 1) * k] for i in range(len(groups))]
        tab = [[table.lookup(c, column) for c in g] for g in groups]
        r = edge_bias(sup, tab, cands)
        r.update(checkpoint=str(path), epoch=saved["epoch"], edge=args.edge)
        out.append(r)
        print(f"{path} (after epoch {r['epoch']}), edge {args.edge}, {args.contexts} contexts of "
              f"{', '.join(args.context_ops or cands)}:", flush=True)
        print(f"  {'op':<14} {'supernet acc':>12} {'table acc':>10} {'first (supernet)':>17} {'first (table)':>14}")
        for c in cands:
            print(f"  {c:<14} {r['mean_supernet'][c]:>12.2f} {r['mean_table'][c]:>10.2f} "
                  f"{r['first_supernet'][c]:>17.2f} {r['first_table'][c]:>14.2f}")
        print(f"first_agree={r['first_agree']:.4f}", flush=True)
        for c in cands:
            print(f"first_{c}_supernet={r['first_supernet'][c]:.4f}\nfirst_{c}_table={r['first_table'][c]:.4f}")
    return out


if __name__ == "__main__":
    run_cli(main, get_args_parser())
