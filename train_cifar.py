"""Train a genotype from scratch on CIFAR-10 with the paper's recipe (one process, or torchrun DDP).

    python train_cifar.py                                                 # PROXYLESS_CIFAR, 300 epochs
    python train_cifar.py --genotype runs/search/genotype_final.json --init-from runs/search/checkpoint.pth
    torchrun --nproc_per_node=4 train_cifar.py --batch-size 256 --sync-bn # same global batch -> same run
    python train_cifar.py --resume --output runs/train                    # continue an interrupted run
    python train_cifar.py --eval-only runs/train/best.pth
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import genotypes
from models import build_net, build_supernet, count_parameters
from utils import data as cifar
from utils import distributed as ddp
from utils.errors import UserError, run_cli
from utils.train import cosine_lr, evaluate, make_amp, param_groups, train_one_epoch
from utils.utils import (JsonlLogger, changed_flags, get_rng_state, load_checkpoint, load_fitting, resolve_device,
                         save_checkpoint, save_json, seed_everything, set_rng_state, tensorboard_writer,
                         truncate_jsonl)

DEFAULT_GENOTYPE = "proxyless_cifar"
# Flags that change how fast or where a run goes, not what it computes: a resume may change them.
# (--genotype is compared by content, not by how it was named.)
RUN_ONLY_FLAGS = {"output", "resume", "device", "progress", "tensorboard", "stop_after", "data", "download",
                  "eval_only", "eval_batch_size", "amp", "channels_last", "compile", "genotype"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("network")
    g.add_argument("--genotype", default=None, metavar="NAME|JSON",
                   help=f"genotype name or JSON file; it carries B and F (None: {DEFAULT_GENOTYPE}, or the "
                        "checkpoint's with --resume / --eval-only)")
    g.add_argument("--path-drop", type=float, default=0.0,
                   help="drop each tree-cell branch with this probability per batch (0 = off, as in the authors' config)")
    g.add_argument("--cell-drop", type=float, default=0.0,
                   help="drop block k's residual with probability rate*(k+1)/n per batch (0 = off, authors' config)")
    g.add_argument("--init-from", default=None, metavar="SEARCH_CKPT",
                   help="start from the supernet weights of the chosen ops in this search checkpoint")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="./data", help="folder holding cifar-10-batches-py (downloaded there if missing)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download; fail if data is missing")
    g.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="train on a fixed random N of the 50,000 training images (quick runs)")
    g.add_argument("--cutout", type=int, default=16, help="cutout square side in pixels, 0 = off (authors: 16)")
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crop, flip or cutout (deterministic batches, e.g. for DDP equivalence checks)")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, default=300, help="training epochs (paper: 300)")
    g.add_argument("--batch-size", type=int, default=64,
                   help="global batch, split evenly over torchrun processes (authors' CIFAR configs: 64)")
    g.add_argument("--lr", type=float, default=0.1,
                   help="peak lr per 64 images; effective lr = lr * batch_size / 64 (authors: 0.1 at 64)")
    g.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear lr warm-up before the cosine decay, in epochs (ours; 0 = none, as the authors)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (authors: 0.9)")
    g.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain momentum (authors: Nesterov)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay (authors: 1e-4)")
    g.add_argument("--decay-bn-bias", action="store_true",
                   help="weight decay on BN weights and biases too (off: conv/linear weights only)")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the training loss (0 = off)")
    g = p.add_argument_group("speed")
    g.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision: auto = bf16 on GPUs that support it, fp16 + grad scaler on older ones, off on CPU")
    g.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="channels_last memory format: auto = on for CUDA and CPU (CPU: 1.5-1.8x faster training in "
                        "bench/train_throughput.py), off elsewhere")
    g.add_argument("--compile", action="store_true", help="torch.compile the network")
    g.add_argument("--sync-bn", action="store_true",
                   help="with torchrun: BatchNorm statistics over the global batch (SyncBatchNorm)")
    g.add_argument("--eval-batch-size", type=int, default=500, help="test-set batch per process")
    g = p.add_argument_group("run")
    g.add_argument("--output", default="runs/train", help="run directory (checkpoints, logs, results.json)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda (torchrun: each process takes its local GPU)")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, batches, augmentation and drops")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue a run from CKPT (default: OUTPUT/last.pth)")
    g.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N epochs of this invocation, as if interrupted (resume later)")
    g.add_argument("--eval-only", default=None, metavar="CKPT", help="only evaluate this train checkpoint on the test set")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard logs")
    return p


# ------------------------------------------------------------------ checks
def check_args(args: argparse.Namespace) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    need(args.epochs >= 1, "--epochs must be >= 1")
    need(args.batch_size >= 1 and args.eval_batch_size >= 1, "--batch-size and --eval-batch-size must be >= 1")
    need(args.lr > 0, "--lr must be > 0")
    need(0 <= args.warmup_epochs <= args.epochs, "--warmup-epochs must be between 0 and --epochs")
    need(0 <= args.momentum < 1, "--momentum must be in [0, 1)")
    need(args.weight_decay >= 0, "--weight-decay must be >= 0")
    need(0 <= args.cutout <= 32, "--cutout must be between 0 and 32 pixels")
    need(0 <= args.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
    need(0 <= args.path_drop < 1 and 0 <= args.cell_drop < 1, "--path-drop and --cell-drop must be in [0, 1)")
    need(args.train_subset is None or args.train_subset >= 1, "--train-subset must be >= 1")
    need(args.stop_after is None or args.stop_after >= 1, "--stop-after must be >= 1")
    need(not (args.eval_only and (args.resume or args.init_from)),
         "--eval-only does not go with --resume or --init-from")


def check_resume(saved: dict, args: argparse.Namespace, genotype: genotypes.Genotype, path: Path) -> None:
    if saved.get("kind") != "train":
        raise UserError(f"{path} is not a train checkpoint (kind={saved.get('kind')!r})")
    differ = changed_flags(saved["args"], vars(args), RUN_ONLY_FLAGS)
    if genotypes.Genotype.from_dict(saved["genotype"]) != genotype:
        differ.insert(0, "--genotype (a different network)")
    if differ:
        raise UserError(f"checkpoint {path} was made with other settings: " + ", ".join(differ))


def checkpoint_genotype(saved: dict, requested: str | None, path: Path) -> genotypes.Genotype:
    """The checkpoint's genotype; a --genotype that names a different network is an error."""
    g = genotypes.Genotype.from_dict(saved["genotype"])
    if requested is not None and genotypes.get(requested) != g:
        want = genotypes.get(requested)
        raise UserError(f"--genotype {requested} (B={want.B} F={want.F}) is not the network in {path} "
                        f"(B={g.B} F={g.F}{', other ops' if (want.B, want.F) == (g.B, g.F) else ''}); "
                        "leave --genotype out to use the checkpoint's")
    return g


def init_from_search(net: nn.Module, genotype: genotypes.Genotype, path: str) -> None:
    """Copy the supernet weights of the ops the genotype chose (and all fixed layers) into ``net``."""
    saved = load_checkpoint(path)
    if saved.get("kind") != "search":
        raise UserError(f"--init-from {path} is not a search checkpoint (kind={saved.get('kind')!r})")
    a = saved["args"]
    if (a["B"], a["F"]) != (genotype.B, genotype.F):
        raise UserError(f"--init-from {path}: the supernet has B={a['B']} F={a['F']} but the genotype being "
                        f"trained has B={genotype.B} F={genotype.F}")
    missing = sorted(genotype.ops_used() - set(a["candidates"]))
    if missing:
        raise UserError(f"--init-from {path}: the genotype uses op(s) {', '.join(missing)} that the supernet "
                        f"lacks (its candidates: {', '.join(a['candidates'])})")
    with torch.random.fork_rng(devices=[]):  # building the supernet must not move the run's RNG
        supernet = build_supernet(a["B"], a["F"], a["candidates"])
    load_fitting(supernet, saved["model"], f"--init-from {path}")
    load_fitting(net, supernet.derived_state_dict(genotype), f"--init-from {path}")


def multiply_adds(genotype: genotypes.Genotype) -> int:
    """Multiply-adds of one 32x32 image, counted by torch's FLOP counter (2 FLOPs per multiply-add;
    it counts convolutions and matmuls, not BN, pooling or additions)."""
    with torch.random.fork_rng(devices=[]):
        net = build_net(genotype).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops() // 2


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ------------------------------------------------------------------ evaluation over processes
def test_loader(test: cifar.Split, args, device, info: ddp.DistInfo, channels_last: bool) -> cifar.BatchLoader:
    """Each process evaluates every world_size-th test image (no padding: the sums are exact)."""
    shard = test.subset(torch.arange(info.rank, len(test), info.world_size)) if info.enabled else test
    return cifar.BatchLoader(shard, args.eval_batch_size, device, train=False, channels_last=channels_last)


def evaluate_all(model, loader, net, amp, info: ddp.DistInfo, progress: bool) -> dict[str, float]:
    ddp.broadcast_buffers(net, info)
    r = evaluate(model, loader, criterion=nn.CrossEntropyLoss(), amp=amp, desc="test", progress=progress)
    n = len(loader.labels)
    sums = ddp.all_reduce_sum(torch.tensor([r["loss"] * n, r["acc"] * n, n], dtype=torch.float64,
                                           device=loader.labels.device), info).tolist()
    return {"loss": sums[0] / sums[2], "acc": sums[1] / sums[2]}


def reduce_train(r: dict[str, float], info: ddp.DistInfo, device) -> dict[str, float]:
    """Every process saw the same number of images: mean loss/accuracy, summed images/s."""
    if not info.enabled:
        return r
    t = ddp.all_reduce_sum(torch.tensor([r["loss"], r["acc"], r["images_per_s"]], dtype=torch.float64,
                                        device=device), info).tolist()
    return {**r, "loss": t[0] / info.world_size, "acc": t[1] / info.world_size, "images_per_s": t[2]}


# ------------------------------------------------------------------ main
def main(args: argparse.Namespace) -> dict:
    check_args(args)
    info, device = ddp.init_distributed(resolve_device(args.device))
    try:
        if args.eval_only:
            return eval_only(args, device, info)
        return train(args, device, info)
    finally:
        ddp.cleanup()


def setup_speed(args, device) -> tuple[bool, object]:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv algorithms once
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and device.type in ("cuda", "cpu"))
    return channels_last, make_amp(device, args.amp)


def load_data(args, info: ddp.DistInfo):
    """Rank 0 first (it may download), then the others read the same files."""
    if info.enabled and not info.is_main:
        torch.distributed.barrier()
    train_set, test_set = cifar.load_cifar10(args.data, download=args.download)
    if info.enabled and info.is_main:
        torch.distributed.barrier()
    return cifar.take(train_set, args.train_subset), test_set


def eval_only(args, device, info: ddp.DistInfo) -> dict:
    path = Path(args.eval_only)
    saved = load_checkpoint(path)
    if saved.get("kind") != "train":
        raise UserError(f"--eval-only {path} is not a train checkpoint (kind={saved.get('kind')!r})")
    genotype = checkpoint_genotype(saved, args.genotype, path)
    channels_last, amp = setup_speed(args, device)
    net = build_net(genotype)
    load_fitting(net, saved["model"], f"checkpoint {path}")
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    model = torch.compile(net) if args.compile else net
    _, test_set = load_data(args, info)
    r = evaluate_all(model, test_loader(test_set, args, device, info, channels_last), net, amp, info,
                     args.progress and info.is_main)
    if info.is_main:
        print(f"checkpoint={path} epoch={saved['epoch']}\ntest_loss={r['loss']:.4f}\ntest_acc={r['acc']:.2f}", flush=True)
    return {"test_loss": r["loss"], "test_acc": r["acc"], "epoch": saved["epoch"]}


def train(args, device, info: ddp.DistInfo) -> dict:
    out = Path(args.output)
    saved, ckpt_path = None, None
    if args.resume is not None:
        ckpt_path = out / "last.pth" if args.resume == "auto" else Path(args.resume)
        saved = load_checkpoint(ckpt_path)
        if saved.get("kind") != "train":
            raise UserError(f"{ckpt_path} is not a train checkpoint (kind={saved.get('kind')!r})")
        genotype = checkpoint_genotype(saved, args.genotype, ckpt_path)
        check_resume(saved, args, genotype, ckpt_path)
    else:
        if (out / "last.pth").exists():
            raise UserError(f"{out} already holds a run (last.pth): continue it with --resume, or choose "
                            "another --output")
        genotype = genotypes.get(args.genotype or DEFAULT_GENOTYPE)
    if args.batch_size % info.world_size:
        raise UserError(f"--batch-size {args.batch_size} (the global batch) must be divisible by the "
                        f"{info.world_size} processes")
    channels_last, amp = setup_speed(args, device)
    madds = multiply_adds(genotype)
    seed_everything(args.seed)  # the same seed on every process: same init, batch order and drops

    train_set, test_set = load_data(args, info)
    train_loader = cifar.BatchLoader(train_set, args.batch_size // info.world_size, device, train=True,
                                     cutout=args.cutout, augment=args.augment, rank=info.rank,
                                     world_size=info.world_size, channels_last=channels_last)
    tests = test_loader(test_set, args, device, info, channels_last)
    spe = len(train_loader)
    if spe == 0:
        raise UserError(f"the training set ({len(train_set)} images) is smaller than one batch ({args.batch_size})")

    net = build_net(genotype, path_drop=args.path_drop, cell_drop=args.cell_drop)
    if args.init_from and saved is None:
        init_from_search(net, genotype, args.init_from)
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if args.sync_bn and info.enabled:
        net = ddp.convert_sync_batchnorm(net, device)
    optimizer = torch.optim.SGD(param_groups(net, args.weight_decay, not args.decay_bn_bias), lr=args.lr,
                                momentum=args.momentum, nesterov=args.nesterov and args.momentum > 0)
    start_epoch, best_acc, best_epoch, wall = 0, 0.0, 0, 0.0
    if saved is not None:
        load_fitting(net, saved["model"], f"checkpoint {ckpt_path}")
        optimizer.load_state_dict(saved["optimizer"])
        if amp.scaler is not None and saved.get("scaler"):
            amp.scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        start_epoch, best_acc, best_epoch, wall = saved["epoch"], saved["best_acc"], saved["best_epoch"], saved["wall_time_s"]

    model: nn.Module = net
    if info.enabled:
        # dropped branches leave parameters without gradients: DDP must be told to expect that
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=args.path_drop > 0 or args.cell_drop > 0)
    eval_model = torch.compile(net) if args.compile else net
    if args.compile:
        model = eval_model if model is net else torch.compile(model)

    base_lr = args.lr * args.batch_size / 64
    total, warm = args.epochs * spe, round(args.warmup_epochs * spe)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    main_rank = info.is_main
    logger = writer = None
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        if saved is not None:
            truncate_jsonl(out / "log.jsonl", "epoch", start_epoch)
        save_json({**vars(args), "genotype_resolved": genotype.to_dict()}, out / "config.json")
        logger = JsonlLogger(out / "log.jsonl")
        writer = tensorboard_writer(out / "tb", args.tensorboard)
        params = count_parameters(net)
        print(f"train: B={genotype.B} F={genotype.F} params={params:,} multiply-adds={madds / 1e6:.1f}M "
              f"device={device_name(device)} processes={info.world_size} amp={amp.name} "
              f"channels_last={channels_last} compile={args.compile} batch={args.batch_size} lr={base_lr:g} "
              f"epochs={args.epochs} steps/epoch={spe} train={len(train_set)} run={out}", flush=True)

    progress = args.progress and main_rank
    test = {"loss": float("nan"), "acc": float("nan")}
    run_epochs = 0
    bar = tqdm(range(start_epoch, args.epochs), initial=start_epoch, total=args.epochs, desc="epochs",
               disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        t0 = time.perf_counter()
        tr = train_one_epoch(model, train_loader, optimizer, criterion=criterion, amp=amp,
                             lr_at=lambda s: cosine_lr(base_lr, s, total, warm), first_step=epoch * spe,
                             desc=f"epoch {epoch + 1}/{args.epochs}", progress=progress)
        tr = reduce_train(tr, info, device)
        test = evaluate_all(eval_model, tests, net, amp, info, progress)
        wall += time.perf_counter() - t0
        improved = test["acc"] > best_acc
        if improved:
            best_acc, best_epoch = test["acc"], epoch + 1
        record = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": test["loss"],
                  "test_acc": test["acc"], "lr": tr["lr"], "images_per_s": tr["images_per_s"],
                  "epoch_time_s": time.perf_counter() - t0}
        if main_rank:
            log_epoch(record, logger, writer, bar)
            state = {"kind": "train", "model": net.state_dict(), "genotype": genotype.to_dict(), "args": vars(args),
                     "epoch": epoch + 1, "optimizer": optimizer.state_dict(), "rng": get_rng_state(),
                     "scaler": amp.scaler.state_dict() if amp.scaler else None, "best_acc": best_acc,
                     "best_epoch": best_epoch, "wall_time_s": wall, "test_acc": test["acc"]}
            save_checkpoint(state, out / "last.pth")
            if improved:
                save_checkpoint(state, out / "best.pth")
        run_epochs += 1
        if args.stop_after is not None and run_epochs >= args.stop_after and epoch + 1 < args.epochs:
            if main_rank:
                tqdm.write(f"stopping after {run_epochs} epoch(s) as asked; continue with --resume")
            break
    else:
        results = {"genotype": args.genotype or DEFAULT_GENOTYPE, "B": genotype.B, "F": genotype.F,
                   "final_test_acc": test["acc"], "final_test_loss": test["loss"], "best_test_acc": best_acc,
                   "best_epoch": best_epoch, "params": count_parameters(net), "multiply_adds": madds,
                   "epochs": args.epochs, "wall_time_s": wall, "device": device_name(device),
                   "processes": info.world_size, "amp": amp.name, "global_batch_size": args.batch_size,
                   "lr": base_lr}
        if main_rank:
            save_json(results, out / "results.json")
            print(f"final_test_acc={test['acc']:.2f}\nbest_test_acc={best_acc:.2f}", flush=True)
        if writer is not None:
            writer.close()
        return {**results, "run_dir": out, "finished": True}
    if writer is not None:
        writer.close()
    return {"run_dir": out, "finished": False, "epoch": start_epoch + run_epochs}


def log_epoch(record: dict, logger: JsonlLogger, writer, bar) -> None:
    tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    sys.stdout.flush()
    bar.set_postfix(test_acc=f"{record['test_acc']:.2f}")
    logger.log(record)
    if writer is not None:
        for k, v in record.items():
            if k != "epoch":
                writer.add_scalar(k, v, record["epoch"])
        writer.flush()


if __name__ == "__main__":
    run_cli(main, get_args_parser())
