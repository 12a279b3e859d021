"""Memory of the search steps: bytes autograd saves for backward, counted on CPU.

    python bench/memory.py                # B=2 F=128 batch 32 (about a minute on 2 cores)
    python bench/memory.py --B 1 --F 64   # quicker

Claims checked (docs/design.md): an architecture step in "two" mode saves the same memory whether the
edges hold 7 or 2 candidates (target <= 1.05), and at most 2.2x a training step of the derived
network; a weight step saves what the derived network's step saves.  "full" mode (all N paths'
outputs kept) is printed for contrast: it grows with N.  See bench/profiling.py for how bytes are
counted (unique storages, model parameters and buffers excluded).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/memory.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench._common import base_parser, check_args, print_figures
from utils.errors import run_cli
from bench.profiling import memory_figures, memory_ratios

TARGETS = {"mem_two_7_over_2": 1.05, "mem_arch_over_derived": 2.2, "mem_weight_step_over_derived": 1.05}


def get_args_parser():
    parser = base_parser("Bytes saved for backward by architecture/weight steps vs the derived network.")
    parser.add_argument("--pair", nargs=2, default=("sep_3x3", "sep_5x5"), metavar=("ACTIVE", "SECOND"),
                        help="ops pinned as the sampled pair when comparing 7 with 2 candidates")
    return parser


def main(args) -> dict[str, float]:
    check_args(args)
    torch.set_num_threads(args.threads)
    b = memory_figures(args.B, args.F, args.batch, seed=args.seed, pair=tuple(args.pair))
    print(f"B={args.B} F={args.F} batch={args.batch}: MiB saved for backward (model state excluded)")
    rows = [
        ("arch step, two, 7 candidates (pinned pair)", "two_7"),
        ("arch step, two, 2 candidates (pinned pair)", "two_2"),
        ("arch step, full, 7 candidates (pinned)", "full_7"),
        ("arch step, full, 2 candidates (pinned)", "full_2"),
        ("derived net step (all edges = active op)", "derived_pair"),
        ("arch step, two, random genotype", "arch"),
        ("weight step, sample, random genotype", "weight"),
        ("derived net step, random genotype", "derived"),
    ]
    for label, key in rows:
        print(f"  {label:<44} {b[key] / 2**20:9.2f}")
    ratios = memory_ratios(b)
    print_figures(ratios, TARGETS)
    return ratios


if __name__ == "__main__":
    run_cli(main, get_args_parser())
