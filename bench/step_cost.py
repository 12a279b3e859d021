"""Time of the search steps relative to a training step of the derived network, on CPU.

    python bench/step_cost.py                  # B=2 F=128 batch 32, 2 threads
    python bench/step_cost.py --profile        # also: where the supernet's extra time goes

Same ops, same batch: the supernet's alphas are pinned (bench/profiling.py: pin_alphas) so that its own
sampling draws the ops of a random genotype g; the derived network is build_net(g) with the same
weights.  The three steps run alternately (order rotated each repeat) and the medians are compared:
  * weight step: gate mode "sample", utils.train.weight_step (SGD Nesterov + weight decay); it
    includes the supernet's per-step sampling and its larger optimizer parameter list;
  * architecture step: "two" gates with weights frozen, forward, backward, Adam, rescale_sampled();
  * derived step: utils.train.weight_step on build_net(g).
Targets: weight / derived <= 1.15, architecture / derived <= 2.5.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/step_cost.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
from tqdm import tqdm

from bench._common import base_parser, check_args, print_figures
from models import build_net, build_supernet
from utils import train as train_utils
from utils.errors import run_cli
from bench.profiling import genotype_ops, pin_alphas, random_genotype

TARGETS = {"weight_step_over_derived": 1.15, "arch_step_over_derived": 2.5}


def get_args_parser():
    parser = base_parser("Supernet weight / architecture step time vs a derived-network training step.")
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats of each step (medians compared)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repeats first")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: this process's CPU time (time.process_time), "
                             "steadier on a busy shared machine, best with --threads 1")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of the steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


class Steps:
    """The supernet, the derived network of genotype g, their optimizers, and one batch."""

    def __init__(self, B: int, F: int, batch: int, seed: int):
        torch.manual_seed(seed)
        self.genotype = random_genotype(B, F, seed)
        self.ops = genotype_ops(self.genotype)
        self.supernet = build_supernet(B, F).train()
        self.derived = build_net(self.genotype).train()
        self.derived.load_state_dict(self.supernet.derived_state_dict(self.genotype))
        self.x, self.y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
        self.amp = train_utils.make_amp(torch.device("cpu"), "off")
        self.criterion = nn.CrossEntropyLoss()

        def sgd(model, params=None):
            groups = train_utils.param_groups(model, 1e-4, params=params)
            return torch.optim.SGD(groups, lr=0.01, momentum=0.9, nesterov=True)

        self.w_opt = sgd(self.supernet, self.supernet.weight_parameters())
        self.d_opt = sgd(self.derived)
        self.a_opt = torch.optim.Adam(self.supernet.arch_parameters(), lr=0.006, betas=(0.0, 0.999))

    # each step: an untimed preparation, then the timed call
    def prepare(self) -> None:
        pin_alphas(self.supernet, self.ops)  # the arch step moved the alphas a little

    def weight(self) -> None:
        with self.supernet.gate_mode("sample"):
            train_utils.weight_step(self.supernet, self.x, self.y, self.criterion, self.w_opt, self.amp)

    def arch(self) -> None:
        net = self.supernet
        self.a_opt.zero_grad(set_to_none=True)
        with net.gate_mode("two"), train_utils.frozen(net.weight_parameters()):
            loss = self.criterion(net(self.x), self.y)
            loss.backward()
        self.a_opt.step()
        net.rescale_sampled()

    def derived_step(self) -> None:
        train_utils.weight_step(self.derived, self.x, self.y, self.criterion, self.d_opt, self.amp)

    def check(self) -> None:
        """The supernet really ran g (pinning worked), in both step kinds."""
        for step in (self.weight, self.arch):
            self.prepare()
            step()
            if self.supernet.active_genotype() != self.genotype:
                raise RuntimeError("the pinned supernet did not run the genotype")


def measure(steps: Steps, repeats: int, warmup: int, progress: bool, clock=time.perf_counter
            ) -> dict[str, list[float]]:
    fns = {"weight": steps.weight, "arch": steps.arch, "derived": steps.derived_step}
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in tqdm(range(warmup + repeats), desc="steps", disable=not progress, leave=False):
        for k in range(len(names)):  # rotate the order: no step always runs after the same one
            name = names[(r + k) % len(names)]
            steps.prepare()
            t0 = clock()
            fns[name]()
            dt = clock() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


def profile(steps: Steps) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    for name, fn in (("derived step", steps.derived_step), ("supernet weight step", steps.weight),
                     ("architecture step", steps.arch)):
        steps.prepare()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(f"\n== {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(args) -> dict[str, float]:
    check_args(args)
    torch.set_num_threads(args.threads)
    steps = Steps(args.B, args.F, args.batch, args.seed)
    steps.check()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    times = measure(steps, args.repeats, args.warmup, not args.no_progress, clock)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"B={args.B} F={args.F} batch={args.batch} threads={args.threads} repeats={args.repeats}: "
          f"median {args.clock} ms (min..max)")
    for n, v in times.items():
        print(f"  {n:<8} {1e3 * med[n]:9.1f}  ({1e3 * min(v):.1f}..{1e3 * max(v):.1f})")
    if args.profile:
        profile(steps)
    figures = {"weight_step_over_derived": med["weight"] / med["derived"],
               "arch_step_over_derived": med["arch"] / med["derived"]}
    print_figures(figures, TARGETS)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
