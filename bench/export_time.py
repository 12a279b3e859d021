"""ONNX exporters side by side: export + check time, file size, opset, onnxruntime agreement and latency.

    python bench/export_time.py                         # the released network (proxyless_cifar, B=18 F=400)
    python bench/export_time.py --random 6 200          # a random genotype at B=6 F=200
    python bench/export_time.py --exporters torchscript # only export_onnx.py's default

Every exporter writes the same network (random weights, BN calibrated, as export_onnx.py without a
checkpoint) and goes through export_onnx.py's own check: onnx.checker (full), a symbolic batch axis,
onnxruntime against PyTorch at --batch-sizes within --atol.  ``export_s`` is the wall-clock time of the
export and that check (what `export_onnx.py --latency-runs 0` spends after building the network); the
onnxruntime latency is the median of --latency-runs batch-1 runs, the exporters' sessions timed in one
interleaved loop so that they see the same load.

Exporters: torchscript (export_onnx.py's default), dynamo (torch.export + onnxscript's optimizer,
``--exporter dynamo``), dynamo-noopt (the same without the optimizer; not offered by export_onnx.py).
Ends with name=value lines: export_s (the default exporter on the chosen network), export_s_<exporter>,
ort_ms_<exporter>, and export_<exporter>_over_torchscript / ort_<exporter>_over_torchscript.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/export_time.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

import export_onnx
import genotypes
from bench._common import print_figures
from models import build_net, count_parameters
from models.space import EDGES_PER_CELL, NUM_STAGES, PRIMITIVES, SpaceError, check_macro
from utils.device import seed_everything
from utils.errors import UserError, run_cli

VARIANTS = {
    "torchscript": lambda model, path, opset: export_onnx.export_torchscript(model, path, opset),
    "dynamo": lambda model, path, opset: export_onnx.export_dynamo(model, path, opset, optimize=True),
    "dynamo-noopt": lambda model, path, opset: export_onnx.export_dynamo(model, path, opset, optimize=False),
}
DEFAULT = "torchscript"  # export_onnx.py's --exporter default
TARGETS = {"export_s": 60.0}  # the released network, export + check


def random_genotype(B: int, F: int, seed: int) -> genotypes.Genotype:
    rng = np.random.default_rng(seed)
    ops = rng.choice(len(PRIMITIVES), size=(NUM_STAGES * B, EDGES_PER_CELL))
    return genotypes.Genotype(B, F, [[PRIMITIVES[i] for i in row] for row in ops])


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--genotype", default="proxyless_cifar", help="named genotype or genotype JSON file")
    p.add_argument("--random", type=int, nargs=2, default=None, metavar=("B", "F"),
                   help="instead of --genotype: a random genotype of this size (drawn with --seed)")
    p.add_argument("--exporters", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="exporters to compare")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (None: each exporter's own)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="batch sizes of the agreement check")
    p.add_argument("--atol", type=float, default=1e-4, help="the check's largest max-abs difference of the logits")
    p.add_argument("--latency-runs", type=int, default=30, help="timed batch-1 onnxruntime runs per exporter")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads for onnxruntime and torch (0: default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and random genotype")
    return p


def main(args: argparse.Namespace) -> dict[str, float]:
    if min(args.batch_sizes) < 1 or args.latency_runs < 1 or args.threads < 0:
        raise UserError("--batch-sizes and --latency-runs must be >= 1, --threads >= 0")
    if args.random is not None:
        try:
            check_macro(*args.random)
        except SpaceError as e:
            raise UserError(f"--random B F: {e}") from None
        genotype = random_genotype(*args.random, args.seed)
    else:
        genotype = genotypes.get(args.genotype)
    seed_everything(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = build_net(genotype).eval()
    export_onnx.calibrate_bn(model)
    print(f"network: B={genotype.B} F={genotype.F}, {count_parameters(model):,} parameters")
    rows, sessions = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.exporters:
            path = Path(tmp) / f"{name}.onnx"
            t0 = time.perf_counter()
            VARIANTS[name](model, path, args.opset)
            sessions[name], rows[name] = export_onnx.check_onnx(model, path, args.batch_sizes, args.atol,
                                                                args.threads, args.seed)
            rows[name]["export_s"] = time.perf_counter() - t0
            print(f"{name}: export and check {rows[name]['export_s']:.1f} s")
        x = {export_onnx.INPUT_NAME: torch.randn(1, 3, model.image_size, model.image_size).numpy()}
        times = {name: [] for name in sessions}
        for _ in range(3):  # warm-up
            for s in sessions.values():
                s.run([export_onnx.OUTPUT_NAME], x)
        for _ in range(args.latency_runs):
            for name, s in sessions.items():
                t0 = time.perf_counter()
                s.run([export_onnx.OUTPUT_NAME], x)
                times[name].append(time.perf_counter() - t0)
    for name in rows:
        rows[name]["ort_ms"] = statistics.median(times[name]) * 1e3

    diff_cols = " | ".join(f"max diff b{bs}" for bs in args.batch_sizes)
    print(f"\n| exporter | export + check (s) | file (MiB) | opset | {diff_cols} | onnxruntime b1 (ms) |")
    print("|---|---|---|---|" + "---|" * len(args.batch_sizes) + "---|")
    for name, r in rows.items():
        diffs = " | ".join(f"{r['max_abs_diff'][bs]:.1e}" for bs in args.batch_sizes)
        print(f"| {name} | {r['export_s']:.1f} | {r['bytes'] / 2**20:.1f} | {r['opset']} | {diffs} | "
              f"{r['ort_ms']:.1f} |")
    figures = {}
    if DEFAULT in rows:
        figures["export_s"] = rows[DEFAULT]["export_s"]
    for name, r in rows.items():
        figures[f"export_s_{name}"] = r["export_s"]
        figures[f"ort_ms_{name}"] = r["ort_ms"]
    if DEFAULT in rows:
        for name, r in rows.items():
            if name != DEFAULT:
                figures[f"export_{name}_over_{DEFAULT}"] = r["export_s"] / rows[DEFAULT]["export_s"]
                figures[f"ort_{name}_over_{DEFAULT}"] = r["ort_ms"] / rows[DEFAULT]["ort_ms"]
    released = args.random is None and genotype == genotypes.PROXYLESS_CIFAR
    print_figures(figures, TARGETS if released and "export_s" in figures else None)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
