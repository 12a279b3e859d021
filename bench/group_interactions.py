"""Do the input groups of one cell / block add up?  The part of a latency table that a sum cannot hold.

A latency table prices the ops of each input group together (utils/latency_table.py) and a network as the
sum over its groups.  This bench measures what that sum misses inside one part of the network (a
NAS-Bench-201 cell, a tree block; the first edge shape, ``--context``): for every op, the part with the
baseline on every edge, the op on the edges of one group at a time (the baseline elsewhere), and the op
on every edge, all timed in one interleaved loop.  ``sum_over_all_<op>`` = (baseline part + sum over the
groups of (group's part - baseline part)) / the all-op part: 1 when the groups add up, above 1 when the
part with every group changed costs less than the changes one by one (layout changes, fused Adds and
activations shared between groups).  With ``--device onnxruntime --graphs`` the op counts of onnxruntime's
optimized graph of each part are printed too (what the runtime actually runs).

    python bench/group_interactions.py --space nb201 --device onnxruntime --graphs
    python bench/group_interactions.py --space tree --B 3 --F 160

Ends with name=value lines: sum_over_all_<op> per op.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench._common import add_sized_space_flags, check_args, check_cpu_clock, resolve_sized_space  # noqa: E402
from bench.latency_predictor import SIZES, STAT  # noqa: E402  (the latency bench's network sizes and clocks)
from utils.errors import UserError, run_cli  # noqa: E402
from utils.latency import BACKENDS, as_trained, measure, onnx_session  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=[b for b in BACKENDS if b != "cuda"], default="onnxruntime",
                   help="latency backend")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--context", type=int, default=0,
                   help="which edge shape's part (0: the first, at the input resolution)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--clock", choices=list(STAT), default="cpu",
                   help="process CPU time (needs --threads 1; robust to other jobs) or wall clock")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per part")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per part (the median is kept)")
    p.add_argument("--graphs", action="store_true",
                   help="print the op counts of onnxruntime's optimized graph of every part (--device onnxruntime)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_sized_space_flags(p, SIZES)
    return p


def node_label(node) -> str:
    """A node's type, with what onnxruntime fused into a convolution: ``+sum`` (an Add of its output with
    another tensor: the 4th input of its blocked-layout Conv) and ``+<activation>``."""
    label = node.op_type
    if node.op_type in ("Conv", "FusedConv"):
        if len(node.input) >= 4 and node.input[3]:
            label += "+sum"
        for a in node.attribute:
            if a.name == "activation":
                label += "+" + a.s.decode()
    return label


def optimized_op_counts(module: torch.nn.Module, x: torch.Tensor, threads: int) -> dict[str, int]:
    """Node labels (node_label) of the graph onnxruntime runs for ``module``: its optimized model, written
    by the session."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "optimized.onnx")
        onnx_session(module, x, threads, optimized_path=path)
        return dict(sorted(collections.Counter(node_label(n) for n in onnx.load(path).graph.node).items()))


def main(args: argparse.Namespace) -> dict[str, float]:
    space, macro = resolve_sized_space(args, SIZES)
    check_args(args)
    check_cpu_clock(args)
    if args.graphs and args.device != "onnxruntime":
        raise UserError("--graphs shows onnxruntime's optimized graphs: use it with --device onnxruntime")
    contexts = space.latency_contexts(macro, 32)
    if not 0 <= args.context < len(contexts):
        raise UserError(f"--context must be in 0..{len(contexts) - 1} (this network has {len(contexts)} edge shapes)")
    ctx, groups = contexts[args.context], space.input_groups
    base_op = space.baseline_for(ctx.shape)
    n_edges = sum(len(g) for g in groups)
    ops = [op for op in space.primitives if op != base_op and space.allows(op, ctx.shape)]

    def part(assign: dict[int, str]) -> list[str]:
        out = [base_op] * n_edges
        for e, op in assign.items():
            out[e] = op
        return out

    variants = {"base": part({})}
    for op in ops:
        for i, g in enumerate(groups):
            variants[f"{op}:group{i}"] = part({e: op for e in g})
        variants[f"{op}:all"] = part({e: op for e in range(n_edges)})
    x = torch.randn((args.batch, *ctx.in_shape), generator=torch.Generator().manual_seed(0))
    items = [(k, as_trained(ctx.build(v), i), x) for i, (k, v) in enumerate(variants.items())]
    timed = measure(items, args.device, args.threads, args.warmup, args.repeats, progress=not args.no_progress, desc="parts")
    stat = STAT[args.clock]
    base = timed["base"][stat]
    print(f"\n{space.name} {space.describe_macro(macro)}: the part {ctx.key}, {len(groups)} input groups "
          f"{[len(g) for g in groups]}, {args.device}, batch {args.batch}, {args.clock} clock, "
          f"median of {args.repeats}; baseline part {base:.4f} ms")
    results = {}
    for op in ops:
        deltas = [timed[f"{op}:group{i}"][stat] - base for i in range(len(groups))]
        whole = timed[f"{op}:all"][stat]
        results[f"sum_over_all_{op}"] = (base + sum(deltas)) / whole
        print(f"{op:>16}: groups alone {' '.join(f'{d:+.4f}' for d in deltas)} ms; baseline + their sum "
              f"{base + sum(deltas):.4f} ms, every edge {whole:.4f} ms")
    if args.graphs:
        print("\nonnxruntime's optimized graphs (node type: count)")
        for name, module, _ in items:
            print(f"{name:>24}: {optimized_op_counts(module, x, args.threads)}")
    print()
    for k, v in results.items():
        print(f"{k}={v:.4f}")
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser())
