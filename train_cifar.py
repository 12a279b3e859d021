"""Train a genotype from scratch on CIFAR-10 with the paper's recipe (one process, or torchrun DDP).

Tree-space genotypes train with the authors' CIFAR recipe; NAS-Bench-201 cells (--space nb201, or a
benchmark string as --genotype) train in the benchmark's network (--C, --N) with its 200-epoch recipe, so
a table entry can be checked.

    python train_cifar.py                                                 # PROXYLESS_CIFAR, 300 epochs
    python train_cifar.py --genotype '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
    python train_cifar.py --genotype runs/search/genotype_final.json --init-from runs/search/checkpoint.pth
    torchrun --nproc_per_node=4 train_cifar.py --batch-size 256 --sync-bn # same global batch -> same run
    python train_cifar.py --resume --output runs/train                    # continue an interrupted run
    python train_cifar.py --eval-only runs/train/best.pth
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import genotypes
from models.spaces import DEFAULT_GENOTYPES
from models import SpaceError, build_net, count_parameters, genotype_from_dict, multiply_adds
from utils import distributed as ddp
from utils import run as scaffold
from utils.checkpoint import CheckpointError, load_checkpoint, load_fitting, load_search_weights, save_json
from utils.data import DatasetInfo
from utils.device import describe, resolve_device, seed_everything
from utils.errors import UserError, run_cli
from utils.runlog import EpochLog
from utils.space_args import add_space_flags, chosen_space, resolve_space
from utils.stream import make_loader
from utils.train import DivergenceError, cosine_lr, make_amp, param_groups, train_one_epoch

# beyond the scaffold's RESUMABLE: flags of evaluation and speed; --genotype is compared by content
MAY_CHANGE = {"eval_only", "eval_batch_size", "compile", "genotype"}
# Each space's recipe (the defaults of the recipe flags) is the space's data: SearchSpace.train_recipe.


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                parents=[scaffold.get_args_parser(output="runs/train", checkpoint="last.pth")])
    add_space_flags(p, title="search space (read from the genotype when left out)")
    g = p.add_argument_group("network")
    g.add_argument("--genotype", default=None, metavar="NAME|STRING|JSON",
                   help="genotype name, NAS-Bench-201 string or JSON file; a tree genotype carries B and F, a "
                        "NAS-Bench-201 cell is trained in the network --C/--N (default: "
                        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_GENOTYPES.items())
                        + ", or the checkpoint's with --resume / --eval-only)")
    g.add_argument("--path-drop", type=float, default=0.0,
                   help="drop each tree-cell branch with this probability per batch (0 = off, as in the authors' config)")
    g.add_argument("--cell-drop", type=float, default=0.0,
                   help="drop block k's residual with probability rate*(k+1)/n per batch (0 = off, authors' config)")
    g.add_argument("--init-from", default=None, metavar="SEARCH_CKPT",
                   help="start from the supernet weights of the chosen ops in this search checkpoint")
    g = p.add_argument_group("augmentation")
    g.add_argument("--cutout", type=int, default=None,
                   help="cutout square side in pixels, 0 = off (default: tree 16 as the authors; nb201 0)")
    g = p.add_argument_group("recipe (defaults: the space's recipe)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default: tree 300 as the paper; nb201 200)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="global batch, split evenly over torchrun processes (default: tree 64 as the authors' "
                        "CIFAR configs; nb201 256)")
    g.add_argument("--lr", type=float, default=None,
                   help="peak lr per 64 images; effective lr = lr * batch_size / 64 (default: tree 0.1, the "
                        "authors' 0.1 at 64; nb201 0.025, the benchmark's 0.1 at 256)")
    g.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear lr warm-up before the cosine decay, in epochs (ours; 0 = none, as the authors)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (authors: 0.9)")
    g.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain momentum (authors: Nesterov)")
    g.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay (default: tree 1e-4 as the authors; nb201 5e-4)")
    g.add_argument("--decay-bn-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="weight decay on BN weights and biases too (default: tree off, conv/linear weights only; "
                        "nb201 on, as the benchmark)")
    g.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the last partial batch of each epoch (default: tree on; nb201 off, as the benchmark's "
                        "data loader)")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the training loss (0 = off)")
    g = p.add_argument_group("speed and evaluation")
    g.add_argument("--compile", action="store_true", help="torch.compile the network")
    g.add_argument("--sync-bn", action="store_true",
                   help="with torchrun: BatchNorm statistics over the global batch (SyncBatchNorm)")
    g.add_argument("--eval-batch-size", type=int, default=500, help="test-set batch per process")
    g.add_argument("--eval-only", default=None, metavar="CKPT", help="only evaluate this train checkpoint on the test set")
    return p


def check_args(args: argparse.Namespace) -> tuple[object, object, dict]:
    """The flags' checks; returns (genotype, space, macro) of the run (resolve_recipe)."""
    scaffold.check_args(args)
    net = resolve_recipe(args)
    for ok, msg in (
            (args.epochs >= 1, "--epochs must be >= 1"),
            (args.batch_size >= 1 and args.eval_batch_size >= 1, "--batch-size and --eval-batch-size must be >= 1"),
            (args.lr > 0, "--lr must be > 0"),
            (0 <= args.warmup_epochs <= args.epochs, "--warmup-epochs must be between 0 and --epochs"),
            (0 <= args.momentum < 1, "--momentum must be in [0, 1)"),
            (args.weight_decay >= 0, "--weight-decay must be >= 0"),
            (0 <= args.cutout <= 32, "--cutout must be between 0 and 32 pixels"),
            (0 <= args.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (0 <= args.path_drop < 1 and 0 <= args.cell_drop < 1, "--path-drop and --cell-drop must be in [0, 1)"),
            (not (args.eval_only and (args.resume or args.init_from)),
             "--eval-only does not go with --resume or --init-from")):
        if not ok:
            raise UserError(msg)
    return net


def requested_genotype(args: argparse.Namespace):
    """The --genotype asked for, or None (a bad one is one error line)."""
    return None if args.genotype is None else genotypes.get(args.genotype)


def saved_network(saved: dict) -> tuple[object, str | None, dict | None]:
    """(genotype, space, macro) of a train checkpoint (checkpoints from before spaces: tree, macro in the genotype)."""
    g = genotype_from_dict(saved["genotype"])
    return g, saved.get("space"), saved.get("macro")


def resolve_recipe(args: argparse.Namespace, saved: dict | None = None) -> tuple[object, object, dict]:
    """(genotype, space, macro) of this run, and the space's recipe written into the flags left unset.
    The space: --space, the genotype's, or the checkpoint's (--resume / --eval-only)."""
    if saved is None and args.resume is None and args.eval_only is None:
        genotype = requested_genotype(args)
        if genotype is None:
            genotype = genotypes.get(DEFAULT_GENOTYPES[chosen_space(args).name])
        space, macro = resolve_space(args, genotype)
    else:
        if saved is None:
            path = args.eval_only or (Path(args.output) / "last.pth" if args.resume == "auto" else args.resume)
            saved = load_checkpoint(path, kind="train")
        genotype, name, macro = saved_network(saved)  # a --genotype that differs is refused by checkpoint_genotype
        space, macro = resolve_space(args, genotype, name, macro)
    for flag, value in space.train_recipe.items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    return genotype, space, macro


def checkpoint_genotype(saved: dict, requested: str | None, path):
    """The checkpoint's genotype; a --genotype that names a different network is an error."""
    g = saved_network(saved)[0]
    if requested is not None and genotypes.get(requested) != g:
        want = genotypes.get(requested)
        raise UserError(f"--genotype {requested} ({want.describe()}) is not the network in {path} "
                        f"({g.describe()}{', other ops' if want.describe() == g.describe() else ''}); "
                        "leave --genotype out to use the checkpoint's")
    return g


def main(args: argparse.Namespace) -> dict:
    genotype, _, macro = check_args(args)
    with ddp.process_group(resolve_device(args.device)) as (info, device):
        if args.eval_only:
            return eval_only(args, device, info, macro)
        # SIGTERM, full disk; torchrun processes agree on a stop every 20 steps (each agreement: a host sync)
        with scaffold.Guard("train_cifar.py", get_args_parser(), args, info, device, every=20) as guard:
            return train(args, device, info, genotype, macro, guard)


def eval_only(args, device, info: ddp.DistInfo, macro: dict) -> dict:
    saved = load_checkpoint(args.eval_only, kind="train")
    genotype = checkpoint_genotype(saved, args.genotype, args.eval_only)
    channels_last, amp = scaffold.use_channels_last(args.channels_last, device), make_amp(device, args.amp)
    data = DatasetInfo.from_dict(saved.get("dataset"))  # the data set comes with the checkpoint, not the flags
    net = build_net(genotype, data.num_classes, image_size=data.image_size, macro=macro)
    load_fitting(net, saved["model"], f"checkpoint {args.eval_only}")
    net = net.to(device, scaffold.dtype(args), memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    how = {k: saved["args"].get(k, v) for k, v in (("dataset", "cifar10"), ("image_size", None), ("resize", "square"))}
    _, test_set, _ = scaffold.load_data(argparse.Namespace(**{**vars(args), **how, "train_subset": None}), info)
    tests = ddp.test_loader(test_set, args.eval_batch_size, device, info, channels_last, dtype=scaffold.dtype(args),
                            image_size=data.image_size)
    r = ddp.evaluate_all(torch.compile(net) if args.compile else net, tests, net, amp, info,
                         args.progress and info.is_main)
    if info.is_main:
        print(f"checkpoint={args.eval_only} epoch={saved['epoch']}\ntest_loss={r['loss']:.4f}\n"
              f"test_acc={r['acc']:.2f}", flush=True)
    return {"test_loss": r["loss"], "test_acc": r["acc"], "epoch": saved["epoch"]}


def setup(args, device, info: ddp.DistInfo, run: scaffold.Run, genotype, macro: dict) -> SimpleNamespace:
    """Loaders, the network (init-from / DDP / sync BN / compile), optimizer and AMP, restored on resume."""
    s = SimpleNamespace(channels_last=scaffold.use_channels_last(args.channels_last, device),
                        base_lr=args.lr * args.batch_size / 64,  # the lr scales with the global batch
                        dtype=scaffold.dtype(args),
                        amp=make_amp(device, args.amp), criterion=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv algorithms once
    s.train_set, test_set, s.data = scaffold.load_data(args, info)
    run.dataset = s.data
    s.train_loader = make_loader(s.train_set, args.batch_size // info.world_size, device, train=True,
                                 image_size=s.data.image_size, cutout=args.cutout, augment=args.augment, rank=info.rank,
                                 drop_last=args.drop_last, world_size=info.world_size, channels_last=s.channels_last,
                                 name="training set", dtype=s.dtype)
    s.tests = ddp.test_loader(test_set, args.eval_batch_size, device, info, s.channels_last, dtype=s.dtype,
                              image_size=s.data.image_size)
    try:
        s.net = build_net(genotype, s.data.num_classes, args.path_drop, args.cell_drop, s.data.image_size, macro)
    except SpaceError as e:
        raise UserError(f"--path-drop/--cell-drop: {e}") from None
    if args.init_from and run.saved is None:
        try:
            load_search_weights(s.net, genotype, args.init_from)
        except CheckpointError as e:
            raise UserError(f"--init-from {e}") from None
    s.net = s.net.to(device, s.dtype,
                     memory_format=torch.channels_last if s.channels_last else torch.contiguous_format)
    if args.sync_bn and info.enabled:
        s.net = ddp.convert_sync_batchnorm(s.net, device)
    s.optimizer = torch.optim.SGD(param_groups(s.net, args.weight_decay, not args.decay_bn_bias), lr=args.lr,
                                  momentum=args.momentum, nesterov=args.nesterov and args.momentum > 0)
    run.restore(model=s.net, optimizer=s.optimizer, scaler=s.amp.scaler)
    s.model = s.net
    if info.enabled:  # dropped branches leave parameters without gradients: DDP must be told to expect that
        s.model = DistributedDataParallel(s.net, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=args.path_drop > 0 or args.cell_drop > 0)
    s.eval_model = torch.compile(s.net) if args.compile else s.net
    if args.compile:
        s.model = s.eval_model if s.model is s.net else torch.compile(s.model)
    return s


def train(args, device, info: ddp.DistInfo, genotype, macro: dict, guard: scaffold.Guard | None = None) -> dict:
    run = scaffold.Run(args, "train", "last.pth", may_change=MAY_CHANGE, is_main=info.is_main, guard=guard,
                       check=lambda saved, path: checkpoint_genotype(saved, args.genotype, path))
    scaffold.check_world(args, info.world_size)
    seed_everything(args.seed)  # the same seed on every process: same init, batch order and drops
    s = setup(args, device, info, run, genotype, macro)
    madds = multiply_adds(genotype, s.data.image_size, s.data.num_classes, macro)
    s.best = {"acc": 0.0, "epoch": 0, "wall": 0.0} if run.saved is None else {
        "acc": run.saved["best_acc"], "epoch": run.saved["best_epoch"], "wall": run.saved["wall_time_s"]}
    s.log = EpochLog(run.out, args.tensorboard, enabled=info.is_main, resume_epoch=run.resume_epoch)
    if info.is_main:
        save_json({**vars(args), "genotype_resolved": genotype.to_dict()}, run.out / "config.json")
        print(f"train: space={args.space} {s.net.space.describe_macro(macro)} "
              f"{'' if genotype.describe() in s.net.space.describe_macro(macro) else genotype.describe() + ' '}"
              f"params={count_parameters(s.net):,} multiply-adds={madds / 1e6:.1f}M "
              f"device={describe(device)} processes={info.world_size} amp={s.amp.name} "
              f"channels_last={s.channels_last} compile={args.compile} batch={args.batch_size} lr={s.base_lr:g} "
              f"epochs={args.epochs} steps/epoch={len(s.train_loader)} train={len(s.train_set)} run={run.out}",
              flush=True)
    last = run.saved or {}  # resumed with no epoch left (results.json was not written): its last test
    progress, test = args.progress and info.is_main, {k: last.get(f"test_{k}", float("nan")) for k in ("loss", "acc")}
    bar = tqdm(run.epochs(args.epochs), initial=run.start_epoch, total=args.epochs, desc="epochs",
               disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        test = train_epoch(s, args, run, info, device, epoch, genotype)
        bar.set_postfix(test_acc=f"{test['acc']:.2f}")
    s.log.close()
    if not run.finished:
        return {"run_dir": run.out, "finished": False, "epoch": run.saved_epoch}
    results = {"genotype": args.genotype or DEFAULT_GENOTYPES[args.space], "space": args.space, **macro,
               "genotype_resolved": genotype.to_dict(),
               "final_test_acc": test["acc"], "final_test_loss": test["loss"], "best_test_acc": s.best["acc"],
               "best_epoch": s.best["epoch"], "params": count_parameters(s.net), "multiply_adds": madds,
               "epochs": args.epochs, "wall_time_s": s.best["wall"], "device": describe(device),
               "processes": info.world_size, "amp": s.amp.name, "global_batch_size": args.batch_size, "lr": s.base_lr,
               "dataset": s.data.to_dict()}
    if info.is_main:
        save_json(results, run.out / "results.json")
        print(f"final_test_acc={test['acc']:.2f}\nbest_test_acc={s.best['acc']:.2f}", flush=True)
    return {**results, "run_dir": run.out, "finished": True}


def train_epoch(s: SimpleNamespace, args, run: scaffold.Run, info: ddp.DistInfo, device, epoch: int,
                genotype) -> dict[str, float]:
    """One epoch of training, the test-set evaluation, the log record and the checkpoints."""
    t0, spe = time.perf_counter(), len(s.train_loader)
    total, warm = args.epochs * spe, round(args.warmup_epochs * spe)
    progress = args.progress and info.is_main
    try:
        tr = train_one_epoch(s.model, s.train_loader, s.optimizer, criterion=s.criterion, amp=s.amp,
                             lr_at=lambda step: cosine_lr(s.base_lr, step, total, warm), first_step=epoch * spe,
                             desc=f"epoch {epoch + 1}/{args.epochs}", progress=progress,
                             should_stop=run.should_stop)
    except DivergenceError as e:
        s.log.close()
        raise run.diverged(e, epoch, "a lower --lr") from None
    tr = ddp.reduce_train(tr, info, device)
    test = ddp.evaluate_all(s.eval_model, s.tests, s.net, s.amp, info, progress)
    s.best["wall"] += time.perf_counter() - t0
    improved = test["acc"] > s.best["acc"]
    if improved:
        s.best.update(acc=test["acc"], epoch=epoch + 1)
    s.log.write({"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": test["loss"],
                 "test_acc": test["acc"], "lr": tr["lr"], "images_per_s": tr["images_per_s"],
                 "epoch_time_s": time.perf_counter() - t0})
    state = {**run.state(epoch + 1, model=s.net, optimizer=s.optimizer, scaler=s.amp.scaler),
             "genotype": genotype.to_dict(), "space": args.space, "macro": s.net.macro, "best_acc": s.best["acc"],
             "best_epoch": s.best["epoch"], "wall_time_s": s.best["wall"], "test_acc": test["acc"],
             "test_loss": test["loss"]}
    run.save(state)
    if improved:
        run.save(state, "best.pth")
    return test


if __name__ == "__main__":
    run_cli(main, get_args_parser())
