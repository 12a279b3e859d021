"""Helpers shared by the benchmark scripts: common flags and the closing ``name=value`` lines.

Benchmarks print ratios measured in one run (absolute numbers on a shared machine are noisy) and
end with one ``name=value`` line per headline figure, so that scripts and people can grep them.
"""
from __future__ import annotations

import argparse

from models.operations import check_candidates
from models.space import check_macro
from utils.errors import UserError


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--B", type=int, default=2, help="blocks per stage of the supernet")
    parser.add_argument("--F", type=int, default=128, help="final width (a multiple of 8 >= 64)")
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs, weights and random genotype")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (torch.set_num_threads)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Bad flags -> one-line UserError (run_cli prints it), not a traceback from deep in a model."""
    if getattr(args, "space", None) in (None, "tree"):
        try:
            check_macro(args.B, args.F)
        except ValueError as e:
            raise UserError(f"--B/--F: {e}") from None
    for flag in ("batch", "threads", "repeats"):
        values = getattr(args, flag, 1)
        if any(v < 1 for v in (values if isinstance(values, list) else [values])):
            raise UserError(f"--{flag} must be >= 1, got {values}")
    if getattr(args, "pair", None) is not None:
        try:
            check_candidates(args.pair)
        except ValueError as e:
            raise UserError(f"--pair: {e}") from None


def print_figures(figures: dict[str, float], targets: dict[str, float] | None = None) -> None:
    """One ``name=value`` line per figure (the last lines of the output), after a target summary."""
    targets = targets or {}
    for name, limit in targets.items():
        verdict = "ok" if figures[name] <= limit else "MISSED"
        print(f"# {name}: {figures[name]:.3f} (target <= {limit}) {verdict}")
    for name, value in figures.items():
        print(f"{name}={value:.4f}")
