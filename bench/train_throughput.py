"""Training throughput (images/s) of a genotype, channels_last on vs off, measured in one run.

The two memory formats take turns step by step (after a warm-up step each), so a change in the
machine's load hits both alike; the headline is their ratio.  Same weight step as train_cifar.py
(SGD Nesterov, BN/bias without decay, batched augmentation on the device).

    python bench/train_throughput.py                      # PROXYLESS_CIFAR, batch 64, CPU
    python bench/train_throughput.py --device cuda --amp auto
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import genotypes  # noqa: E402
from models import build_net  # noqa: E402
from utils import data as cifar  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.train import make_amp, param_groups, weight_step  # noqa: E402
from utils.device import resolve_device  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--genotype", default="proxyless_cifar", help="genotype name or JSON file")
    p.add_argument("--batch-size", type=int, default=64, help="training batch")
    p.add_argument("--steps", type=int, default=3, help="timed steps per memory format")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--amp", default="off", choices=("auto", "off", "bf16", "fp16"), help="mixed precision")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


class Trainer:
    """One network + optimizer + loader in one memory format."""

    def __init__(self, genotype, split, args, device, channels_last: bool):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(args.seed)
        self.net = build_net(genotype).to(device, memory_format=fmt).train()
        self.opt = torch.optim.SGD(param_groups(self.net, 1e-4), lr=0.05, momentum=0.9, nesterov=True)
        self.loader = cifar.endless(cifar.BatchLoader(split, args.batch_size, device, train=True, cutout=16,
                                                      channels_last=channels_last))
        self.amp, self.device, self.criterion = make_amp(device, args.amp), device, nn.CrossEntropyLoss()

    def step(self) -> float:
        """Seconds for one step: batch assembly + forward + backward + update."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        x, y = next(self.loader)
        loss, _ = weight_step(self.net, x, y, self.criterion, self.opt, self.amp)
        float(loss)  # waits for the step on any device
        return time.perf_counter() - t


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.batch_size < 1 or args.steps < 1:
        raise UserError("--batch-size and --steps must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    genotype = genotypes.get(args.genotype)
    gen = torch.Generator().manual_seed(args.seed)
    n = 4 * args.batch_size  # random images: the speed does not depend on their content
    split = cifar.Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
                        torch.randint(0, 10, (n,), generator=gen))
    trainers = {"contiguous": Trainer(genotype, split, args, device, False),
                "channels_last": Trainer(genotype, split, args, device, True)}
    times: dict[str, list[float]] = {k: [] for k in trainers}
    bar = tqdm(total=(args.steps + 1) * 2, desc="steps", disable=not args.progress)
    for i in range(args.steps + 1):  # step 0 of each: warm-up, not timed
        for name, tr in trainers.items():
            dt = tr.step()
            if i > 0:
                times[name].append(dt)
            bar.update()
    bar.close()
    ips = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    print(f"genotype={args.genotype} B={genotype.B} F={genotype.F} batch={args.batch_size} device={device} "
          f"threads={torch.get_num_threads()} amp={trainers['contiguous'].amp.name} timed_steps={args.steps} each")
    for k, v in times.items():
        print(f"{k}: step times " + " ".join(f"{t:.2f}s" for t in v))
    out = {"images_per_s_contiguous": ips["contiguous"], "images_per_s_channels_last": ips["channels_last"],
           "channels_last_speedup": ips["channels_last"] / ips["contiguous"]}
    for k, v in out.items():
        print(f"{k}={v:.3f}")
    return out


if __name__ == "__main__":
    run_cli(main, get_args_parser())
