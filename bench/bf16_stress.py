"""bf16 autocast on the CPU: does the tiny search stay finite, and how far do its alphas end from float32's?

    python bench/bf16_stress.py                  # 30 seeds, about 5 minutes on 2 cores
    python bench/bf16_stress.py --seeds 5 --threads 1

Each seed runs the tiny search of the tests (tests/test_ddp_search.py's bf16 test: B=1 F=64, 80 synthetic
images, 1 warm-up + 2 search epochs, an architecture step every second weight step, channels_last) twice
in this process: with ``--amp bf16`` and with ``--amp off`` (float32), same seed and data.  A run ends
finite when it completes and every alpha is finite (a non-finite loss or alpha stops a search with the
divergence error; such a seed is counted and printed here, not raised).

Every architecture-gradient computation of the binary gates is watched (models/mixed_op.py,
_BinaryGate.backward): the largest finite |dL/dy| and |o_s0 - o_s1| it received, and how often either,
or the gradient it returned, held a non-finite value, so that a non-finite alpha is traced to its input.

Ends with name=value lines: finite_runs, seeds, max_alpha_diff (over seeds: max |alpha_bf16 -
alpha_fp32|), median_alpha_diff, max_rel_alpha_diff (the same over max |alpha_fp32|), max_weight_bf16 /
max_weight_fp32 (the largest |weight| after the finite bf16 / all float32 searches), max_alpha_diff_fp32_layout
(the noise floor: max |alpha_fp32 - alpha_fp32 in the other memory format|, the same arithmetic summed in
another order), gate_max_grad_y, gate_max_diff, gate_nonfinite_grad_y, gate_nonfinite_diff,
gate_nonfinite_outputs (bf16 runs).

Why alphas differ at all: Adam with beta1 = 0 makes its first steps ~lr * sign(gradient), so a small gate
gradient whose sign bf16 rounding (or another summation order) flips moves alpha by 2 lr the other way.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/bf16_stress.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import search_cifar
from bench._common import print_figures
from models.tree import ops as operations
from utils.checkpoint import load_checkpoint
from utils.errors import UserError, run_cli
from utils.synthetic import write_synthetic_cifar


class GateWatch:
    """Wraps _BinaryGate.backward for the duration of a ``with`` block and records what it sees.  A wrapper
    (restored on exit) rather than a hook in models/: the watch is a measurement, not part of the search."""

    def __init__(self):
        self.calls = 0
        self.max_grad_y = self.max_diff = 0.0
        self.nonfinite_grad_y = self.nonfinite_diff = self.nonfinite_outputs = 0

    def __enter__(self) -> "GateWatch":
        self._real = operations._BinaryGate.backward
        real = self._real

        def backward(ctx, grad_y):
            diff = ctx.saved_tensors[2]
            out = real(ctx, grad_y)
            self.calls += 1
            finite_g, finite_d = bool(torch.isfinite(grad_y).all()), bool(torch.isfinite(diff).all())
            self.nonfinite_grad_y += not finite_g
            self.nonfinite_diff += not finite_d
            self.nonfinite_outputs += not bool(torch.isfinite(out[0]).all())
            if finite_g:
                self.max_grad_y = max(self.max_grad_y, float(grad_y.abs().max()))
            if finite_d:
                self.max_diff = max(self.max_diff, float(diff.abs().max()))
            return out

        operations._BinaryGate.backward = staticmethod(backward)
        return self

    def __exit__(self, *exc) -> None:
        operations._BinaryGate.backward = staticmethod(self._real)


def tiny_search(data: Path, out: Path, seed: int, amp: str, channels_last: str) -> tuple[torch.Tensor, float]:
    """The final alphas and the largest |weight| of one tiny search (tests/test_ddp_search.py's flags, its
    output silenced)."""
    argv = ["--data", str(data), "--no-download", "--arch-split", "16", "--B", "1", "--F", "64",
            "--warmup-epochs", "1", "--epochs", "2", "--batch-size", "16", "--arch-batch-size", "16",
            "--arch-every", "2", "--output", str(out), "--no-progress", "--no-tensorboard", "--no-augment",
            "--seed", str(seed), "--amp", amp, "--channels-last", channels_last]
    with contextlib.redirect_stdout(io.StringIO()):
        alphas = search_cifar.main(search_cifar.get_args_parser().parse_args(argv))["alphas"].float()
    state = load_checkpoint(out / "checkpoint.pth")["model"]
    return alphas, max(float(v.abs().max()) for v in state.values() if v.is_floating_point())


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=30, help="searches per precision (seeds first-seed, first-seed+1, ...)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed")
    p.add_argument("--channels-last", choices=("on", "off"), default="on", help="memory format of the searches")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.seeds < 1 or args.threads < 0:
        raise UserError(f"--seeds must be >= 1 and --threads >= 0, got {args.seeds} and {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    diffs, rel, finite, weights, floor = [], [], 0, {"fp32": [], "bf16": []}, []
    other = {"on": "off", "off": "on"}[args.channels_last]
    watch = GateWatch()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_synthetic_cifar(data, per_batch=16, n_test=16, seed=0)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            ref, w = tiny_search(data, Path(tmp) / f"fp32_{seed}", seed, "off", args.channels_last)
            weights["fp32"].append(w)
            ref_other, _ = tiny_search(data, Path(tmp) / f"fp32o_{seed}", seed, "off", other)
            floor.append(float((ref_other - ref).abs().max()))
            try:
                with watch:
                    got, w = tiny_search(data, Path(tmp) / f"bf16_{seed}", seed, "bf16", args.channels_last)
            except UserError as e:  # a diverged search (run.diverged); the float32 run with the same flags
                print(f"seed {seed}: bf16 search stopped: {e}")  # completed, so it is not bad input
                continue
            if not bool(torch.isfinite(got).all()):
                print(f"seed {seed}: non-finite alpha at the end of the bf16 search")
                continue
            finite += 1
            weights["bf16"].append(w)
            diffs.append(float((got - ref).abs().max()))
            rel.append(diffs[-1] / float(ref.abs().max()))
            print(f"seed {seed}: max |alpha_bf16 - alpha_fp32| = {diffs[-1]:.2e} (max |alpha_fp32| "
                  f"{float(ref.abs().max()):.2e}; float32 in the other layout: {floor[-1]:.2e}); max |weight| "
                  f"bf16 {w:.3g}, fp32 {weights['fp32'][-1]:.3g}", flush=True)
    print(f"{watch.calls} gate gradients in the bf16 runs: max finite |dL/dy| {watch.max_grad_y:.3g}, max finite "
          f"|o_s0 - o_s1| {watch.max_diff:.3g}; non-finite dL/dy {watch.nonfinite_grad_y}, o_s0 - o_s1 "
          f"{watch.nonfinite_diff}, gradients returned {watch.nonfinite_outputs}")
    figures = {"finite_runs": finite, "seeds": args.seeds,
               "max_alpha_diff": max(diffs, default=float("nan")),
               "median_alpha_diff": statistics.median(diffs) if diffs else float("nan"),
               "max_rel_alpha_diff": max(rel, default=float("nan")),
               "max_weight_bf16": max(weights["bf16"], default=float("nan")), "max_weight_fp32": max(weights["fp32"]),
               "max_alpha_diff_fp32_layout": max(floor),
               "gate_max_grad_y": watch.max_grad_y, "gate_max_diff": watch.max_diff,
               "gate_nonfinite_grad_y": watch.nonfinite_grad_y, "gate_nonfinite_diff": watch.nonfinite_diff,
               "gate_nonfinite_outputs": watch.nonfinite_outputs}
    print_figures(figures)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
