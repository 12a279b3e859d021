"""Latency lookup tables: the keys a space needs, the table file (JSON), and the prediction of a genotype.

How a network's latency is modelled (and why), for any space (models/search_space.py: latency_parts,
latency_edges, edge_key):
* A *fixed part* entry is the time of one whole part of the network with every searchable edge inside it
  running the space's baseline op (identity): for the tree space each residual tree block (shortcut,
  bottlenecks, root edge, split, every copy/add sum, the branch BNs and residual adds, final BN), the stem
  and the head; for NAS-Bench-201 a cell per stage (its node sums), the residual blocks between stages,
  stem and head.  Adding up pieces timed one by one misses the sums, the split and the module calls:
  ~30 % of a tree block's fixed time at batch 1 on CPU, ~11 % at batch 32 (B=3, F=160, one thread).
* An *edge* entry is one candidate op at one shape, timed in isolation.  An edge's cost is
  ``edge(op) - edge(baseline)`` at its shape: the baseline that the fixed part already counted is
  taken out again, and with it the cost of the timer.
  latency(genotype) = sum of fixed parts + sum over edges [edge(op) - edge(baseline)].
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

from models.search_space import SearchSpace
from models.space import IMAGE_SIZE, NUM_CLASSES
from models.spaces import get_space, space_of
from models.tree_space import block_key, edge_key, head_key, stem_key  # noqa: F401  (the tree space's keys)
from utils.checkpoint import atomic_write_text
from utils.errors import UserError

TABLE_FORMAT = "proxylessnas-latency-table/1"
SPREAD = "iqr"  # what "spread_ms" holds: 75th minus 25th percentile of the timed runs
SESSION_OVERHEAD_KEY = "overhead:session"


class LatencyError(UserError):
    """A table that cannot be read or does not cover the space asked for, or bad profiling settings."""


def edge_shapes(space: SearchSpace, macro: dict, image_size: int) -> list[tuple[int, int]]:
    """The distinct (channels, size) of the network's searchable edges, in network order."""
    return list(dict.fromkeys((e.channels, e.size) for e in space.latency_edges(macro, image_size)))


def required_keys(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
                  num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> list[str]:
    """Every key that the space's network of ``macro`` size needs for ``candidates`` (None: all), in network
    order, without repeats.  The baseline op is always needed: edge costs are relative to it."""
    macro = space.macro(macro)  # a bad size raises models.space.SpaceError
    ops = list(space.check_candidates(space.primitives if candidates is None else candidates))
    if space.baseline_op not in ops:
        ops.append(space.baseline_op)
    keys = [part.key for part in space.latency_parts(macro, num_classes, image_size)]
    keys += [space.edge_key(op, c, size) for c, size in edge_shapes(space, macro, image_size) for op in ops]
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

    @property
    def space(self) -> SearchSpace:
        return get_space(self.meta.get("space", "tree"))  # tables from before spaces: the tree space's

    @property
    def macro(self) -> dict:
        m = self.meta
        return dict(m["macro"]) if isinstance(m.get("macro"), dict) else {"B": m.get("B"), "F": m.get("F")}

    def describe(self) -> str:
        m = self.meta
        return (f"the table was built for the {self.space.name} space, {self.space.describe_macro(self.macro)} "
                f"batch={m.get('batch_size')} "
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

    def check(self, space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
              batch_size: int | None = None, num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> None:
        """Raise LatencyError naming the first entry that the space needs and the table lacks, or
        when the table was measured at another batch size."""
        if batch_size is not None and self.meta.get("batch_size") != batch_size:
            raise LatencyError(f"latency table was measured at batch size {self.meta.get('batch_size')}, "
                               f"not {batch_size}; {self.describe()}")
        for key in required_keys(space, macro, candidates, num_classes, image_size):
            if key not in self.entries:
                raise LatencyError(f"latency table lacks entry {key!r} needed for the {space.name} space, "
                                   f"{space.describe_macro(space.macro(macro))} image size {image_size} "
                                   f"classes={num_classes} candidates={','.join(candidates or space.primitives)}; "
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
def fixed_ms(table: LatencyTable, space: SearchSpace, macro: dict, num_classes: int | None = None,
             stat: str = "median_ms", image_size: int | None = None) -> float:
    """Every fixed part (each time the network runs it), less the extra session calls on onnxruntime."""
    image_size, num_classes = image_size or table.image_size, num_classes or table.num_classes
    keys = [p.key for p in space.latency_parts(space.macro(macro), num_classes, image_size)]
    total = sum(table.ms(k, stat) for k in keys)
    if SESSION_OVERHEAD_KEY in table.entries:
        total -= (len(keys) - 1) * table.ms(SESSION_OVERHEAD_KEY, stat)
    return total


def edge_costs(table: LatencyTable, space: SearchSpace, macro: dict, candidates: Sequence[str],
               stat: str = "median_ms", image_size: int | None = None) -> torch.Tensor:
    """(decisions, N) ms: the cost of each candidate for each decision, relative to the baseline op, summed
    over the edges that read the decision (NAS-Bench-201: the decision's edge in all 3N cells)."""
    macro = space.macro(macro)
    edges = space.latency_edges(macro, image_size or table.image_size)
    costs = torch.zeros(len(space.decision_names(macro)), len(candidates), dtype=torch.float64)
    for e in edges:
        base = table.ms(space.edge_key(space.baseline_op, e.channels, e.size), stat)
        costs[e.decision] += torch.tensor([table.ms(space.edge_key(op, e.channels, e.size), stat) - base
                                           for op in candidates], dtype=torch.float64)
    return costs


def genotype_macro(table: LatencyTable, genotype, macro: dict | None = None) -> tuple[SearchSpace, dict]:
    """The space of ``genotype`` and the network size to predict: the genotype's own (tree: B, F), else
    ``macro``, else the table's (NAS-Bench-201: the C, N the table was built for)."""
    space = space_of(genotype)
    base = table.macro if table.space is space else {}
    return space, space.macro({**base, **(macro or {}), **space.genotype_macro(genotype)})


def predict_genotype(table: LatencyTable, genotype, num_classes: int | None = None, stat: str = "median_ms",
                     image_size: int | None = None, macro: dict | None = None) -> float:
    """Predicted forward latency (ms) of the derived network of ``genotype`` at the table's batch size
    (and, unless given, the image size, classes and network size the table was built for)."""
    space, macro = genotype_macro(table, genotype, macro)
    ops = space.ops_of(genotype)
    total = fixed_ms(table, space, macro, num_classes, stat, image_size)
    for e in space.latency_edges(macro, image_size or table.image_size):
        total += (table.ms(space.edge_key(ops[e.decision], e.channels, e.size), stat)
                  - table.ms(space.edge_key(space.baseline_op, e.channels, e.size), stat))
    return total
