"""Latency lookup tables: the keys a space needs, the table file (JSON), and the prediction of a genotype.

How a network's latency is modelled (and why), for any space (models/search_space.py: network_key,
latency_contexts, latency_edges, edge_key):
* The *network* entry is the whole network with the space's baseline op (identity / skip) on every
  searchable edge, timed as one call -- one forward in torch, one ``session.run`` of one exported graph
  on onnxruntime.  Adding up parts timed one by one (stem, blocks, head) instead missed what joins them:
  on onnxruntime every part paid its own session call and lost the whole graph's memory plan (the sum of
  the parts was 27 % over the network at B=2 F=96, batch 1); in torch +1.6 % at B=3 F=160.
* An *edge* entry is the extra time of one op over the baseline on one edge of a shape, measured in
  context: a part of the network (a tree block, a NAS-Bench-201 cell) with the op on one edge of each
  group of edges that read the same tensor and the baseline elsewhere, less the part with the baseline
  everywhere, divided by the number of those edges (the raw timings are the table's ``context:`` entries).
  Timed alone, as a graph of its own, an op missed the fusions and layout changes of the graph around it:
  networks of one op were predicted 25-124 % high on onnxruntime.  One edge per group, because onnxruntime
  computes an identical parameter-free op on one tensor once (common subexpressions).
* Calibration: ops timed one context at a time add up to 4-6 % less than networks that mix them, on
  both backends (neighbouring ops change memory layouts and caches).  ``calibration`` random whole
  networks are timed, measured = a + s * prediction is fitted on them, and a, s are folded into the
  fixed cost and the edges (``calibrate``).
  latency(genotype) = fixed + sum over edges [edge(op) - edge(baseline)], the baseline's edge being 0.

Tables are measured by utils/latency.py (``python -m utils.latency build``); the search's
differentiable expected latency is in utils/objective.py.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models.search_space import SearchSpace
from models.space import IMAGE_SIZE, NUM_CLASSES
from models.spaces import get_space, space_of
from models.tree_space import edge_key  # noqa: F401  (the tree space's edge keys, for callers)
from utils.checkpoint import atomic_write_text
from utils.errors import UserError

TABLE_FORMAT = "proxylessnas-latency-table/2"  # /1: parts and ops timed alone (stem + blocks + head + edges)
SPREAD = "iqr"  # what "spread_ms" holds: 75th minus 25th percentile of the timed runs
STATS = ("median_ms", "min_ms", "cpu_median_ms")  # the statistics a prediction can add up


class LatencyError(UserError):
    """A table that cannot be read or does not cover the space asked for, or bad profiling settings."""


def edge_shapes(space: SearchSpace, macro: dict, image_size: int) -> list[tuple[int, int]]:
    """The distinct (channels, size) of the network's searchable edges, in network order."""
    return list(dict.fromkeys((e.channels, e.size) for e in space.latency_edges(macro, image_size)))


def with_baseline(space: SearchSpace, candidates: Sequence[str] | None) -> list[str]:
    """The candidates (None: all the space's ops), checked, and the baseline op: edge costs are relative to it."""
    ops = list(space.check_candidates(space.primitives if candidates is None else candidates))
    return ops if space.baseline_op in ops else ops + [space.baseline_op]


def context_key(op: str, context: str) -> str:
    """The key of the timing of the part ``context`` with ``op`` on its timed edges (the baseline elsewhere)."""
    return f"context:{op}:{context}"


def timed_edges(space: SearchSpace) -> tuple[int, ...]:
    """The edges of a cell / block that carry the op being timed: the first of each input group (two
    edges that read one tensor compute an identical parameter-free op once in onnxruntime)."""
    return tuple(g[0] for g in space.input_groups)


def context_ops(space: SearchSpace, op: str) -> list[str]:
    """One op per edge of a cell / block: ``op`` on the timed edges, the baseline elsewhere."""
    timed = set(timed_edges(space))
    return [op if e in timed else space.baseline_op for e in range(sum(len(g) for g in space.input_groups))]


def fixed_key(space: SearchSpace, macro: dict, num_classes: int, image_size: int) -> str:
    """The key of the fixed cost a prediction starts from (the calibrated network)."""
    return "fixed:" + space.network_key(macro, num_classes, image_size).split(":", 1)[1]


def calibration_key(k: int) -> str:
    return f"calibration:{k}"


def random_architectures(space: SearchSpace, macro: dict, n: int, concentration: float, seed: int,
                         ops: Sequence[str] | None = None) -> list:
    """``n`` genotypes whose op mixtures range from one op nearly everywhere to even mixes: each draws its
    own mixture over ``ops`` (default: the space's) from a Dirichlet(``concentration``), then an op per
    decision from it.  Uniform draws would give only even mixes, and nearly equal latencies."""
    ops = list(space.primitives if ops is None else ops)
    rng = np.random.default_rng(seed)
    decisions, out = len(space.decision_names(macro)), []
    for _ in range(n):
        mix = rng.dirichlet([concentration] * len(ops))
        out.append(space.genotype_from_ops([ops[i] for i in rng.choice(len(ops), size=decisions, p=mix)], macro))
    return out


# A table's calibration networks: Dirichlet(0.3) mixtures, as bench/latency_predictor.py draws its test
# networks, from seeds the bench does not use (it draws from --seed, 0 by default).
CALIBRATION_CONCENTRATION, CALIBRATION_SEED = 0.3, 1_000_003


def calibration_architectures(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, n: int) -> list:
    return random_architectures(space, space.macro(macro), n, CALIBRATION_CONCENTRATION, CALIBRATION_SEED,
                                with_baseline(space, candidates))


def required_keys(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
                  num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> list[str]:
    """The keys a prediction reads for ``candidates`` (None: all): the fixed cost, then every edge entry
    (the baseline's included), in network order, without repeats."""
    macro = space.macro(macro)  # a bad size raises models.space.SpaceError
    ops = with_baseline(space, candidates)
    keys = [fixed_key(space, macro, num_classes, image_size)]
    keys += [space.edge_key(op, c, size) for c, size in edge_shapes(space, macro, image_size) for op in ops]
    return list(dict.fromkeys(keys))


def timed_keys(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
               num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE, calibration: int = 0) -> list[str]:
    """The keys a table build times: the baseline network, each context with the baseline and with every
    candidate, then the calibration networks."""
    macro = space.macro(macro)
    ops = with_baseline(space, candidates)
    keys = [space.network_key(macro, num_classes, image_size)]
    for ctx in space.latency_contexts(macro, image_size):
        keys += [context_key(op, ctx.key) for op in [space.baseline_op] + ops]
    keys += [calibration_key(k) for k in range(calibration)]
    return list(dict.fromkeys(keys))


def edge_entries(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, timed: dict[str, dict],
                 image_size: int = IMAGE_SIZE) -> dict[str, dict]:
    """The edge entries from the context timings: (part with op on its timed edges - the part with the
    baseline there) / timed edges, for every statistic; the spread is the two spreads' sum / timed edges
    (an upper bound).  The baseline's entry is 0."""
    out = {}
    ops, n = with_baseline(space, candidates), len(timed_edges(space))
    for ctx in space.latency_contexts(space.macro(macro), image_size):
        base = timed[context_key(space.baseline_op, ctx.key)]
        for op in ops:
            got = timed[context_key(op, ctx.key)]
            e = {"from": [context_key(op, ctx.key), context_key(space.baseline_op, ctx.key)], "edges": n,
                 "runs": got["runs"]}
            for stat in (s for s in STATS if s in got and s in base):
                e[stat] = 0.0 if op == space.baseline_op else (got[stat] - base[stat]) / n
            for sp in (s for s in ("spread_ms", "cpu_spread_ms") if s in got and s in base):
                e[sp] = 0.0 if op == space.baseline_op else (got[sp] + base[sp]) / n
            out[space.edge_key(op, ctx.channels, ctx.size)] = e
    return out


def calibrate(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, timed: dict[str, dict],
              edges: dict[str, dict], calibration: int, num_classes: int, image_size: int) -> tuple[dict, dict]:
    """The fixed cost and the edges' scale, fitted on the calibration networks: measured = a + s * (the
    baseline network + their edges' costs), least squares per statistic; fixed = a + s * baseline network,
    and every edge entry is multiplied by s, so a prediction stays a sum over edges.  Why: ops timed one
    context at a time add up to 4-6 % less than networks that mix them (memory layouts and caches change
    between neighbouring ops; at batch 32 in torch an op in a whole network also runs ~6 % slower than in
    a block timed alone).  Fewer than 3 calibration networks: the mean residual only (s = 1); none: the
    baseline network.  Returns (the fixed entry, the edge entries scaled)."""
    macro = space.macro(macro)
    net_key = space.network_key(macro, num_classes, image_size)
    base = timed[net_key]
    archs = calibration_architectures(space, macro, candidates, calibration)
    fixed = {"from": [net_key] + [calibration_key(k) for k in range(calibration)], "runs": base["runs"]}
    scale = {}
    network_edges = space.latency_edges(macro, image_size)
    arch_keys = [[space.edge_key(ops[x.decision], x.channels, x.size) for x in network_edges]
                 for ops in map(space.ops_of, archs)]  # each calibration network's edge entries, once for all stats
    for stat in (s for s in STATS if s in base and all(s in timed[calibration_key(k)] for k in range(calibration))):
        pred = np.array([base[stat] + sum(edges[key][stat] for key in keys) for keys in arch_keys])
        meas = np.array([timed[calibration_key(k)][stat] for k in range(calibration)])
        a, s = float((meas - pred).mean()) if calibration else 0.0, 1.0
        if calibration >= 3 and pred.std() > 0:
            s, a = (float(v) for v in np.polyfit(pred, meas, 1))
        fixed[stat], scale[stat] = a + s * base[stat], s
        if stat == "median_ms":
            fixed["scale"], fixed["calibration_residuals_ms"] = s, (meas - (a + s * pred)).tolist()
    scaled = {k: {**e, **{st: e[st] * scale[st] for st in scale if st in e}} for k, e in edges.items()}
    return fixed, scaled


# ------------------------------------------------------------------ the table
@dataclass
class LatencyTable:
    """entries: key -> {"median_ms", "spread_ms" (IQR), "min_ms", "runs", "inner"} of the wall-clock
    time per call (+ "cpu_median_ms", "cpu_spread_ms" on cpu/onnxruntime); edge entries are differences
    of two context entries ("from") and can be negative; meta: where and how."""

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
        if isinstance(d, dict) and d.get("format") == "proxylessnas-latency-table/1":
            raise LatencyError(f"{where} was built by an older version of this project (format /1: parts and ops "
                               f"timed one by one, up to 35 % off on onnxruntime); build it again with "
                               f"`python -m utils.latency build` and the same flags")
        if not isinstance(d, dict) or d.get("format") != TABLE_FORMAT:
            raise LatencyError(f"{where} is not a latency table (expected a JSON object with "
                               f"\"format\": \"{TABLE_FORMAT}\", \"meta\" and \"entries\")")
        meta, entries = d.get("meta"), d.get("entries")
        if not isinstance(meta, dict) or not isinstance(entries, dict):
            raise LatencyError(f"{where}: \"meta\" and \"entries\" must be JSON objects")
        for key, e in entries.items():
            ok = (isinstance(e, dict) and isinstance(e.get("median_ms"), (int, float))
                  and not isinstance(e["median_ms"], bool) and math.isfinite(e["median_ms"]))
            if not ok:
                raise LatencyError(f"{where}: entry {key!r} needs a number \"median_ms\", got {e!r}")
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
    """The fixed cost: the whole network with the baseline op on every edge, calibrated (calibrate)."""
    image_size, num_classes = image_size or table.image_size, num_classes or table.num_classes
    return table.ms(fixed_key(space, space.macro(macro), num_classes, image_size), stat)


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
