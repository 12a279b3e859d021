"""ProxylessNAS architecture search on CIFAR-10: Proxyless-G (binary-gate gradients) or Proxyless-R (REINFORCE).

Warm-up trains the supernet's weights with uniformly sampled paths; then weight steps on the 45k split
(one path sampled from p) alternate with an architecture step on the 5k split every K weight steps.

    python search_cifar.py --B 18 --F 400 --output runs/search
    python search_cifar.py --B 2 --F 64 --epochs 10 --warmup-epochs 2 --device cpu   # small, CPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from models import PRIMITIVES, build_supernet, check_candidates, count_parameters
from utils import data as cifar
from utils.errors import UserError, run_cli
from utils.train import Meter, backward_step, cosine_lr, evaluate, frozen, make_amp, param_groups, train_one_epoch
from utils.utils import (JsonlLogger, changed_flags, get_rng_state, load_checkpoint, resolve_device,
                         save_checkpoint, save_json, seed_everything, set_rng_state, tensorboard_writer, truncate_jsonl)

# Flags that do not change what a run computes: they may differ between a run and its resume.
RUN_ONLY_FLAGS = {"output", "resume", "device", "progress", "tensorboard", "stop_after", "data", "download"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", default="./data", help="folder holding cifar-10-batches-py (downloaded there if missing)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download; fail if data is missing")
    g.add_argument("--arch-split", type=int, default=cifar.ARCH_SPLIT,
                   help="training images held out for the architecture parameters (paper: 5000)")
    g.add_argument("--train-subset", type=int, default=None,
                   help="use only this many training images (before the split), for quick runs")
    g = p.add_argument_group("search space")
    g.add_argument("--B", type=int, default=18, help="blocks per stage (paper's network: 18)")
    g.add_argument("--F", type=int, default=400, help="final width, a multiple of 8 >= 64 (paper's network: 400)")
    g.add_argument("--candidates", nargs="+", default=list(PRIMITIVES), metavar="OP",
                   help=f"candidate ops on every edge, from: {' '.join(PRIMITIVES)}")
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=200, help="search epochs after warm-up (paper: 200)")
    g.add_argument("--warmup-epochs", type=int, default=40, help="weights-only epochs with uniform paths first (ours)")
    g.add_argument("--batch-size", type=int, default=64, help="weight-step batch (authors' CIFAR configs: 64)")
    g.add_argument("--arch-batch-size", type=int, default=64, help="architecture-step batch (ours)")
    g.add_argument("--arch-every", type=int, default=5, metavar="K",
                   help="one architecture step every K weight steps (official ImageNet search: 5)")
    g = p.add_argument_group("weights")
    g.add_argument("--lr", type=float, default=0.1, help="peak SGD lr, cosine to 0 (per phase) (authors' CIFAR: 0.1)")
    g.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (authors' CIFAR: 0.9)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="on conv/linear weights (authors' CIFAR: 1e-4)")
    g.add_argument("--grad-clip", type=float, default=0.0, help="clip the weights' gradient norm (0 = off)")
    g = p.add_argument_group("architecture")
    g.add_argument("--algo", choices=("gradient", "reinforce"), default="gradient",
                   help="Proxyless-G (binary-gate gradients) or Proxyless-R (REINFORCE)")
    g.add_argument("--arch-mode", choices=("two", "full"), default="two",
                   help="gradient algo: 'two' sampled paths per step (memory independent of N) or all N")
    g.add_argument("--arch-lr", type=float, default=None, help="Adam lr (paper: 0.006 gradient, 0.01 reinforce)")
    g.add_argument("--arch-betas", type=float, nargs=2, default=(0.0, 0.999), help="Adam betas (paper: 0 0.999)")
    g.add_argument("--arch-eps", type=float, default=1e-8, help="Adam eps")
    g.add_argument("--reinforce-samples", type=int, default=10, metavar="M",
                   help="reinforce: architectures sampled per update (ours)")
    g.add_argument("--baseline-decay", type=float, default=0.99, help="reinforce: moving-average baseline decay")
    g = p.add_argument_group("latency (hardware-aware search)")
    g.add_argument("--latency-table", default=None, help="latency table JSON (python -m utils.latency build ...)")
    g.add_argument("--target-latency", type=float, default=None, help="target latency T in ms")
    g.add_argument("--latency-loss", choices=("add", "mul"), default="add",
                   help="add: CE + lambda*(E[LAT]-T)/T; mul: CE*(E[LAT]/T)^beta")
    g.add_argument("--latency-lambda", type=float, default=0.1, help="lambda of the add loss")
    g.add_argument("--latency-beta", type=float, default=0.6, help="beta of the mul loss")
    g.add_argument("--reward-w", type=float, default=-0.07,
                   help="reinforce: reward = acc * (LAT/T)^w, w <= 0 (MnasNet's value)")
    g = p.add_argument_group("run")
    g.add_argument("--output", default="runs/search", help="run directory (checkpoint, logs, genotype.json)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, sampling and batches")
    g.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision: auto = bf16 on GPUs that support it, off on CPU")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format (GPU)")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue a run from CKPT (default: OUTPUT/checkpoint.pth)")
    g.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N epochs of this invocation, as if interrupted (resume later)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard logs")
    return p


# ------------------------------------------------------------------ checks
def check_args(args: argparse.Namespace) -> None:
    try:
        args.candidates = list(check_candidates(args.candidates))
    except ValueError as e:
        raise UserError(str(e)) from None
    from models.space import check_macro
    try:
        check_macro(args.B, args.F)
    except ValueError as e:
        raise UserError(str(e)) from None
    for name in ("epochs", "batch_size", "arch_batch_size", "arch_every", "reinforce_samples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_epochs < 0:
        raise UserError("--warmup-epochs must be >= 0")
    args.arch_betas = [float(b) for b in args.arch_betas]
    if args.arch_lr is None:
        args.arch_lr = 0.006 if args.algo == "gradient" else 0.01
    if (args.latency_table is None) != (args.target_latency is None):
        raise UserError("--latency-table and --target-latency go together")
    if args.target_latency is not None and args.target_latency <= 0:
        raise UserError("--target-latency must be > 0 (ms)")
    if args.reward_w > 0:
        raise UserError("--reward-w must be <= 0 (a higher latency must not raise the reward)")


def check_resume(saved: dict, args: argparse.Namespace, path: Path) -> None:
    if saved.get("kind") != "search":
        raise UserError(f"{path} is not a search checkpoint (kind={saved.get('kind')!r})")
    old = saved["args"]
    if (old["B"], old["F"], list(old["candidates"])) != (args.B, args.F, args.candidates):
        raise UserError(f"checkpoint {path} is for B={old['B']} F={old['F']} candidates={' '.join(old['candidates'])}; "
                        f"this run asks for B={args.B} F={args.F} candidates={' '.join(args.candidates)}")
    differ = changed_flags(old, vars(args), RUN_ONLY_FLAGS)
    if differ:
        raise UserError(f"checkpoint {path} was made with other settings: " + ", ".join(differ))


# ------------------------------------------------------------------ architecture steps
class LatencyTerm:
    """The expected-latency model and the loss/reward settings (None when the search ignores latency)."""

    def __init__(self, args: argparse.Namespace, supernet):
        from utils.latency import LatencyModel, LatencyTable  # only when asked for
        table = LatencyTable.load(args.latency_table)
        table.check(args.B, args.F, args.candidates)
        self.model = LatencyModel(table, supernet)
        self.target, self.kind = args.target_latency, args.latency_loss
        self.lam, self.beta, self.w = args.latency_lambda, args.latency_beta, args.reward_w

    def loss(self, ce: torch.Tensor, supernet) -> tuple[torch.Tensor, torch.Tensor]:
        from utils.latency import latency_loss
        expected = self.model.expected(supernet)
        return latency_loss(ce, expected, self.target, self.kind, self.lam, self.beta), expected

    def reward(self, acc: float, supernet) -> float:
        """acc x (LAT/T)^w for the architecture of the supernet's last forward."""
        from utils.latency import reinforce_reward
        return reinforce_reward(acc, self.model.predict_active(supernet), self.target, self.w)


def gradient_arch_step(supernet, x, y, criterion, optimizer, amp, mode: str, weight_params,
                       latency: LatencyTerm | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step on alpha.  Weights are frozen for the step: no weight gradients are computed
    and fewer activations are kept.  In "two" mode the two updated alphas are then shifted so the
    probabilities of the unsampled paths stay as they were."""
    optimizer.zero_grad(set_to_none=True)
    with supernet.gate_mode(mode), frozen(weight_params):
        with amp.autocast():
            logits = supernet(x)
        ce = criterion(logits.float(), y)
        loss = ce if latency is None else latency.loss(ce, supernet)[0]
        backward_step(loss, optimizer, amp)
    if mode == "two":
        supernet.rescale_sampled()
    return ce.detach(), logits.detach()


class Reinforce:
    """Proxyless-R: sample M architectures, reward each on a validation batch, moving-average baseline,
    grad alpha = -(1/M) sum_m (R_m - b) grad log p(arch_m)."""

    def __init__(self, samples: int, decay: float, baseline: float | None = None):
        self.samples, self.decay, self.baseline = samples, decay, baseline

    def step(self, supernet, x, y, criterion, optimizer, amp,
             reward: Callable[[torch.Tensor, torch.Tensor, object], float]):
        """reward(logits, y, supernet) of the architecture the supernet's last forward ran."""
        rewards, archs, losses, last_logits = [], [], [], None
        with torch.no_grad(), supernet.gate_mode("sample"):
            for _ in range(self.samples):
                with amp.autocast():
                    logits = supernet(x)
                rewards.append(float(reward(logits, y, supernet)))
                archs.append(supernet.active_indices())
                losses.append(criterion(logits.float(), y))
                last_logits = logits
        r = torch.tensor(rewards)
        b = float(r.mean()) if self.baseline is None else self.baseline
        optimizer.zero_grad(set_to_none=True)
        logp = supernet.log_prob(torch.stack(archs))  # (M,)
        loss = -((r.to(logp.device) - b) * logp).mean()
        loss.backward()
        optimizer.step()
        self.baseline = self.decay * b + (1 - self.decay) * float(r.mean())
        return torch.stack(losses).mean(), last_logits


def accuracy_reward(latency: LatencyTerm | None):
    """Validation-batch accuracy, times (LAT/T)^w when a latency table is given."""
    def reward(logits, y, supernet) -> float:
        acc = float((logits.argmax(1) == y).float().mean())
        return acc if latency is None else latency.reward(acc, supernet)
    return reward


# ------------------------------------------------------------------ main
def main(args: argparse.Namespace) -> dict:
    check_args(args)
    device = resolve_device(args.device)
    out = Path(args.output)
    saved, ckpt_path = None, None
    if args.resume is not None:
        ckpt_path = out / "checkpoint.pth" if args.resume == "auto" else Path(args.resume)
        saved = load_checkpoint(ckpt_path)
        check_resume(saved, args, ckpt_path)
    elif (out / "checkpoint.pth").exists():
        raise UserError(f"{out} already holds a search (checkpoint.pth): continue it with --resume, "
                        "or choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)

    train_set, _ = cifar.load_cifar10(args.data, download=args.download)
    train_set = cifar.take(train_set, args.train_subset)
    weight_split, arch_split = cifar.split_train(train_set, args.arch_split)
    loader_kw = dict(device=device, channels_last=args.channels_last)
    train_loader = cifar.BatchLoader(weight_split, args.batch_size, train=True, **loader_kw)
    # architecture batches: reshuffled, not augmented (they measure the current network)
    arch_loader = cifar.BatchLoader(arch_split, args.arch_batch_size, train=True, augment=False, **loader_kw)
    valid_loader = cifar.BatchLoader(arch_split, max(args.arch_batch_size, 256), train=False, **loader_kw)

    supernet = build_supernet(args.B, args.F, args.candidates).to(device)
    if args.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    weight_params = supernet.weight_parameters()
    w_opt = torch.optim.SGD(param_groups(supernet, args.weight_decay, params=weight_params), lr=args.lr,
                            momentum=args.momentum, nesterov=True)
    a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=args.arch_lr, betas=tuple(args.arch_betas),
                             eps=args.arch_eps, weight_decay=0.0)
    amp, arch_amp = make_amp(device, args.amp), make_amp(device, args.amp)
    criterion = nn.CrossEntropyLoss()
    latency = LatencyTerm(args, supernet) if args.latency_table else None
    reinforce = Reinforce(args.reinforce_samples, args.baseline_decay) if args.algo == "reinforce" else None
    reward = accuracy_reward(latency)

    start_epoch = 0
    if saved is not None:
        supernet.load_state_dict(saved["model"])
        w_opt.load_state_dict(saved["w_opt"])
        a_opt.load_state_dict(saved["a_opt"])
        for a, key in ((amp, "scaler"), (arch_amp, "arch_scaler")):
            if a.scaler is not None and saved.get(key):
                a.scaler.load_state_dict(saved[key])
        if reinforce is not None:
            reinforce.baseline = saved.get("baseline")
        set_rng_state(saved["rng"])
        start_epoch = saved["epoch"]
        truncate_jsonl(out / "log.jsonl", "epoch", start_epoch)
    save_json(vars(args), out / "config.json")

    total = args.warmup_epochs + args.epochs
    spe = len(train_loader)
    if spe == 0:
        raise UserError(f"the weights split ({len(weight_split)} images) is smaller than one batch ({args.batch_size})")
    logger = JsonlLogger(out / "log.jsonl")
    writer = tensorboard_writer(out / "tb", args.tensorboard)
    print(f"search: B={args.B} F={args.F} candidates={len(args.candidates)} algo={args.algo} device={device} "
          f"amp={amp.name} params={count_parameters(supernet):,} splits={len(weight_split)}/{len(arch_split)} "
          f"epochs={args.warmup_epochs}+{args.epochs} run={out}", flush=True)

    run_epochs = 0
    for epoch in range(start_epoch, total):
        t0 = time.perf_counter()
        warm = epoch < args.warmup_epochs
        phase_epoch, phase_len = (epoch, args.warmup_epochs) if warm else (epoch - args.warmup_epochs, args.epochs)
        arch_iter = cifar.endless(arch_loader)  # made per epoch: a resumed epoch draws the same batches
        arch_meter = Meter(device)

        def arch_hook(i: int) -> None:
            if (i + 1) % args.arch_every:
                return
            x, y = next(arch_iter)
            if reinforce is not None:
                loss, logits = reinforce.step(supernet, x, y, criterion, a_opt, arch_amp, reward)
            else:
                loss, logits = gradient_arch_step(supernet, x, y, criterion, a_opt, arch_amp, args.arch_mode,
                                                  weight_params, latency)
            arch_meter.update(loss, logits, y)

        with supernet.gate_mode("uniform" if warm else "sample"):
            train = train_one_epoch(
                supernet, train_loader, w_opt, criterion=criterion, amp=amp,
                lr_at=lambda s: cosine_lr(args.lr, s, phase_len * spe), first_step=phase_epoch * spe,
                step_hook=None if warm else arch_hook, grad_clip=args.grad_clip,
                desc=f"epoch {epoch + 1}/{total} {'warm-up' if warm else 'search'}", progress=args.progress)
        with supernet.gate_mode("sample"):
            sampled = evaluate(supernet, valid_loader, criterion=criterion, amp=amp, progress=False)
        with supernet.gate_mode("argmax"):
            argmax = evaluate(supernet, valid_loader, criterion=criterion, amp=amp, progress=False)
        genotype = supernet.derive()
        record = {
            "epoch": epoch + 1, "phase": "warmup" if warm else "search", "lr": train["lr"],
            "train_loss": train["loss"], "train_acc": train["acc"],
            "valid_loss": sampled["loss"], "valid_acc": sampled["acc"],
            "valid_argmax_loss": argmax["loss"], "valid_argmax_acc": argmax["acc"],
            "entropy": supernet.entropy(), "images_per_s": train["images_per_s"],
            "epoch_time_s": time.perf_counter() - t0,
        }
        if arch_meter.n:
            r = arch_meter.result()
            record.update(arch_loss=r["loss"], arch_acc=r["acc"])
        if latency is not None:
            with torch.no_grad(), supernet.gate_mode("sample"):
                record["expected_latency_ms"] = float(latency.model.expected(supernet))
            record["argmax_latency_ms"] = latency.model.predict(genotype)
        log_epoch(record, genotype, supernet, logger, writer)
        genotype.to_json(out / "genotype.json")
        save_checkpoint({
            "kind": "search", "model": supernet.state_dict(), "w_opt": w_opt.state_dict(),
            "a_opt": a_opt.state_dict(), "epoch": epoch + 1, "args": vars(args), "rng": get_rng_state(),
            "genotype": genotype.to_dict(), "baseline": reinforce.baseline if reinforce else None,
            "scaler": amp.scaler.state_dict() if amp.scaler else None,
            "arch_scaler": arch_amp.scaler.state_dict() if arch_amp.scaler else None,
        }, out / "checkpoint.pth")
        run_epochs += 1
        if args.stop_after is not None and run_epochs >= args.stop_after and epoch + 1 < total:
            print(f"stopping after {run_epochs} epoch(s) as asked; continue with --resume", flush=True)
            break
    else:
        genotype = supernet.derive()
        genotype.to_json(out / "genotype.json")
        genotype.to_json(out / "genotype_final.json")
        counts = ", ".join(f"{k} {v}" for k, v in genotype.op_counts().items() if v)
        print(f"final genotype: {out / 'genotype_final.json'} ({counts})", flush=True)
    if writer is not None:
        writer.close()
    return {"genotype": supernet.derive(), "alphas": supernet.alphas().cpu(), "run_dir": out}


def log_epoch(record: dict, genotype, supernet, logger: JsonlLogger, writer) -> None:
    tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    sys.stdout.flush()
    logger.log({**record, "genotype": genotype.to_dict()})
    if writer is None:
        return
    step = record["epoch"]
    for k, v in record.items():
        if isinstance(v, float):
            writer.add_scalar(k, v, step)
    probs, counts = supernet.probs(), genotype.op_counts()
    writer.add_histogram("alpha/probs", probs, step)
    writer.add_histogram("alpha/logits", supernet.alphas().float(), step)
    for i, name in enumerate(supernet.candidates):
        writer.add_scalar(f"alpha_mean_prob/{name}", float(probs[:, i].mean()), step)
        writer.add_scalar(f"argmax_count/{name}", counts[name], step)
    writer.flush()


if __name__ == "__main__":
    run_cli(main, get_args_parser())
