"""Latency tables measured on the user's own device: what each entry runs, the timers, and the CLI.

    python -m utils.latency build --device cpu --threads 1 --B 18 --F 400 --out latency_cpu.json
    python -m utils.latency predict --table latency_cpu.json --genotype proxyless_cifar
    python -m utils.latency build --space nb201 --C 16 --N 5 --device cpu --threads 1 --out latency_nb201.json
    python -m utils.latency predict --table latency_nb201.json --genotype '|nor_conv_3x3~0|+|...'

The table itself (keys, JSON, prediction of a genotype and the latency model: what is timed and why) is
utils/latency_table.py.  Every module is timed with distinct BatchNorm values (``as_trained``), as a trained
network has them, and on onnxruntime as an exported graph in a session with a deployment's options.

Timing (``measure``): every entry is warmed up, then timed in ``repeats`` interleaved rounds -- a
round calls every entry once -- so that a burst of load from other processes spreads over all
entries, and so that each timed call follows other modules' calls, as in a network.  Timing one op
back to back keeps its caches warm: runs of 30 ms of repeated calls made the predictions ~19 % low
at batch 1 on CPU; single calls per run are within a few % (bench/latency_predictor.py).
``min_run_ms`` > 0 repeats a call within a run (for timers too coarse for one call).  Each entry keeps
the median and the spread as the inter-quartile range (IQR, ms) of its runs, the fastest run, and on
cpu/onnxruntime also the process CPU time per call (``cpu_median_ms``): with one thread, that is the
latency an idle machine would show, when other jobs share this one.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from models.search_space import SearchSpace
from models.search_space import IMAGE_SIZE, NUM_CLASSES
from utils.device import device_name
from utils.errors import UserError, run_cli
from utils.faults import WriteError, check_writable
from utils.latency_table import (SPREAD, LatencyError, LatencyTable, calibration_architectures, calibration_key,
                                 configs, context_key, context_ops, group_entries, group_sizes, calibrate, fixed_key,
                                 predict_genotype, timed_keys)
from utils.space_args import add_space_flags, resolve_space

BACKENDS = ("cpu", "cuda", "onnxruntime")
CALIBRATION = 16  # calibration networks of a table (utils/latency_table.calibrate)

# ------------------------------------------------------------------ what each entry runs
@dataclass
class Part:
    key: str
    module: nn.Module
    in_shape: tuple[int, int, int]  # (C, H, W), batch from the table


def as_trained(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` (eval mode) with every BatchNorm given distinct random statistics and affine values, as
    training leaves them.  Fresh BNs are all alike, and onnxruntime then computes the BN-ReLU of two
    sibling edges once (common subexpressions): an untrained export can run less than the trained one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


def parts_for(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
              num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE, calibration: int = 0) -> list[Part]:
    """The modules a table times (utils/latency_table.py says why), built with the project's own classes
    so that a table measures exactly the layers the networks run: the whole baseline network, each
    context with the baseline and with every assignment of ops to its input groups of each size, the
    calibration networks."""
    macro = space.macro(macro)
    key = space.network_key(macro, num_classes, image_size)
    parts = {key: Part(key, as_trained(space.baseline_network(macro, num_classes, image_size)),
                       (3, image_size, image_size))}
    for ctx in space.latency_contexts(macro, image_size):
        for config in (c for k in group_sizes(space) for c in configs(space, candidates, k, ctx.shape)):
            key = context_key(space, config, ctx.key, ctx.shape)
            if key not in parts:
                parts[key] = Part(key, as_trained(ctx.build(context_ops(space, config, ctx.shape)), len(parts)),
                                  ctx.in_shape)
    for k, g in enumerate(calibration_architectures(space, macro, candidates, calibration)):
        parts[calibration_key(k)] = Part(calibration_key(k), as_trained(space.derived(g, macro, num_classes, image_size),
                                                                         len(parts)), (3, image_size, image_size))
    assert list(parts) == timed_keys(space, macro, candidates, num_classes, image_size, calibration)
    return list(parts.values())


# ------------------------------------------------------------------ timers
@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """torch's intra-op thread count set to n for the block (None: leave it), restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise LatencyError(f"thread count must be >= 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _cpu_clock(call, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) for n calls.  With one thread, the CPU time is what the
    wall time would be on an idle machine: time spent waiting for other processes is not in it."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def _cuda_clock(call, n: int) -> tuple[float, None]:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(n):
        call()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end), None


def ort_options(threads: int | None):
    """The session options of a deployment, shared by the tables and export_onnx.py: every graph
    optimization (onnxruntime's default, set here so that a table and a deployed model cannot differ),
    ``threads`` intra-op threads (None or 0: onnxruntime's choice), one inter-op thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def onnx_session(module: nn.Module, example: torch.Tensor, threads: int, optimized_path: str | None = None):
    """An onnxruntime CPU session for ``module`` exported in memory (legacy TorchScript exporter:
    fast and dependency-free for these small static modules, and export_onnx.py's default).
    ``optimized_path``: also write the graph onnxruntime optimized (what it runs) there."""
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # notices, not problems: "legacy exporter" (deprecation) and "constant folding not applied"
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(module, (example,), buf, dynamo=False, input_names=["x"], output_names=["y"])
    opts = ort_options(threads)
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise LatencyError(f"unknown latency device {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cuda" and not torch.cuda.is_available():
        raise LatencyError("latency on cuda was asked for but torch sees no CUDA device "
                           "(build the table on the machine that has the GPU, or time it on the cpu)")
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise LatencyError("latency on onnxruntime needs the onnxruntime package "
                               "(pip install onnxruntime)") from None


def _call_for(backend: str, module: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object]:
    module = module.eval()
    if backend == "onnxruntime":
        sess = onnx_session(module, x, threads)
        feed = {"x": x.numpy()}
        return lambda: sess.run(None, feed)
    if backend == "cuda":
        module, x = module.to("cuda"), x.to("cuda")
    return lambda: module(x)


def measure(items: Sequence[tuple[str, nn.Module, torch.Tensor]], backend: str = "cpu", threads: int | None = None,
            warmup: int = 10, repeats: int = 30, min_run_ms: float = 0.0, progress: bool = False,
            desc: str = "latency") -> dict[str, dict]:
    """Time modules on one backend: key -> {"median_ms", "spread_ms" (IQR), "min_ms", "runs", "inner"}
    of the wall-clock time per call, and for cpu/onnxruntime "cpu_median_ms", "cpu_spread_ms" of the
    process CPU time per call (meaningful with one thread: see _cpu_clock).

    The repeats are interleaved: round r times every module once, so a burst of load from other
    processes (or a clock change) spreads over all entries instead of spoiling a few.
    """
    check_backend(backend)
    if warmup < 0 or repeats < 1:
        raise LatencyError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    from tqdm import tqdm

    clock = _cuda_clock if backend == "cuda" else _cpu_clock
    with torch_threads(threads if backend != "cuda" else None) as n_threads, torch.inference_mode():
        calls, inner = {}, {}
        for key, module, x in tqdm(items, desc=f"{desc}: prepare", disable=not progress, unit="entry"):
            call = calls[key] = _call_for(backend, module, x, n_threads)
            for _ in range(warmup):
                call()
            once = max(clock(call, 1)[0], 1e-6)
            inner[key] = max(1, min(1000, math.ceil(min_run_ms / once)))
        samples: dict[str, list[tuple]] = {k: [] for k in calls}
        for _ in tqdm(range(repeats), desc=f"{desc}: time", disable=not progress, unit="round"):
            for key, call in calls.items():
                samples[key].append(clock(call, inner[key]))
    out = {}
    for key, s in samples.items():
        wall = np.array([w for w, _ in s]) / inner[key]
        q0, q25, q50, q75 = np.percentile(wall, [0, 25, 50, 75])
        e = out[key] = {"median_ms": float(q50), "spread_ms": float(q75 - q25), "min_ms": float(q0),
                        "runs": len(s), "inner": inner[key]}
        if s[0][1] is not None:
            cpu = np.array([c for _, c in s]) / inner[key]
            c25, c50, c75 = np.percentile(cpu, [25, 50, 75])
            e.update(cpu_median_ms=float(c50), cpu_spread_ms=float(c75 - c25))
    return out


# ------------------------------------------------------------------ building
def table_items(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None, batch_size: int = 1,
                device: str = "cpu", num_classes: int = NUM_CLASSES, seed: int = 0, image_size: int = IMAGE_SIZE,
                calibration: int = CALIBRATION) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(key, module, input) for every entry that a table build times, inputs at ``batch_size``."""
    check_backend(device)
    if batch_size < 1:
        raise LatencyError(f"batch size must be >= 1, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    inputs: dict[tuple, torch.Tensor] = {}  # one input per shape: many entries share one
    items = []
    for part in parts_for(space, macro, candidates, num_classes, image_size, calibration):
        shape = (batch_size, *part.in_shape)
        if shape not in inputs:
            inputs[shape] = torch.randn(shape, generator=gen)
        items.append((part.key, part.module, inputs[shape]))
    return items


def table_meta(space: SearchSpace, macro: dict, candidates: Sequence[str], batch_size: int, device: str,
               threads: int | None, warmup: int, repeats: int, min_run_ms: float, num_classes: int = NUM_CLASSES,
               image_size: int = IMAGE_SIZE, calibration: int = CALIBRATION) -> dict:
    meta = {
        "backend": device, "device": device, "device_name": device_name(device),
        "torch_version": torch.__version__, "threads": None if device == "cuda" else threads,
        "batch_size": batch_size, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "space": space.name, "macro": dict(macro), **dict(macro), "candidates": list(candidates),
        "num_classes": num_classes, "image_size": image_size,
        "warmup": warmup, "repeats": repeats, "min_run_ms": min_run_ms, "spread": SPREAD,
        "calibration": calibration,
        "model": f"fixed + sum over input groups [group(ops) - group({space.baseline_op}s)]; group(ops) = scale * "
                 f"(context(ops on every group of their size) - context({space.baseline_op})) / those groups; "
                 f"fixed = a + scale * network({space.baseline_op} everywhere); a, scale fitted on {calibration} "
                 f"calibration networks",
    }
    if device == "onnxruntime":
        import onnxruntime
        meta["onnxruntime_version"] = onnxruntime.__version__
    return meta


def build_table(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None, batch_size: int = 1,
                device: str = "cpu", threads: int | None = None, warmup: int = 10, repeats: int = 30,
                min_run_ms: float = 0.0, progress: bool = True, num_classes: int = NUM_CLASSES, seed: int = 0,
                image_size: int = IMAGE_SIZE, calibration: int = CALIBRATION) -> LatencyTable:
    """Profile every distinct entry that ``space``'s network of ``macro`` size needs for ``candidates``
    (None: all the space's ops) at ``batch_size``."""
    if threads is not None and threads < 1:
        raise LatencyError(f"thread count must be >= 1, got {threads}")
    macro = space.macro(macro)
    candidates = space.check_candidates(space.primitives if candidates is None else candidates)
    if calibration < 0:
        raise LatencyError(f"the number of calibration networks must be >= 0, got {calibration}")
    items = table_items(space, macro, candidates, batch_size, device, num_classes, seed, image_size, calibration)
    threads = threads or torch.get_num_threads()
    timed = measure(items, device, threads, warmup, repeats, min_run_ms, progress,
                    desc=f"latency {device} b{batch_size}")
    meta = table_meta(space, macro, candidates, batch_size, device, threads, warmup, repeats, min_run_ms,
                      num_classes, image_size, calibration)
    return assemble(space, macro, candidates, timed, meta)


def assemble(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, timed: dict[str, dict],
             meta: dict) -> LatencyTable:
    """The table of ``timed`` (the entries of table_items, as measured, with the settings in ``meta``):
    those, the group entries and the fixed cost."""
    size, classes = meta["image_size"], meta["num_classes"]
    fixed, groups = calibrate(space, macro, candidates, timed, group_entries(space, macro, candidates, timed, size),
                              meta["calibration"], classes, size)
    return LatencyTable({**timed, **groups, fixed_key(space, space.macro(macro), classes, size): fixed}, meta)


# ------------------------------------------------------------------ tables from another device
def sample_architectures(space: SearchSpace, macro: dict, candidates: Sequence[str], k: int, seed: int) -> list:
    """``k`` distinct architectures for a fit: first every candidate on every decision (architecture i takes
    candidate (i + d) mod N on decision d: N architectures, a Latin design), then uniform random ones -- each
    decision among the candidates the space allows there (a forbidden one: the next allowed, cyclically)."""
    n, decisions = len(candidates), len(space.decision_names(macro))
    allowed = space.allowed(macro, candidates)
    restricted = any(len(a) < n for a in allowed)
    total = math.prod(len(a) for a in allowed) if decisions < 40 else None
    if k < 1 or (total is not None and k > total):
        raise LatencyError(f"--samples must be between 1 and the {total} architectures of the space, got {k}")
    rng = np.random.default_rng(seed)
    seen, out = set(), []

    def legal(d: int, i: int) -> int:
        return next(j % n for j in range(i, i + n) if j % n in allowed[d])

    first = [[legal(d, (i + d) % n) for d in range(decisions)] for i in range(n)]
    while len(out) < k:
        if first:
            row = tuple(first.pop(0))
        elif not restricted:
            row = tuple(rng.integers(n, size=decisions).tolist())
        else:
            row = tuple(int(a[rng.integers(len(a))]) for a in allowed)
        if row not in seen:
            seen.add(row)
            out.append(space.genotype_from_ops([candidates[i] for i in row], macro))
    return out


def space_and_candidates(args) -> tuple[SearchSpace, dict, tuple[str, ...]]:
    """The space, size and candidates of a subcommand's flags (and --batch >= 1), each fault one flag-level line."""
    if args.batch < 1:
        raise LatencyError(f"--batch must be >= 1, got {args.batch}")
    space, macro = resolve_space(args)
    try:
        return space, macro, space.check_candidates(space.primitives if args.candidates is None else args.candidates)
    except ValueError as e:
        raise UserError(f"--candidates: {e}") from None


def sample_command(args) -> list:
    """`sample`: the architectures, their ONNX files (the project's exporter, batch 1 input), manifest.csv."""
    import csv

    from utils.checkpoint import atomic_write_text

    space, macro, candidates = space_and_candidates(args)
    archs = sample_architectures(space, macro, list(candidates), args.samples, args.seed)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_writable(out)
    except OSError as e:  # WriteError included
        raise LatencyError(e.line("or choose another --out") if isinstance(e, WriteError)
                           else f"cannot make --out {out}: {e.strerror}") from None
    stems = [f"net_{i:04d}" for i in range(len(archs))]
    if args.onnx:
        from tqdm import tqdm

        from models import build_net
        from utils.onnx_export import calibrate_bn, export_torchscript  # the deployment's exporter
        for g, stem in zip(tqdm(archs, desc="export", disable=args.no_progress, unit="net"), stems):
            net = build_net(g, args.num_classes, image_size=args.image_size, macro=macro)
            calibrate_bn(net)
            export_torchscript(net.eval(), out / f"{stem}.onnx", None, batch=args.batch)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", "file", "latency_ms"])
    for g, stem in zip(archs, stems):
        name = g.to_string() if hasattr(g, "to_string") else None
        if name is None:  # a genotype without a one-line form (the tree space's): its JSON beside the manifest
            name = f"{stem}.json"
            atomic_write_text(out / name, json.dumps(g.to_dict()) + "\n")
        w.writerow([name, f"{stem}.onnx" if args.onnx else "", ""])
    atomic_write_text(out / "manifest.csv", buf.getvalue())
    print(f"wrote {out / 'manifest.csv'}: {len(archs)} {space.name} architectures "
          f"({space.describe_macro(macro)}, image size {args.image_size}, {args.num_classes} classes)"
          + (f" and their ONNX files (input {args.batch} x 3 x {args.image_size} x {args.image_size})"
             if args.onnx else "")
          + "; time each file on the device, fill in latency_ms (ms), then `python -m utils.latency fit "
            f"--measurements {out / 'manifest.csv'}`")
    return archs


def fit_command(args, parse) -> LatencyTable:
    """`fit`: read, fit, write, and print the cross-validated error."""
    from utils.latency_fit import fit_table, read_measurements, subsample

    space, macro, candidates = space_and_candidates(args)
    m = subsample(read_measurements(args.measurements, space, args.column, parse, args.arch_column),
                  args.samples, args.seed)
    table = fit_table(m, space, macro, candidates, args.model, args.batch, args.device_name, args.num_classes,
                      args.image_size, {"samples": args.samples, "seed": args.seed})
    try:
        check_writable(Path(args.out).parent)
        table.save(args.out)
    except WriteError as e:
        raise LatencyError(e.line("or choose another --out")) from None
    f = table.meta["fit"]
    cv = f["cv"]
    print(f"wrote {args.out}: fit to {f['rows']} networks of {m.source} [{m.column}], {space.name} space "
          f"{space.describe_macro(macro)}: {f['level_name']}, {f['terms']} terms")
    print(f"cross-validated (leave-one-out): MAPE {cv['mape']:.2f} % over the {cv['rows_mape']} rows >= 0.5 ms, "
          f"Spearman {cv['spearman']:.4f}, Kendall {cv['kendall']:.4f}")
    return table


def import_mobile_command(args: argparse.Namespace) -> LatencyTable:
    from utils.mobile_latency import MobileTable, MobileTableError, to_latency_table
    if args.space not in (None, "mbconv"):
        raise LatencyError(f"the authors' mobile table prices the mbconv space, not --space {args.space}")
    args.space = "mbconv"
    space, macro = resolve_space(args)
    try:
        table = to_latency_table(MobileTable.from_file(args.yaml), macro, args.num_classes, args.image_size)
    except MobileTableError as e:
        raise LatencyError(str(e)) from None
    try:
        table.save(args.out)
    except WriteError as e:
        raise LatencyError(e.line("or choose another --out")) from None
    print(f"wrote {args.out}: {len(table.entries)} entries, {space.name} space {space.describe_macro(macro)}, "
          f"{table.meta['device_name']}, image size {args.image_size}, {args.num_classes} classes")
    return table


# ------------------------------------------------------------------ command line
def get_args_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(description="Latency tables for hardware-aware search.", formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True,
                           help="build: measure a table here; sample / fit: a table from networks timed on another "
                                "device; predict: latency of a genotype")
    b = sub.add_parser("build", formatter_class=fmt,
                       help="profile every entry a space needs on this device and write the table")
    b.add_argument("--device", choices=BACKENDS, default="cpu",
                   help="cpu: torch eager; cuda: CUDA events; onnxruntime: each entry exported and run as a CPU "
                        "InferenceSession with a deployment's options (all graph optimizations)")
    b.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for cpu/onnxruntime (unset: torch's current count)")
    add_space_flags(b)
    b.add_argument("--candidates", nargs="+", default=None, help="candidate op names (default: all of the space's)")
    b.add_argument("--batch", type=int, default=1, help="batch size the latencies are measured at")
    b.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                   help="square input size of the network (your data set's --image-size; CIFAR: 32)")
    b.add_argument("--num-classes", type=int, default=NUM_CLASSES, help="classes of the data set (CIFAR-10: 10)")
    b.add_argument("--warmup", type=int, default=10, help="untimed calls before timing each entry")
    b.add_argument("--repeats", type=int, default=30, help="timed runs per entry (median and IQR kept)")
    b.add_argument("--min-run-ms", type=float, default=0.0,
                   help="a timed run repeats the call until it lasts this long (0: one call per run, as in a network)")
    b.add_argument("--calibration", type=int, default=CALIBRATION,
                   help="random whole networks timed to calibrate the table (its fixed cost and the scale of the "
                        "ops' costs; 0: none: the ops, timed one context at a time, then add up to 4-6 %% less than "
                        "networks that mix them)")
    b.add_argument("--out", default="latency_table.json", help="output JSON file")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    f = sub.add_parser("fit", formatter_class=fmt,
                       help="fit a table to whole networks timed on a device (a CSV: architecture, latency in ms)")
    f.add_argument("--measurements", required=True,
                   help="CSV (or .csv.gz) with an architecture column and a latency column: the manifest.csv of "
                        "`sample` once filled in, or any file of that layout (e.g. one column per device)")
    f.add_argument("--column", default="latency_ms", help="the column of latencies (ms) to fit")
    f.add_argument("--arch-column", default="arch",
                   help="the column of architectures: a genotype name or JSON file, or a NAS-Bench-201 string")
    add_space_flags(f)
    f.add_argument("--candidates", nargs="+", default=None, help="candidate op names (default: all of the space's)")
    f.add_argument("--samples", type=int, default=None, metavar="K",
                   help="fit on K rows drawn at random from the file (default: every row)")
    f.add_argument("--seed", type=int, default=0, help="the draw of --samples")
    f.add_argument("--model", choices=("auto", "optype", "edge", "group"), default="auto",
                   help="the finest terms allowed: optype (one cost per op type), edge (per op and edge), group "
                        "(ops of one input group together); auto = group; each finer level is a ridge whose "
                        "penalty leave-one-out cross-validation chooses, and drops when it does not pay")
    f.add_argument("--batch", type=int, default=1, help="the batch size the networks were timed at")
    f.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="the networks' input size")
    f.add_argument("--num-classes", type=int, default=NUM_CLASSES, help="the networks' classes")
    f.add_argument("--device-name", default=None, help="what the table says it was measured on (default: --column)")
    f.add_argument("--out", default="latency_table.json", help="output JSON file")
    s = sub.add_parser("sample", formatter_class=fmt,
                       help="pick K architectures to time on a device and export each to ONNX, with manifest.csv")
    add_space_flags(s)
    s.add_argument("--candidates", nargs="+", default=None, help="candidate op names (default: all of the space's)")
    s.add_argument("--samples", type=int, default=100, metavar="K",
                   help="distinct architectures: every op on every decision first, then random")
    s.add_argument("--seed", type=int, default=0, help="the random draw")
    s.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="the deployed input size")
    s.add_argument("--num-classes", type=int, default=NUM_CLASSES, help="the deployed classes")
    s.add_argument("--batch", type=int, default=1, help="the deployed batch size: the ONNX files' static input batch")
    s.add_argument("--no-onnx", dest="onnx", action="store_false", help="write manifest.csv only (no ONNX files)")
    s.add_argument("--out", default="latency_samples", help="output folder (manifest.csv, one .onnx per network)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    m = sub.add_parser("import-mobile", formatter_class=fmt,
                       help="the ProxylessNAS authors' mobile latency table (mobile_trim.yaml, Pixel 1) as a table "
                            "of the mbconv space")
    m.add_argument("--yaml", required=True,
                   help="the authors' mobile_trim.yaml (or .yaml.gz); not bundled (no licence): see docs/latency.md")
    add_space_flags(m)
    m.add_argument("--image-size", type=int, default=224, help="the network's input size (the table has 224 px only)")
    m.add_argument("--num-classes", type=int, default=1000, help="the network's classes (the table has 1000 only)")
    m.add_argument("--out", default="mobile_table.json", help="output JSON file")
    q = sub.add_parser("predict", formatter_class=fmt, help="predicted latency of a derived network")
    q.add_argument("--table", required=True, help="latency table JSON")
    q.add_argument("--genotype", required=True,
                   help="genotype name (e.g. proxyless_cifar), NAS-Bench-201 string or JSON file; a NAS-Bench-201 "
                        "cell is predicted in the network (C, N) the table was built for")
    q.add_argument("--stat", default="median_ms", choices=["median_ms", "min_ms", "cpu_median_ms"],
                   help="which statistic of the entries to add up (cpu_median_ms: process CPU time, one thread)")
    return p


def main(args: argparse.Namespace) -> float | LatencyTable:
    if args.command == "build":
        for flag, value in (("--threads", args.threads), ("--batch", args.batch), ("--repeats", args.repeats)):
            if value is not None and value < 1:
                raise LatencyError(f"{flag} must be >= 1, got {value}")
        space, macro, candidates = space_and_candidates(args)
        try:
            check_writable(Path(args.out).parent)  # before the minutes of measuring
            table = build_table(space, macro, candidates, args.batch, args.device, args.threads,
                                args.warmup, args.repeats, args.min_run_ms, progress=not args.no_progress,
                                num_classes=args.num_classes, image_size=args.image_size,
                                calibration=args.calibration)
            table.save(args.out)
        except WriteError as e:
            raise LatencyError(e.line("or choose another --out")) from None
        print(f"wrote {args.out}: {len(table.entries)} entries, {space.name} space {space.describe_macro(macro)}, "
              f"{args.device} ({table.meta['device_name']}), batch {args.batch}, threads {table.meta['threads']}, "
              f"image size {args.image_size}, {args.num_classes} classes")
        return table
    import genotypes  # the named genotypes: only the CLI needs them

    if args.command == "fit":
        return fit_command(args, genotypes.get)
    if args.command == "sample":
        return sample_command(args)
    if args.command == "import-mobile":
        return import_mobile_command(args)
    table = LatencyTable.load(args.table)
    g = genotypes.get(args.genotype)
    ms = predict_genotype(table, g, stat=args.stat)
    space = table.space
    print(f"predicted latency {ms:.3f} ms ({g.describe()}, {table.space.name} space "
          f"{space.describe_macro(table.macro)}, batch {table.meta.get('batch_size')}, "
          f"image size {table.image_size}, {table.num_classes} classes, "
          f"{table.meta.get('backend')} {table.meta.get('device_name')})")
    return ms


if __name__ == "__main__":
    run_cli(main, get_args_parser())
