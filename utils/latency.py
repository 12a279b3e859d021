"""Latency tables measured on the user's own device, the supernet's expected latency, latency losses.

How a network's latency is modelled (and why):
* A *block* entry is the time of one whole residual tree block whose 12 searchable edges are all
  ``identity``: it holds everything in the block that is not an edge op -- shortcut (+ channel
  zero-pad), in_bottle, root edge + shuffle, the split, every copy/add sum, the branch BNs and their
  residual adds, out_bottle, final BN, the residual add -- and the per-call costs of all those
  modules.  Adding up those pieces timed one by one misses the sums, the split and the module calls:
  ~30 % of a block's fixed time at batch 1 on CPU, ~11 % at batch 32 (B=3, F=160, one thread).
* An *edge* entry is one candidate op (op, channels, H, W, stride) timed in isolation.  An edge's
  cost is ``edge(op) - edge(identity)`` at its shape: the identity that the block entry already
  counted is taken out again, and with it the cost of the timer.
* ``stem`` and ``head`` (BN-ReLU-pool-linear) entries complete the network:
  latency(genotype) = stem + head + sum_blocks block + sum_edges [edge(op) - edge(identity)].
* onnxruntime only: every entry runs as its own InferenceSession, while a deployed network is one
  session; the cost of one ``session.run`` call (entry ``overhead:session``) is taken out of every
  fixed part but one.

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
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from models.operations import OPS, check_candidates
from models.proxyless_nas import TreeNet
from models.space import (EDGES_PER_CELL, IMAGE_SIZE, NUM_CLASSES, PRIMITIVES, STEM_CHANNELS, BlockSpec, block_plan,
                          check_macro)
from utils.errors import UserError, run_cli

TABLE_FORMAT = "proxylessnas-latency-table/1"
BACKENDS = ("cpu", "cuda", "onnxruntime")
SPREAD = "iqr"  # what "spread_ms" holds: 75th minus 25th percentile of the timed runs
BASELINE_OP = "identity"  # edge costs are relative to it (the block entries run identity edges)


class LatencyError(UserError):
    pass


# ------------------------------------------------------------------ keys
# Keys name everything that decides an entry's time; the batch size is the table's (meta).
def edge_key(op: str, channels: int, size: int, stride: int = 1) -> str:
    return f"edge:{op}:c{channels}:{size}x{size}:s{stride}"


def block_key(spec: BlockSpec) -> str:
    return (f"block:c{spec.in_channels}-{spec.width}-{spec.out_channels}:"
            f"{spec.in_size}x{spec.in_size}:s{spec.stride}")


def stem_key() -> str:
    return f"stem:c3-{STEM_CHANNELS}:{IMAGE_SIZE}x{IMAGE_SIZE}"


def head_key(F: int, size: int, num_classes: int) -> str:
    return f"head:c{F}:{size}x{size}:n{num_classes}"


SESSION_OVERHEAD_KEY = "overhead:session"


def required_keys(B: int, F: int, candidates: Sequence[str] = PRIMITIVES,
                  num_classes: int = NUM_CLASSES) -> list[str]:
    """Every key that the space (B, F, candidates) needs, in network order, without repeats.
    The identity edge is always needed: it is the baseline of the edge costs."""
    plan = _plan(B, F)
    ops = list(check_candidates(candidates))
    if BASELINE_OP not in ops:
        ops.append(BASELINE_OP)
    keys = [stem_key()]
    for spec in plan:
        keys.append(block_key(spec))
        keys.extend(edge_key(op, spec.width, spec.out_size) for op in ops)
    keys.append(head_key(F, plan[-1].out_size, num_classes))
    return list(dict.fromkeys(keys))


def _plan(B: int, F: int) -> list[BlockSpec]:
    try:
        check_macro(B, F)
    except ValueError as e:
        raise LatencyError(str(e)) from None
    return block_plan(B, F)


# ------------------------------------------------------------------ the table
@dataclass
class LatencyTable:
    """entries: key -> {"median_ms", "spread_ms" (IQR), "min_ms", "runs", "inner"} of the wall-clock
    time per call (+ "cpu_median_ms", "cpu_spread_ms" on cpu/onnxruntime); meta: where and how."""

    entries: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def ms(self, key: str, stat: str = "median_ms") -> float:
        if key not in self.entries:
            raise LatencyError(f"latency table has no entry {key!r}; {self.describe()}")
        if stat not in self.entries[key]:
            raise LatencyError(f"latency table entry {key!r} has no {stat!r}")
        return float(self.entries[key][stat])

    def describe(self) -> str:
        m = self.meta
        return (f"the table was built for B={m.get('B')} F={m.get('F')} batch={m.get('batch_size')} "
                f"candidates={','.join(m.get('candidates', []))} on {m.get('backend')} "
                f"({m.get('device_name')}); build one for this configuration with "
                f"`python -m utils.latency build`")

    def check(self, B: int, F: int, candidates: Sequence[str] = PRIMITIVES, batch_size: int | None = None,
              num_classes: int = NUM_CLASSES) -> None:
        """Raise LatencyError naming the first entry that the space needs and the table lacks, or
        when the table was measured at another batch size."""
        if batch_size is not None and self.meta.get("batch_size") != batch_size:
            raise LatencyError(f"latency table was measured at batch size {self.meta.get('batch_size')}, "
                               f"not {batch_size}; {self.describe()}")
        for key in required_keys(B, F, candidates, num_classes):
            if key not in self.entries:
                raise LatencyError(f"latency table lacks entry {key!r} needed for B={B} F={F} "
                                   f"candidates={','.join(candidates)}; {self.describe()}")

    def to_dict(self) -> dict:
        return {"format": TABLE_FORMAT, "meta": self.meta, "entries": self.entries}

    def save(self, path: str | os.PathLike) -> None:
        """Written to a temporary file and renamed: an interrupted save keeps the old table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, d, where: str = "latency table") -> "LatencyTable":
        if not isinstance(d, dict) or d.get("format") != TABLE_FORMAT:
            raise LatencyError(f"{where} is not a latency table (expected a JSON object with "
                               f"\"format\": \"{TABLE_FORMAT}\", \"meta\" and \"entries\")")
        meta, entries = d.get("meta"), d.get("entries")
        if not isinstance(meta, dict) or not isinstance(entries, dict):
            raise LatencyError(f"{where}: \"meta\" and \"entries\" must be JSON objects")
        for key, e in entries.items():
            ok = isinstance(e, dict) and isinstance(e.get("median_ms"), (int, float)) and e["median_ms"] >= 0
            if not ok:
                raise LatencyError(f"{where}: entry {key!r} needs a non-negative number \"median_ms\", got {e!r}")
        return cls(entries=entries, meta=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise LatencyError(f"cannot read latency table {path}: {e.strerror}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise LatencyError(f"latency table {path} is not valid JSON: {e}") from None
        return cls.from_dict(d, where=f"latency table {path}")


# ------------------------------------------------------------------ what each entry runs
@dataclass
class Part:
    key: str
    module: nn.Module
    in_shape: tuple[int, int, int]  # (C, H, W), batch from the table


def _identity_edges(block: int, edge: int, channels: int) -> nn.Module:
    return nn.Identity()


def parts_for(B: int, F: int, candidates: Sequence[str] = PRIMITIVES,
              num_classes: int = NUM_CLASSES) -> list[Part]:
    """The modules to time, built with the project's own classes (so a table measures exactly the
    layers the networks run): stem, head and blocks from a TreeNet with identity edges."""
    net = TreeNet(B, F, _identity_edges, num_classes).eval()
    plan = net.plan
    wanted = required_keys(B, F, candidates, num_classes)
    parts: dict[str, Part] = {}
    parts[stem_key()] = Part(stem_key(), net.stem, (3, IMAGE_SIZE, IMAGE_SIZE))
    last = plan[-1]
    hk = head_key(F, last.out_size, num_classes)
    parts[hk] = Part(hk, nn.Sequential(net.head, net.classifier), (F, last.out_size, last.out_size))
    for spec, block in zip(plan, net.blocks):
        parts.setdefault(block_key(spec), Part(block_key(spec), block, (spec.in_channels, spec.in_size, spec.in_size)))
        for op in dict.fromkeys(list(candidates) + [BASELINE_OP]):
            k = edge_key(op, spec.width, spec.out_size)
            if k not in parts:
                parts[k] = Part(k, OPS[op](spec.width, 1).eval(), (spec.width, spec.out_size, spec.out_size))
    return [parts[k] for k in wanted]


# ------------------------------------------------------------------ timers
@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """torch's intra-op thread count set to n for the block (None: leave it), restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise LatencyError(f"--threads must be >= 1, got {n}")
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


def onnx_session(module: nn.Module, example: torch.Tensor, threads: int):
    """An onnxruntime CPU session for ``module`` exported in memory (legacy TorchScript exporter:
    fast and dependency-free for these small static modules)."""
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # notices, not problems: "legacy exporter" (deprecation) and "constant folding not applied"
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(module, (example,), buf, dynamo=False, input_names=["x"], output_names=["y"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise LatencyError(f"unknown latency device {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cuda" and not torch.cuda.is_available():
        raise LatencyError("--device cuda was asked for but torch sees no CUDA device "
                           "(build the table on the machine that has the GPU, or use --device cpu)")
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise LatencyError("--device onnxruntime needs the onnxruntime package "
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


def device_name(backend: str) -> str:
    if backend == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:  # the CPU model, where Linux tells it
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform's answer stays
    return name


# ------------------------------------------------------------------ building
def table_items(B: int, F: int, candidates: Sequence[str] = PRIMITIVES, batch_size: int = 1, device: str = "cpu",
                num_classes: int = NUM_CLASSES, seed: int = 0) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(key, module, input) for every entry that the space needs, inputs at ``batch_size``."""
    candidates = _candidates(candidates)
    check_backend(device)
    if batch_size < 1:
        raise LatencyError(f"--batch must be >= 1, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    inputs: dict[tuple, torch.Tensor] = {}  # one input per shape: many entries share one
    items = []
    for part in parts_for(B, F, candidates, num_classes):
        shape = (batch_size, *part.in_shape)
        if shape not in inputs:
            inputs[shape] = torch.randn(shape, generator=gen)
        items.append((part.key, part.module, inputs[shape]))
    if device == "onnxruntime":  # one session.run of a trivial graph: the cost of a call
        items.append((SESSION_OVERHEAD_KEY, nn.Identity(), torch.zeros(1)))
    return items


def table_meta(B: int, F: int, candidates: Sequence[str], batch_size: int, device: str, threads: int | None,
               warmup: int, repeats: int, min_run_ms: float, num_classes: int = NUM_CLASSES) -> dict:
    meta = {
        "backend": device, "device": device, "device_name": device_name(device),
        "torch_version": torch.__version__, "threads": None if device == "cuda" else threads,
        "batch_size": batch_size, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "B": B, "F": F, "candidates": list(candidates), "num_classes": num_classes,
        "warmup": warmup, "repeats": repeats, "min_run_ms": min_run_ms, "spread": SPREAD,
        "model": "stem + head + sum block(identity edges) + sum edge(op) - edge(identity)",
    }
    if device == "onnxruntime":
        import onnxruntime
        meta["onnxruntime_version"] = onnxruntime.__version__
    return meta


def build_table(B: int, F: int, candidates: Sequence[str] = PRIMITIVES, batch_size: int = 1, device: str = "cpu",
                threads: int | None = None, warmup: int = 10, repeats: int = 30, min_run_ms: float = 0.0,
                progress: bool = True, num_classes: int = NUM_CLASSES, seed: int = 0) -> LatencyTable:
    """Profile every distinct entry that the space (B, F, candidates) needs at ``batch_size``."""
    if threads is not None and threads < 1:
        raise LatencyError(f"--threads must be >= 1, got {threads}")
    candidates = _candidates(candidates)
    items = table_items(B, F, candidates, batch_size, device, num_classes, seed)
    threads = threads or torch.get_num_threads()
    entries = measure(items, device, threads, warmup, repeats, min_run_ms, progress,
                      desc=f"latency {device} b{batch_size}")
    meta = table_meta(B, F, candidates, batch_size, device, threads, warmup, repeats, min_run_ms, num_classes)
    return LatencyTable(entries, meta)


def _candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    try:
        return check_candidates(candidates)
    except ValueError as e:
        raise LatencyError(str(e)) from None


# ------------------------------------------------------------------ the model
# stat: which statistic of the entries to add up: "median_ms" (wall clock, default: a dedicated
# device), "cpu_median_ms" (process CPU time: a table measured with one thread on a shared machine),
# or "min_ms".
def fixed_ms(table: LatencyTable, B: int, F: int, num_classes: int = NUM_CLASSES, stat: str = "median_ms") -> float:
    """stem + head + every block with identity edges (less the extra session calls on onnxruntime)."""
    plan = _plan(B, F)
    keys = [stem_key(), head_key(F, plan[-1].out_size, num_classes)] + [block_key(s) for s in plan]
    total = sum(table.ms(k, stat) for k in keys)
    if SESSION_OVERHEAD_KEY in table.entries:
        total -= (len(keys) - 1) * table.ms(SESSION_OVERHEAD_KEY, stat)
    return total


def edge_costs(table: LatencyTable, B: int, F: int, candidates: Sequence[str], stat: str = "median_ms") -> torch.Tensor:
    """(3B*12, N) ms: cost of each candidate on each edge, relative to identity (identity = 0)."""
    rows = []
    for spec in _plan(B, F):
        base = table.ms(edge_key(BASELINE_OP, spec.width, spec.out_size), stat)
        row = [table.ms(edge_key(op, spec.width, spec.out_size), stat) - base for op in candidates]
        rows.extend([row] * EDGES_PER_CELL)
    return torch.tensor(rows, dtype=torch.float64)


def predict_genotype(table: LatencyTable, genotype, num_classes: int = NUM_CLASSES, stat: str = "median_ms") -> float:
    """Predicted forward latency (ms) of the derived network of ``genotype`` at the table's batch size."""
    total = fixed_ms(table, genotype.B, genotype.F, num_classes, stat)
    for spec, ops in zip(_plan(genotype.B, genotype.F), genotype.ops):
        base = table.ms(edge_key(BASELINE_OP, spec.width, spec.out_size), stat)
        total += sum(table.ms(edge_key(op, spec.width, spec.out_size), stat) - base for op in ops)
    return total


class LatencyModel:
    """Expected latency of a supernet, differentiable in its alphas, and predictions for genotypes.

    ``costs``: (E, N) ms per edge and candidate (supernet order, relative to identity), ``fixed``: ms.
    """

    def __init__(self, table: LatencyTable, supernet, stat: str = "median_ms"):
        self.table, self.stat = table, stat
        self.B, self.F = supernet.B, supernet.F
        self.candidates = tuple(supernet.candidates)
        self.num_classes = supernet.classifier.out_features
        table.check(self.B, self.F, self.candidates, num_classes=self.num_classes)
        self.fixed = fixed_ms(table, self.B, self.F, self.num_classes, stat)
        self.costs = edge_costs(table, self.B, self.F, self.candidates, stat)
        self._on: dict[tuple, torch.Tensor] = {}

    def _costs(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._on:
            self._on[key] = self.costs.to(device=device, dtype=dtype)
        return self._on[key]

    def _mask(self, mixed, sampled: bool | None, device) -> torch.Tensor:
        """True where a candidate is in the distribution: the sampled pair for edges in "two" mode
        (sampled=None: per edge from its mode; True: wherever a pair was sampled), else all."""
        E, N = len(mixed), len(self.candidates)
        rows, cols = [], []
        for e, m in enumerate(mixed):
            pair = m.sampled is not None and len(m.sampled) == 2
            if pair and (sampled or (sampled is None and m.mode == "two")):
                rows += [e, e]
                cols += list(m.sampled)
        mask = torch.ones(E, N, dtype=torch.bool)
        if rows:
            r = torch.tensor(rows)
            mask[r] = False
            mask[r, torch.tensor(cols)] = True
        return mask.to(device)

    def probs(self, supernet, sampled: bool | None = None) -> torch.Tensor:
        """(E, N) the distribution each edge's latency is averaged over; differentiable in alpha."""
        mixed = supernet.mixed_ops()
        if len(mixed) != self.costs.shape[0] or tuple(supernet.candidates) != self.candidates:
            raise LatencyError("this LatencyModel was built for another supernet "
                               f"(B={self.B} F={self.F} candidates={','.join(self.candidates)})")
        alphas = torch.stack([m.alpha for m in mixed]).float()
        mask = self._mask(mixed, sampled, alphas.device)
        return torch.softmax(alphas.masked_fill(~mask, float("-inf")), dim=1)

    def expected(self, supernet, sampled: bool | None = None) -> torch.Tensor:
        """E[LAT] (ms, float32 scalar) = fixed + sum_edges sum_i p_i c_i.  In "two" mode p is the
        two-way softmax over the pair of the last forward (call it inside the gate_mode("two")
        block, or pass sampled=True), so that only the sampled alphas get a gradient."""
        p = self.probs(supernet, sampled)
        return self.fixed + (p * self._costs(p.device, p.dtype)).sum()

    def predict(self, genotype) -> float:
        """Latency (ms) of a derived network; any genotype whose entries the table holds."""
        return predict_genotype(self.table, genotype, self.num_classes, self.stat)

    def predict_indices(self, indices) -> float:
        """Latency of the architecture given by one candidate index per edge (list or (E,) tensor)."""
        return float(self.predict_batch(torch.as_tensor(indices).reshape(1, -1))[0])

    def predict_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """(M,) float64 latencies (ms, CPU) of M architectures given as (M, E) candidate indices."""
        idx = torch.as_tensor(indices, dtype=torch.long).cpu()
        E = self.costs.shape[0]
        if idx.dim() != 2 or idx.shape[1] != E:
            raise LatencyError(f"need one index per edge ({E}) per architecture, got shape {tuple(idx.shape)}")
        return self.fixed + self.costs[torch.arange(E)[None, :], idx].sum(1)

    def predict_active(self, supernet) -> float:
        """Latency of the architecture that the supernet's last forward ran (REINFORCE's sample)."""
        mixed = supernet.mixed_ops()
        if any(m.active is None for m in mixed):
            raise LatencyError("the supernet has not run a stochastic forward yet: no active paths")
        return self.predict_indices([m.active for m in mixed])


# ------------------------------------------------------------------ losses and rewards
def latency_loss(ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float, kind: str = "add",
                 lam: float = 0.1, beta: float = 0.6) -> torch.Tensor:
    """add: CE + lam * (E[LAT] - T) / T;  mul: CE * (E[LAT] / T) ** beta.
    (The official code's mul variant is CE * (log E[LAT] / log T) ** beta; the issue asks for the ratio
    of latencies, which does not depend on the unit of time.)"""
    if not target_ms > 0:
        raise LatencyError(f"--target-latency must be > 0 ms, got {target_ms}")
    if kind == "add":
        return ce + lam * (expected_ms - target_ms) / target_ms
    if kind == "mul":
        return ce * (expected_ms / target_ms) ** beta
    raise LatencyError(f"unknown latency loss {kind!r}; choose add or mul")


def reinforce_reward(acc: float, latency_ms: float, target_ms: float, w: float) -> float:
    """Proxyless-R / MnasNet reward: acc * (LAT / T) ** w, w <= 0 (slower than T costs reward)."""
    if w > 0:
        raise LatencyError(f"the latency exponent w must be <= 0, got {w}")
    if not target_ms > 0 or not latency_ms > 0:
        raise LatencyError(f"latency and target must be > 0 ms, got {latency_ms} and {target_ms}")
    return float(acc) * (float(latency_ms) / float(target_ms)) ** w


# ------------------------------------------------------------------ command line
def get_args_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(description="Latency tables for hardware-aware search.", formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, help="build: measure a table; predict: latency of a genotype")
    b = sub.add_parser("build", formatter_class=fmt,
                       help="profile every entry a space needs on this device and write the table")
    b.add_argument("--device", choices=BACKENDS, default="cpu",
                   help="cpu: torch eager; cuda: CUDA events; onnxruntime: CPU InferenceSession per entry")
    b.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for cpu/onnxruntime (unset: torch's current count)")
    b.add_argument("--B", type=int, default=18, help="blocks per stage")
    b.add_argument("--F", type=int, default=400, help="final width")
    b.add_argument("--candidates", nargs="+", default=list(PRIMITIVES), help="candidate op names")
    b.add_argument("--batch", type=int, default=1, help="batch size the latencies are measured at")
    b.add_argument("--warmup", type=int, default=10, help="untimed calls before timing each entry")
    b.add_argument("--repeats", type=int, default=30, help="timed runs per entry (median and IQR kept)")
    b.add_argument("--min-run-ms", type=float, default=0.0,
                   help="a timed run repeats the call until it lasts this long (0: one call per run, as in a network)")
    b.add_argument("--out", default="latency_table.json", help="output JSON file")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    q = sub.add_parser("predict", formatter_class=fmt, help="predicted latency of a derived network")
    q.add_argument("--table", required=True, help="latency table JSON")
    q.add_argument("--genotype", required=True, help="genotype name (e.g. proxyless_cifar) or JSON file")
    q.add_argument("--stat", default="median_ms", choices=["median_ms", "min_ms", "cpu_median_ms"],
                   help="which statistic of the entries to add up (cpu_median_ms: process CPU time, one thread)")
    return p


def main(args: argparse.Namespace) -> float | LatencyTable:
    if args.command == "build":
        table = build_table(args.B, args.F, args.candidates, args.batch, args.device, args.threads,
                            args.warmup, args.repeats, args.min_run_ms, progress=not args.no_progress)
        table.save(args.out)
        print(f"wrote {args.out}: {len(table.entries)} entries, {args.device} ({table.meta['device_name']}), "
              f"batch {args.batch}, threads {table.meta['threads']}")
        return table
    import genotypes

    table = LatencyTable.load(args.table)
    g = genotypes.get(args.genotype)
    ms = predict_genotype(table, g, stat=args.stat)
    print(f"predicted latency {ms:.3f} ms (B={g.B} F={g.F}, batch {table.meta.get('batch_size')}, "
          f"{table.meta.get('backend')} {table.meta.get('device_name')})")
    return ms


if __name__ == "__main__":
    run_cli(main, get_args_parser())
