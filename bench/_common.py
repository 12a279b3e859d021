"""Helpers shared by the benchmark scripts: common flags and the closing ``name=value`` lines.

Benchmarks print ratios measured in one run (absolute numbers on a shared machine are noisy) and
end with one ``name=value`` line per headline figure, so that scripts and people can grep them.
"""
from __future__ import annotations

import argparse

from models.tree.ops import check_candidates
from models.tree.arch import check_macro
from utils.errors import UserError
from utils.space_args import add_space_flags, resolve_space


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


def add_sized_space_flags(parser: argparse.ArgumentParser, sizes: dict[str, dict[str, int]]) -> None:
    """--space and its size flags (utils.space_args), the help naming ``sizes``: this bench's sizes per
    space where none are given (the spaces' own defaults are full-size networks)."""
    add_space_flags(parser, title="search space (sizes here default to: "
                                  + "; ".join(f"{k}: " + " ".join(f"{f}={v}" for f, v in m.items())
                                              for k, m in sizes.items()) + ")")


def resolve_sized_space(args: argparse.Namespace, sizes: dict[str, dict[str, int]]):
    """(space, macro) of the flags, the size flags not given taken from ``sizes`` (add_sized_space_flags)."""
    for flag, value in sizes[args.space or "tree"].items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    return resolve_space(args)


def check_cpu_clock(args: argparse.Namespace) -> None:
    """Process CPU time is a latency only for one thread (it sums over threads)."""
    if args.clock == "cpu" and args.threads != 1:
        raise UserError("--clock cpu needs --threads 1 (CPU time sums over threads); use --clock wall")
