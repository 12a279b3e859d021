"""ProxylessNAS architecture search on CIFAR-10: Proxyless-G (binary-gate gradients) or Proxyless-R (REINFORCE).

Warm-up trains the supernet's weights with uniformly sampled paths; then weight steps on the 45k split
(one path sampled from p) alternate with an architecture step on the 5k split every K weight steps
(the algorithm: utils/architect.py; this script wires data, supernet, optimizers, logs, checkpoints).
Two search spaces: the paper's tree cells (--space tree, sized by --B/--F) and NAS-Bench-201 (--space
nb201, sized by --C/--N), whose table judges the searched cell every epoch (--nb201-table).

    python search_cifar.py --B 18 --F 400 --output runs/search
    python search_cifar.py --B 2 --F 64 --epochs 10 --warmup-epochs 2 --device cpu   # small, CPU
    python search_cifar.py --space nb201 --nb201-table nb201_table/accuracy.csv.gz --output runs/nb201
"""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch
import torch.nn as nn

from models import SPACES, SpaceError, SuperNet, count_parameters
from models.supernet import warmup_pool
from utils import data as cifar
from utils import distributed as ddp
from utils import run as scaffold
from utils.architect import Architect, LatencyTerm
from utils.checkpoint import save_genotype, save_json
from utils.device import resolve_device, seed_everything
from utils.errors import UserError, run_cli
from utils.latency_fit import margin
from models.nb201.table import NB201Table, column_for
from utils.runlog import EpochLog
from utils.space_args import add_space_flags, resolve_space
from utils.stream import make_loader
from utils.train import DivergenceError, Meter, cosine_lr, make_amp, param_groups, train_one_epoch


# flags added after searches were checkpointed, with what those searches did (they resume with these)
ADDED_FLAGS = {"derive": "argmax", "latency_stat": "median_ms", "supernet_bn": "standard", "warmup_ops": "all",
               "eval_images": None, "latency_margin": "auto", "from_warmup": None, "search_paths": "alpha"}
# what only the phase after the warm-up reads: a search started --from-warmup may set these anew
SEARCH_PHASE = ("epochs", "arch_every", "arch_lr", "arch_betas", "arch_eps", "algo", "arch_mode", "reinforce_samples",
                "baseline_decay", "latency_table", "target_latency", "latency_loss", "latency_lambda", "latency_beta",
                "derive", "latency_stat", "latency_margin", "reward_w", "nb201_table", "eval_images", "search_paths")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                parents=[scaffold.get_args_parser(output="runs/search", checkpoint="checkpoint.pth")])
    p.set_defaults(channels_last="off")  # the supernet's speed with channels_last is not measured yet
    g = p.add_argument_group("search data")
    g.add_argument("--arch-split", type=scaffold.count_or_fraction, default=cifar.ARCH_SPLIT,
                   help="training images held out for alpha: a count (5000) or a fraction (paper: 0.1 = 5000 of 50,000)")
    g.add_argument("--eval-images", type=int, default=None, metavar="N",
                   help="the epoch's evaluation (sampled and argmax networks) on a fixed subset of N images of the "
                        "architecture split (default: all of it); a short search's time goes there otherwise")
    add_space_flags(p)
    g = p.add_argument_group("search space (candidates, judge)")
    g.add_argument("--candidates", nargs="+", default=None, metavar="OP",
                   help="candidate ops on every edge (default: all of the space's) from: "
                        + "; ".join(f"{name}: {' '.join(s.primitives)}" for name, s in SPACES.items()))
    g.add_argument("--supernet-bn", choices=("standard", "plain"), default=None,
                   help="BatchNorm of the supernet: standard (as the derived network) or plain (no affine parameters, "
                        "batch statistics always: the NAS-Bench-201 authors' searches); default: the space's "
                        "(tree: standard, nb201: plain; models/nb201/space.py says why)")
    g.add_argument("--warmup-ops", default=None, metavar="all|weighted|OP,OP,..",
                   help="which candidates the warm-up's uniform paths draw from: all, only the ops with weights "
                        "(parameter-free ops have nothing to learn), or the candidates listed (e.g. "
                        "nor_conv_1x1,nor_conv_3x3,skip_connect); default: the space's (tree: all, nb201: weighted)")
    g.add_argument("--nb201-table", default=None, metavar="CSV",
                   help="nb201: judge the argmax cell every epoch by this table (columns arch, cifar10_test_200, "
                        "cifar100_test_200; .csv or .csv.gz; the project ships nb201_table/accuracy.csv.gz)")
    g.add_argument("--from-warmup", default=None, metavar="CKPT",
                   help="start this search where another run's warm-up ended (its checkpoint.pth after --stop-after "
                        "WARMUP_EPOCHS): the warm-up does not depend on the target, so one warm-up serves every "
                        "--target-latency; every flag but the search phase's (alpha, latency, epochs) must match it")
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=200, help="search epochs after warm-up (paper: 200)")
    g.add_argument("--warmup-epochs", type=int, default=40, help="weights-only epochs with uniform paths first (ours)")
    g.add_argument("--batch-size", type=int, default=64, help="weight-step batch (authors' CIFAR configs: 64)")
    g.add_argument("--arch-batch-size", type=int, default=64, help="architecture-step batch (ours)")
    g.add_argument("--arch-every", type=int, default=5, metavar="K",
                   help="one architecture step every K weight steps (official ImageNet search: 5)")
    g.add_argument("--search-paths", choices=("alpha", "uniform"), default="alpha",
                   help="the weight steps' paths after the warm-up: drawn from alpha (the paper's) or uniformly as "
                        "in the warm-up (every op keeps training equally, one-shot style; alpha still learns)")
    g = p.add_argument_group("weights")
    g.add_argument("--lr", type=float, default=0.1, help="peak SGD lr, cosine to 0 (per phase) (authors' CIFAR: 0.1)")
    g.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (authors' CIFAR: 0.9)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="on conv/linear weights (authors' CIFAR: 1e-4)")
    g.add_argument("--grad-clip", type=float, default=0.0, help="clip the weights' gradient norm (0 = off)")
    g.add_argument("--sync-bn", action="store_true",
                   help="with torchrun: BatchNorm statistics over the global batch (default: per process)")
    g = p.add_argument_group("architecture")
    g.add_argument("--algo", choices=("gradient", "reinforce"), default="gradient",
                   help="Proxyless-G (binary-gate gradients) or Proxyless-R (REINFORCE)")
    g.add_argument("--arch-mode", choices=("two", "full"), default="two",
                   help="gradient algo: 'two' sampled paths per step (memory independent of N) or all N")
    g.add_argument("--arch-lr", type=float, default=None,
                   help="Adam lr of alpha (default: the space's; paper and tree space: 0.006 gradient, 0.01 "
                        "reinforce; nb201: 0.003 gradient, models/nb201/space.py says why)")
    g.add_argument("--arch-betas", type=float, nargs=2, default=(0.0, 0.999), help="Adam betas (paper: 0 0.999)")
    g.add_argument("--arch-eps", type=float, default=1e-8, help="Adam eps")
    g.add_argument("--reinforce-samples", type=int, default=10, metavar="M",
                   help="reinforce: architectures sampled per update (ours)")
    g.add_argument("--baseline-decay", type=float, default=0.99, help="reinforce: moving-average baseline decay")
    g = p.add_argument_group("latency (hardware-aware search)")
    g.add_argument("--latency-table", default=None, help="latency table JSON (python -m utils.latency build ...)")
    g.add_argument("--target-latency", type=float, default=None, help="target latency T in ms")
    g.add_argument("--latency-loss", choices=("add", "mul", "hinge"), default="add",
                   help="add: CE + lambda*(E[LAT]-T)/T; mul: CE*(E[LAT]/T)^beta; hinge: CE + lambda*max(0, E[LAT]/T-1) "
                        "(T as a budget: no pull below it)")
    g.add_argument("--latency-lambda", type=float, default=0.1, help="lambda of the add and hinge losses")
    g.add_argument("--latency-beta", type=float, default=0.6, help="beta of the mul loss")
    g.add_argument("--derive", choices=("argmax", "within-target"), default=None,
                   help="the searched architecture: argmax (each decision's most probable op) or within-target (the "
                        "most probable architecture whose predicted latency is within --target-latency; exact, by "
                        "dynamic programming over the table's costs); default: within-target when a target is set")
    g.add_argument("--latency-stat", choices=("median_ms", "cpu_median_ms", "min_ms"), default="median_ms",
                   help="which statistic of the table's entries is the latency: the wall-clock median, or the process "
                        "CPU time (a one-thread table measured on a machine shared with other jobs)")
    g.add_argument("--latency-margin", type=scaffold.auto_or(float, "a fraction >= 0 such as 0.05"), default="auto", metavar="auto|M",
                   help="search and derive for --target-latency / (1 + M): auto = the table's own margin (a table fit "
                        "from measured networks: its largest cross-validated under-prediction near the target, "
                        "utils/latency_fit.py; a table timed here: 0), or a fraction such as 0.05")
    g.add_argument("--reward-w", type=float, default=-0.07,
                   help="reinforce: reward = acc * (LAT/T)^w, w <= 0 (MnasNet's value)")
    return p


def check_args(args: argparse.Namespace) -> None:
    scaffold.check_args(args)
    space, _ = resolve_space(args)
    try:
        args.candidates = list(space.check_candidates(space.primitives if args.candidates is None else args.candidates))
    except ValueError as e:
        raise UserError(f"--candidates: {e}") from None
    if args.nb201_table is not None and space.name != "nb201":
        raise UserError(f"--nb201-table judges NAS-Bench-201 cells; this search is in the {space.name} space")
    small = [n for n in ("epochs", "batch_size", "arch_batch_size", "arch_every", "reinforce_samples") if getattr(args, n) < 1]
    if args.eval_images is not None and args.eval_images < 1:
        small.append("eval_images")
    for ok, msg in ((not small, f"--{small[0].replace('_', '-')} must be >= 1" if small else ""),
                    (args.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
                    ((args.latency_table is None) == (args.target_latency is None),
                     "--latency-table and --target-latency go together"),
                    (args.target_latency is None or args.target_latency > 0, "--target-latency must be > 0 (ms)"),
                    (args.reward_w <= 0, "--reward-w must be <= 0 (a higher latency must not raise the reward)")):
        if not ok:
            raise UserError(msg)
    if args.derive == "within-target" and args.target_latency is None:
        raise UserError("--derive within-target needs --latency-table and --target-latency")
    args.derive = args.derive or ("argmax" if args.target_latency is None else "within-target")
    for name, value in space.search_defaults.items():  # the space's defaults for flags left unset
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        warmup_pool(args.warmup_ops, args.candidates, space.parameter_free)
    except SpaceError as e:
        raise UserError(f"--warmup-ops: {e}") from None
    args.arch_betas = [float(b) for b in args.arch_betas]
    if args.arch_lr is None:
        args.arch_lr = space.arch_lr_defaults[args.algo]


def build(args: argparse.Namespace, device: torch.device, info: ddp.DistInfo) -> SimpleNamespace:
    """Data loaders (each process its shard of every batch), supernet, weight optimizer, the Architect."""
    train, _, data = scaffold.load_data(args, info)
    weight_split, arch_split = cifar.split_train(train, cifar.arch_split_size(args.arch_split, len(train)))
    kw = dict(device=device, channels_last=scaffold.use_channels_last(args.channels_last, device), dtype=scaffold.dtype(args))
    shard = dict(rank=info.rank, world_size=info.world_size, **kw)
    s = SimpleNamespace(splits=(len(weight_split), len(arch_split)), sync=ddp.Sync(info), info=info, data=data)
    s.train_loader = make_loader(weight_split, args.batch_size // info.world_size, train=True, image_size=data.image_size,
                                 augment=args.augment, name="weights split", **shard)
    s.arch_loader = make_loader(arch_split, args.arch_batch_size // info.world_size, train=True, augment=False,
                                image_size=data.image_size, name="architecture split", **shard)  # reshuffled, not augmented
    evaluated = arch_split if args.eval_images is None else cifar.take(arch_split, args.eval_images)
    s.valid_loader = ddp.test_loader(evaluated, max(args.arch_batch_size, 256), device, info, kw["channels_last"],
                                     "architecture split", kw["dtype"], image_size=data.image_size)
    space, macro = resolve_space(args)
    s.supernet = SuperNet(space, macro, args.candidates, data.num_classes, data.image_size, args.supernet_bn,
                          args.warmup_ops).to(
        device, kw["dtype"], memory_format=torch.channels_last if kw["channels_last"] else torch.contiguous_format)
    if args.sync_bn and info.enabled:
        s.supernet = ddp.convert_sync_batchnorm(s.supernet, device)
    s.w_opt = torch.optim.SGD(param_groups(s.supernet, args.weight_decay, params=s.supernet.weight_parameters()),
                              lr=args.lr, momentum=args.momentum, nesterov=True)
    s.amp, s.criterion = make_amp(device, args.amp), nn.CrossEntropyLoss()
    latency = None if args.latency_table is None else LatencyTerm.from_table(
        args.latency_table, s.supernet, args.target_latency, kind=args.latency_loss, lam=args.latency_lambda,
        beta=args.latency_beta, w=args.reward_w, stat=args.latency_stat)
    if latency is not None:  # the search's and the derive's target: the constraint less the table's margin
        s.margin = margin(latency.model.table, args.target_latency) if args.latency_margin == "auto" \
            else float(args.latency_margin)
        latency.target = args.target_latency / (1.0 + s.margin)
    s.architect = Architect(s.supernet, make_amp(device, args.amp), s.criterion, lr=args.arch_lr, eps=args.arch_eps,
                            betas=tuple(args.arch_betas), algo=args.algo, mode=args.arch_mode, latency=latency,
                            samples=args.reinforce_samples, baseline_decay=args.baseline_decay, sync=s.sync)
    return s


def derive(s: SimpleNamespace, args: argparse.Namespace):
    """The searched architecture (--derive): the argmax, or the most probable one within the target latency."""
    if args.derive == "argmax":
        return s.supernet.derive()
    latency = s.architect.latency  # its target: --target-latency less the margin (build)
    return s.supernet.genotype_of(latency.model.most_probable_within(s.supernet, latency.target))


def search_epoch(s: SimpleNamespace, args: argparse.Namespace, epoch: int, device, should_stop=None) -> dict:
    """One epoch of weight steps (warm-up: uniform paths; search: sampled paths plus an architecture
    step every K weight steps), then the epoch's evaluation record; should_stop: train_one_epoch's."""
    t0, warm = time.perf_counter(), epoch < args.warmup_epochs
    phase_epoch, phase_len = (epoch, args.warmup_epochs) if warm else (epoch - args.warmup_epochs, args.epochs)
    arch_meter, spe = Meter(device, "architecture loss"), len(s.train_loader)
    # the batch iterator is made per epoch: a resumed epoch draws the same batches
    arch_hook = s.architect.hook(args.arch_every, cifar.endless(s.arch_loader), arch_meter)
    s.sync.reset()

    with s.supernet.gate_mode("uniform" if warm or args.search_paths == "uniform" else "sample"):
        train = train_one_epoch(
            s.supernet, s.train_loader, s.w_opt, criterion=s.criterion, amp=s.amp,
            lr_at=lambda step: cosine_lr(args.lr, step, phase_len * spe), first_step=phase_epoch * spe,
            step_hook=None if warm else arch_hook, grad_clip=args.grad_clip, check_every=1,
            grad_sync=(lambda params: s.sync.grads(params, "weights")) if s.info.enabled else None,
            should_stop=should_stop,
            desc=f"epoch {epoch + 1}/{args.warmup_epochs + args.epochs} {'warm-up' if warm else 'search'}",
            progress=args.progress and s.info.is_main)
    comm = s.sync.counts()
    s.sync.check_same("the sampled paths and alpha", s.supernet.path_digest, s.supernet.alphas())
    train = ddp.reduce_train(train, s.info, device)
    record = {"epoch": epoch + 1, "phase": "warmup" if warm else "search", "lr": train["lr"], "train_loss": train["loss"],
              "train_acc": train["acc"], **s.architect.evaluate(s.valid_loader, s.amp, s.info, s.train_loader),
              "images_per_s": train["images_per_s"], "epoch_time_s": time.perf_counter() - t0}
    if arch_meter.n:
        record.update({f"arch_{k}": v for k, v in ddp.reduce_train(arch_meter.result(), s.info, device).items()})
    return {**record, **comm, "arch_steps": arch_meter.updates, "weight_steps": spe}


def load_judge(args: argparse.Namespace):
    """genotype -> the table's log fields (nb201_arch, nb201_<data set>_test, nb201_percentile), or None.
    Read and checked before any data is loaded: a table that lacks the column or any cell the search can
    end on is one error line."""
    if args.nb201_table is None:
        return None
    column = column_for(args.dataset)
    table = NB201Table.load(args.nb201_table, need=(column,))
    table.check_covers(args.candidates, column)
    return lambda genotype: table.judge(genotype, args.dataset)


def main(args: argparse.Namespace) -> dict:
    check_args(args)
    with ddp.process_group(resolve_device(args.device)) as (info, device), \
            scaffold.Guard("search_cifar.py", get_args_parser(), args, info, device) as guard:  # SIGTERM, full disk
        return search(args, info, device, guard)


def search(args: argparse.Namespace, info: ddp.DistInfo, device: torch.device,
           guard: scaffold.Guard | None = None) -> dict:
    scaffold.check_world(args, info.world_size, ("batch_size", "arch_batch_size"))
    run = scaffold.Run(args, "search", "checkpoint.pth", same=("space", "B", "F", "C", "N", "candidates", "supernet_bn", "warmup_ops"),
                       may_change=("nb201_table", "latency_margin"), is_main=info.is_main, guard=guard, added=ADDED_FLAGS,
                       warmup_free=SEARCH_PHASE)
    judge = load_judge(args)
    seed_everything(args.seed)  # the same seed on every process: same weights, batches and paths
    s = build(args, device, info)
    # from a warm-up: alpha is still uniform there and the architect (its optimizer, baseline) untouched
    run.restore(model=s.supernet, w_opt=s.w_opt, scaler=s.amp.scaler, architect=None if run.from_warmup else s.architect)
    run.dataset = s.data
    log = EpochLog(run.out, args.tensorboard, enabled=info.is_main, resume_epoch=run.resume_epoch)
    if info.is_main:
        save_json(vars(args), run.out / "config.json")
        print(f"search: space={args.space} {s.supernet.space.describe_macro(s.supernet.macro)} "
              f"candidates={len(args.candidates)} algo={args.algo} device={device} "
              f"processes={info.world_size} amp={s.amp.name} params={count_parameters(s.supernet):,} "
              f"splits={s.splits[0]}/{s.splits[1]} epochs={args.warmup_epochs}+{args.epochs} run={run.out}"
              + (f" target={s.architect.latency.target:.4g} ms (--target-latency {args.target_latency:g} less a "
                 f"{s.margin:.1%} margin)" if s.architect.latency is not None else "")
              + (f" from the warm-up {args.from_warmup}" if run.from_warmup else ""), flush=True)
    for epoch in run.epochs(args.warmup_epochs + args.epochs):
        try:
            record = search_epoch(s, args, epoch, device, run.should_stop)
        except DivergenceError as e:
            log.close()
            raise run.diverged(e, epoch, "a lower --arch-lr" if e.what.startswith("arch") else "a lower --lr") from None
        genotype = derive(s, args)
        if judge is not None:
            record.update(judge(genotype))
        log.write(record, extra={"genotype": genotype.to_dict()})
        log.tensorboard(lambda writer: s.architect.tensorboard(writer, record["epoch"]))
        if info.is_main:
            save_genotype(genotype, run.out / "genotype.json")
        run.save({**run.state(epoch + 1, model=s.supernet, w_opt=s.w_opt, scaler=s.amp.scaler, architect=s.architect),
                  "genotype": genotype.to_dict()})
    genotype = derive(s, args)
    if run.finished and info.is_main:  # (genotype.json: the same, written with the last epoch)
        save_genotype(genotype, run.out / "genotype_final.json")
        note = s.architect.convergence_note()  # near-uniform alphas: the genotype is close to a random draw
        print(f"final genotype: {run.out / 'genotype_final.json'} ({genotype.describe_counts()})"
              + (f"\nwarning: {note} (--epochs, --arch-every, --arch-lr)" if note else ""), flush=True)
        if judge is not None:
            print("\n".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in judge(genotype).items()),
                  flush=True)
    log.close()
    return {"genotype": genotype, "alphas": s.supernet.alphas().cpu(), "run_dir": run.out}


if __name__ == "__main__":
    run_cli(main, get_args_parser())
