"""Is each released ProxylessNAS network fastest on its own hardware?  The CPU column, on this machine.

The paper's claim (ProxylessNAS, ICLR 2019, the specialization table and figure): each of ProxylessNAS-GPU,
-CPU and -Mobile is fastest on the hardware it was searched for; on CPU, ProxylessNAS-CPU is the fastest of
the three.  The paper's own latencies are not reproduced here (they are not available offline); this bench
tests the order and the ratios of the CPU column on this CPU.

The three networks are the released ones, exactly (models/mbconv: NAMED, build_derived), at ``--batch``
images per call (default 1), 1000 classes, ``--image-size`` px, with random weights and distinct BatchNorm
values as training leaves them (utils.latency.as_trained: the latency tables' rule; latency does not depend
on the values).  Backends:

* ``torch``: eager PyTorch on the CPU, eval mode, inference mode (no autograd), ``--threads`` intra-op threads.
* ``ort``: onnxruntime's CPU provider; each network exported once (legacy TorchScript exporter, in memory:
  utils.latency.onnx_session, the latency tables' exporter) and run in a session with a deployment's options
  (every graph optimization, ``--threads`` intra-op threads, one inter-op thread: utils.latency.ort_options).

Timing is utils.latency.measure: each network warmed up, then ``--repeats`` interleaved rounds per backend
(a round runs each network once), so that load from other jobs or a clock change hits the three alike; the
median of the runs is kept, with the wall clock and the process CPU time of every call.  ``--clock cpu``
(the default; needs --threads 1) ranks by process CPU time, the latency an idle machine would show when
other jobs share this one; ``--clock wall`` ranks by the wall clock, the right figure on an idle machine.
The ratios compare networks within one backend: the backends run one after the other.

Ends with name=value lines (per backend B in torch, ort): B_wall_ms_<net> and B_cpu_ms_<net> (medians, ms),
B_fastest (headline clock), B_fastest_<other clock>, B_<gpu|cpu|mobile>_over_fastest (>= 1),
B_gpu_over_cpu and B_mobile_over_cpu (> 1: ProxylessNAS-CPU is the faster), B_claim_holds (yes/no), and
claim_holds (yes / no / mixed over the backends).
Run: python bench/specialization.py [--backends torch ort --repeats 60 --warmup 10 --threads 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import check_cpu_clock  # noqa: E402
from models.mbconv import NAMED, build_derived, check_image_size  # noqa: E402
from models.spaces import count_parameters, multiply_adds  # noqa: E402
from utils.device import device_name  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.latency import as_trained, check_backend, measure  # noqa: E402

NETS = ("proxyless_gpu", "proxyless_cpu", "proxyless_mobile")
SHORT = {n: n.split("_", 1)[1] for n in NETS}  # gpu, cpu, mobile: the figures' names
OWN = "proxyless_cpu"  # the network the paper searched for the CPU
BACKENDS = {"torch": "cpu", "ort": "onnxruntime"}  # this bench's name -> utils.latency.measure's backend
STAT = {"wall": "median_ms", "cpu": "cpu_median_ms"}
SPREAD = {"wall": "spread_ms", "cpu": "cpu_spread_ms"}
NUM_CLASSES = 1000
CLAIM = ("each network is fastest on the hardware it was searched for; on CPU, ProxylessNAS-CPU is the fastest "
         "of the three")


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written (its list and paragraphs), the flags with their defaults."""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    p.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS),
                   help="torch: eager PyTorch on the CPU; ort: onnxruntime CPU session of each network's ONNX export")
    p.add_argument("--repeats", type=int, default=60,
                   help="timed rounds per backend (a round runs each network once; the median is kept)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls of each network before timing")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of torch and of the onnxruntime sessions")
    p.add_argument("--clock", choices=list(STAT), default="cpu",
                   help="the clock that ranks the networks: process CPU time (one thread; robust to other jobs) "
                        "or wall clock (both are printed)")
    p.add_argument("--batch", type=int, default=1,
                   help="images per call (the mobile column is batch 1; a server may batch)")
    p.add_argument("--image-size", type=int, default=224,
                   help="square input size in px (the paper's 224; a multiple of 32 from 64 px)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, BatchNorm values and input")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def check(args: argparse.Namespace) -> None:
    """Bad flags -> one-line UserError / SpaceError (run_cli prints it) before any network is built."""
    for flag in ("repeats", "threads", "batch"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    check_cpu_clock(args)
    check_image_size(args.image_size)
    for b in args.backends:
        check_backend(BACKENDS[b])  # onnxruntime installed?


def networks(image_size: int, seed: int) -> dict[str, torch.nn.Module]:
    return {n: as_trained(build_derived(NAMED[n], NUM_CLASSES, image_size), seed + i) for i, n in enumerate(NETS)}


def rank(timed: dict[str, dict], stat: str) -> tuple[str, dict[str, float]]:
    """(fastest network, each network's time over the fastest's) by ``stat``."""
    fastest = min(NETS, key=lambda n: timed[n][stat])
    return fastest, {n: timed[n][stat] / timed[fastest][stat] for n in NETS}


def main(args: argparse.Namespace) -> dict[str, float | str]:
    check(args)
    other = "wall" if args.clock == "cpu" else "cpu"
    torch.manual_seed(args.seed)
    nets = networks(args.image_size, args.seed)
    x = torch.randn((args.batch, 3, args.image_size, args.image_size),
                    generator=torch.Generator().manual_seed(args.seed))
    print(f"paper's claim (ProxylessNAS, ICLR 2019): {CLAIM}")
    print(f"here: {device_name('cpu')}, torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"{args.image_size} px, {NUM_CLASSES} classes; median of {args.repeats} interleaved rounds after "
          f"{args.warmup} warm-up calls; ranked by the {args.clock} clock")
    for n, net in nets.items():
        print(f"  {n:<17} {count_parameters(net) / 1e6:6.2f} M parameters, "
              f"{multiply_adds(NAMED[n], args.image_size, NUM_CLASSES) / 1e6:7.1f} M multiply-adds", flush=True)
    figures: dict[str, float | str] = {}
    verdicts = []
    for b in args.backends:
        items = [(n, net, x) for n, net in nets.items()]
        timed = measure(items, BACKENDS[b], args.threads, args.warmup, args.repeats, progress=not args.no_progress,
                        desc=b)
        fastest, ratio = rank(timed, STAT[args.clock])
        fastest_other, _ = rank(timed, STAT[other])
        print(f"\n{b} ({BACKENDS[b]}): median ms (IQR) per clock; ratio to the fastest by the {args.clock} clock")
        print(f"  {'network':<17} {'wall ms':>9} {'(iqr)':>8} {'cpu ms':>9} {'(iqr)':>8} {'ratio':>7}")
        for n in NETS:
            t = timed[n]
            print(f"  {n:<17} {t['median_ms']:>9.2f} {t['spread_ms']:>8.2f} {t['cpu_median_ms']:>9.2f} "
                  f"{t['cpu_spread_ms']:>8.2f} {ratio[n]:>7.3f}{'  fastest' if n == fastest else ''}")
        holds = fastest == OWN
        verdicts.append(holds)
        own = timed[OWN]
        # the margin between ProxylessNAS-CPU and the best other network, beside the runs' spread (IQR)
        rival = min((n for n in NETS if n != OWN), key=lambda n: timed[n][STAT[args.clock]])
        margin = 100 * (timed[rival][STAT[args.clock]] / own[STAT[args.clock]] - 1)
        noise = 100 * max(timed[n][SPREAD[args.clock]] / timed[n][STAT[args.clock]] for n in (OWN, rival))
        print(f"  {b}: the paper's claim {'holds' if holds else 'does NOT hold'}: fastest is {fastest}; "
              f"{rival} vs {OWN}: {margin:+.1f} % (largest IQR of the two: {noise:.1f} %); "
              f"by the {other} clock the fastest is {fastest_other}", flush=True)
        for clock in ("wall", "cpu"):
            figures.update({f"{b}_{clock}_ms_{n}": timed[n][STAT[clock]] for n in NETS})
        figures[f"{b}_fastest"] = fastest
        figures[f"{b}_fastest_{other}"] = fastest_other
        figures.update({f"{b}_{SHORT[n]}_over_fastest": ratio[n] for n in NETS})
        for n in NETS:
            if n != OWN:
                figures[f"{b}_{SHORT[n]}_over_{SHORT[OWN]}"] = timed[n][STAT[args.clock]] / own[STAT[args.clock]]
        figures[f"{b}_claim_holds"] = "yes" if holds else "no"
    figures["claim_holds"] = "yes" if all(verdicts) else "no" if not any(verdicts) else "mixed"
    summary = {"yes": "holds", "no": "does not hold", "mixed": "holds on some backends only"}[figures["claim_holds"]]
    print(f"\npaper's claim on this CPU ({', '.join(args.backends)}; {args.clock} clock): {summary}")
    for name, value in figures.items():
        print(f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}")
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
