"""Latency lookup tables: the keys of a space, the table file (JSON), and the prediction of a genotype.

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

Tables are measured by utils/latency.py (``python -m utils.latency build``); the search's
differentiable expected latency is in utils/objective.py.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from models.operations import check_candidates
from models.space import EDGES_PER_CELL, IMAGE_SIZE, NUM_CLASSES, PRIMITIVES, STEM_CHANNELS, BlockSpec, block_plan
from utils.checkpoint import atomic_write_text
from utils.errors import UserError

TABLE_FORMAT = "proxylessnas-latency-table/1"
SPREAD = "iqr"  # what "spread_ms" holds: 75th minus 25th percentile of the timed runs
BASELINE_OP = "identity"  # edge costs are relative to it (the block entries run identity edges)


class LatencyError(UserError):
    """A table that cannot be read or does not cover the space asked for, or bad profiling settings."""


# ------------------------------------------------------------------ keys
# Keys name everything that decides an entry's time; the batch size is the table's (meta).
def edge_key(op: str, channels: int, size: int, stride: int = 1) -> str:
    return f"edge:{op}:c{channels}:{size}x{size}:s{stride}"


def block_key(spec: BlockSpec) -> str:
    return (f"block:c{spec.in_channels}-{spec.width}-{spec.out_channels}:"
            f"{spec.in_size}x{spec.in_size}:s{spec.stride}")


def stem_key(image_size: int = IMAGE_SIZE) -> str:
    return f"stem:c3-{STEM_CHANNELS}:{image_size}x{image_size}"


def head_key(F: int, size: int, num_classes: int) -> str:
    return f"head:c{F}:{size}x{size}:n{num_classes}"


SESSION_OVERHEAD_KEY = "overhead:session"


def required_keys(B: int, F: int, candidates: Sequence[str] = PRIMITIVES, num_classes: int = NUM_CLASSES,
                  image_size: int = IMAGE_SIZE) -> list[str]:
    """Every key that the space (B, F, candidates) needs for images of ``image_size`` and ``num_classes``
    classes, in network order, without repeats.  The identity edge is always needed: it is the
    baseline of the edge costs."""
    plan = block_plan(B, F, image_size)  # a bad B/F or size raises models.space.SpaceError
    ops = list(check_candidates(candidates))
    if BASELINE_OP not in ops:
        ops.append(BASELINE_OP)
    keys = [stem_key(image_size)]
    for spec in plan:
        keys.append(block_key(spec))
        keys.extend(edge_key(op, spec.width, spec.out_size) for op in ops)
    keys.append(head_key(F, plan[-1].out_size, num_classes))
    return list(dict.fromkeys(keys))


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
                f"image size {self.image_size} classes={self.num_classes} "
                f"candidates={','.join(m.get('candidates', []))} on {m.get('backend')} "
                f"({m.get('device_name')}); build one for this configuration with "
                f"`python -m utils.latency build`")

    @property
    def image_size(self) -> int:
        return int(self.meta.get("image_size", IMAGE_SIZE))  # tables from before image sizes: CIFAR's

    @property
    def num_classes(self) -> int:
        return int(self.meta.get("num_classes", NUM_CLASSES))

    def check(self, B: int, F: int, candidates: Sequence[str] = PRIMITIVES, batch_size: int | None = None,
              num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> None:
        """Raise LatencyError naming the first entry that the space needs and the table lacks, or
        when the table was measured at another batch size."""
        if batch_size is not None and self.meta.get("batch_size") != batch_size:
            raise LatencyError(f"latency table was measured at batch size {self.meta.get('batch_size')}, "
                               f"not {batch_size}; {self.describe()}")
        for key in required_keys(B, F, candidates, num_classes, image_size):
            if key not in self.entries:
                raise LatencyError(f"latency table lacks entry {key!r} needed for B={B} F={F} image size "
                                   f"{image_size} classes={num_classes} candidates={','.join(candidates)}; "
                                   f"{self.describe()}")

    def to_dict(self) -> dict:
        return {"format": TABLE_FORMAT, "meta": self.meta, "entries": self.entries}

    def save(self, path: str | os.PathLike) -> None:
        """Written to a temporary file and renamed: an interrupted save keeps the old table."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

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


# ------------------------------------------------------------------ prediction
# stat: which statistic of the entries to add up: "median_ms" (wall clock, default: a dedicated
# device), "cpu_median_ms" (process CPU time: a table measured with one thread on a shared machine),
# or "min_ms".
# num_classes / image_size None: those the table was built for.
def fixed_ms(table: LatencyTable, B: int, F: int, num_classes: int | None = None, stat: str = "median_ms",
             image_size: int | None = None) -> float:
    """stem + head + every block with identity edges (less the extra session calls on onnxruntime)."""
    image_size, num_classes = image_size or table.image_size, num_classes or table.num_classes
    plan = block_plan(B, F, image_size)
    keys = [stem_key(image_size), head_key(F, plan[-1].out_size, num_classes)] + [block_key(s) for s in plan]
    total = sum(table.ms(k, stat) for k in keys)
    if SESSION_OVERHEAD_KEY in table.entries:
        total -= (len(keys) - 1) * table.ms(SESSION_OVERHEAD_KEY, stat)
    return total


def edge_costs(table: LatencyTable, B: int, F: int, candidates: Sequence[str], stat: str = "median_ms",
               image_size: int | None = None) -> torch.Tensor:
    """(3B*12, N) ms: cost of each candidate on each edge, relative to identity (identity = 0)."""
    rows = []
    for spec in block_plan(B, F, image_size or table.image_size):
        base = table.ms(edge_key(BASELINE_OP, spec.width, spec.out_size), stat)
        row = [table.ms(edge_key(op, spec.width, spec.out_size), stat) - base for op in candidates]
        rows.extend([row] * EDGES_PER_CELL)
    return torch.tensor(rows, dtype=torch.float64)


def predict_genotype(table: LatencyTable, genotype, num_classes: int | None = None, stat: str = "median_ms",
                     image_size: int | None = None) -> float:
    """Predicted forward latency (ms) of the derived network of ``genotype`` at the table's batch size
    (and, unless given, the image size and classes the table was built for)."""
    total = fixed_ms(table, genotype.B, genotype.F, num_classes, stat, image_size)
    for spec, ops in zip(block_plan(genotype.B, genotype.F, image_size or table.image_size), genotype.ops):
        base = table.ms(edge_key(BASELINE_OP, spec.width, spec.out_size), stat)
        total += sum(table.ms(edge_key(op, spec.width, spec.out_size), stat) - base for op in ops)
    return total
