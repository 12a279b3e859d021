"""Latency lookup tables: the keys a space needs, the table file (JSON), and the prediction of a genotype.

How a network's latency is modelled (and why), for any space (models/search_space.py: network_key,
latency_contexts, latency_groups, group_key):
* The *network* entry is the whole network with the space's baseline op (identity / skip) on every
  searchable edge, timed as one call -- one forward in torch, one ``session.run`` of one exported graph
  on onnxruntime.  Adding up parts timed one by one (stem, blocks, head) instead missed what joins them:
  on onnxruntime every part paid its own session call and lost the whole graph's memory plan (the sum of
  the parts was 27 % over the network at B=2 F=96, batch 1); in torch +1.6 % at B=3 F=160.
* A *group* entry is the extra time over the baseline of an assignment of ops to an input group -- the
  edges of a cell / block that read one tensor (``SearchSpace.input_groups``; a tree block has 6 groups of
  2 edges, a NAS-Bench-201 cell groups of 3, 2 and 1) -- on edges of one shape, measured in context: a part
  of the network (a tree block, a NAS-Bench-201 cell) with the assignment on every group of its size and
  the baseline elsewhere, less the part with the baseline everywhere, divided by those groups (the raw
  timings are the table's ``context:`` entries).  Ops that read one tensor do not cost the sum of their
  costs alone: torch at batch 32 ran two max-pools of one tensor 15 % below twice one, two convolutions
  up to 10 % below (caches); onnxruntime computes an identical parameter-free op of one tensor once and
  shares the ReLU that starts sibling convolutions.  One cost per op and edge (format /2, the op on one
  edge per group) left the torch table at 2.6 % / 3.0 % MAPE at batch 1 / 32 where one per assignment
  gave 1.9 % / 2.0 % (B=3 F=160, 20 networks, one run timing both).  Timed alone, as a graph of its own,
  an op missed the fusions and layout changes of the graph around it: networks of one op were predicted
  25-124 % high on onnxruntime (format /1).
* Calibration: ops timed one context at a time add up to less than networks that mix them (neighbouring
  blocks change memory layouts and caches).  ``calibration`` random whole networks are timed, measured =
  a + s * prediction is fitted on them, and a, s are folded into the fixed cost and the groups
  (``calibrate``).
  latency(genotype) = fixed + sum over input groups [group(its ops) - group(baselines)], the baselines'
  group being 0.  The search reads the same sums (``GroupCosts``): its expected latency contracts each
  group's costs with its decisions' distributions, and ``--derive within-target`` picks an assignment per
  group in a knapsack.

Tables are measured by utils/latency.py (``python -m utils.latency build``); the search's
differentiable expected latency is in utils/objective.py.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models.search_space import IMAGE_SIZE, NUM_CLASSES, EdgeShape, SearchSpace
from models.spaces import get_space, space_of
from utils.checkpoint import atomic_write_text
from utils.errors import UserError

TABLE_FORMAT = "proxylessnas-latency-table/3"
OLD_FORMATS = {  # what older tables held, for the error that asks to build them again
    "proxylessnas-latency-table/1": "parts and ops timed one by one, up to 35 % off on onnxruntime",
    "proxylessnas-latency-table/2": "one cost per op and edge, blind to ops that read one tensor together",
}
SPREAD = "iqr"  # what "spread_ms" holds: 75th minus 25th percentile of the timed runs
STATS = ("median_ms", "min_ms", "cpu_median_ms")  # the statistics a prediction can add up


class LatencyError(UserError):
    """A table that cannot be read or does not cover the space asked for, or bad profiling settings."""


def group_shapes(space: SearchSpace, macro: dict, image_size: int) -> list[tuple[int, EdgeShape]]:
    """The distinct (group size, edge shape) of the network's input groups, in network order."""
    return list(dict.fromkeys((len(g.decisions), g.shape) for g in space.latency_groups(macro, image_size)))


def with_baseline(space: SearchSpace, candidates: Sequence[str] | None, shape: EdgeShape | None = None) -> list[str]:
    """The candidates (None: all the space's ops), checked, and the baseline op: costs are relative to it.
    With ``shape``: those the space allows on edges of that shape, and that shape's baseline."""
    ops = list(space.check_candidates(space.primitives if candidates is None else candidates))
    if shape is None:
        return ops if space.baseline_op in ops else ops + [space.baseline_op]
    base = space.baseline_for(shape)
    ops = [op for op in ops if space.allows(op, shape)]
    return ops if base in ops else ops + [base]


def group_sizes(space: SearchSpace) -> list[int]:
    """The sizes of the space's input groups (tree: [2]; NAS-Bench-201: [3, 2, 1])."""
    return list(dict.fromkeys(len(g) for g in space.input_groups))


def configs(space: SearchSpace, candidates: Sequence[str] | None, k: int, shape: EdgeShape) -> list[tuple[str, ...]]:
    """Every assignment of ops (the candidates the space allows on ``shape`` and its baseline) to the k edges of a
    group, the baseline's first."""
    ops = with_baseline(space, candidates, shape)
    base = (space.baseline_for(shape),) * k
    return [base] + [c for c in itertools.product(ops, repeat=k) if c != base]


def context_key(space: SearchSpace, config: Sequence[str], context: str, shape: EdgeShape) -> str:
    """The key of the timing of the part ``context`` with ``config`` on every input group of its size and the
    baseline elsewhere (the baseline everywhere: one key, whatever the size)."""
    config, base = tuple(config), space.baseline_for(shape)
    if all(op == base for op in config):
        return f"context:{base}:{context}"
    return f"context:{'+'.join(config)}:{context}"


def context_ops(space: SearchSpace, config: Sequence[str], shape: EdgeShape) -> list[str]:
    """One op per edge of a cell / block: ``config`` on every input group of its size, the baseline elsewhere."""
    out = [space.baseline_for(shape)] * sum(len(g) for g in space.input_groups)
    for g in space.input_groups:
        if len(g) == len(config):
            for e, op in zip(g, config):
                out[e] = op
    return out


def groups_of_size(space: SearchSpace, k: int) -> int:
    return sum(len(g) == k for g in space.input_groups)


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
    allowed = space.allowed(macro, ops)
    restricted = any(len(a) < len(ops) for a in allowed)
    for _ in range(n):
        mix = rng.dirichlet([concentration] * len(ops))
        if not restricted:
            picks = rng.choice(len(ops), size=decisions, p=mix)
        else:  # each decision draws from the mixture over the ops the space allows there
            picks = [a[rng.choice(len(a), p=mix[list(a)] / mix[list(a)].sum())] for a in allowed]
        out.append(space.genotype_from_ops([ops[i] for i in picks], macro))
    return out


# A table's calibration networks: Dirichlet(0.3) mixtures, as bench/latency_predictor.py draws its test
# networks, from seeds the bench does not use (it draws from --seed, 0 by default).
CALIBRATION_CONCENTRATION, CALIBRATION_SEED = 0.3, 1_000_003


def calibration_architectures(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, n: int) -> list:
    return random_architectures(space, space.macro(macro), n, CALIBRATION_CONCENTRATION, CALIBRATION_SEED,
                                with_baseline(space, candidates))


def required_keys(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
                  num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> list[str]:
    """The keys a prediction reads for ``candidates`` (None: all): the fixed cost, then every group entry
    (the baseline's included), in network order, without repeats."""
    macro = space.macro(macro)  # a bad size raises models.common.SpaceError
    keys = [fixed_key(space, macro, num_classes, image_size)]
    keys += [space.group_key(c, shape) for k, shape in group_shapes(space, macro, image_size)
             for c in configs(space, candidates, k, shape)]
    return list(dict.fromkeys(keys))


def timed_keys(space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
               num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE, calibration: int = 0) -> list[str]:
    """The keys a table build times: the baseline network, each context with the baseline and with every
    assignment of ops to the groups of each size, then the calibration networks."""
    macro = space.macro(macro)
    keys = [space.network_key(macro, num_classes, image_size)]
    for ctx in space.latency_contexts(macro, image_size):
        keys += [context_key(space, c, ctx.key, ctx.shape) for k in group_sizes(space)
                 for c in configs(space, candidates, k, ctx.shape)]
    keys += [calibration_key(k) for k in range(calibration)]
    return list(dict.fromkeys(keys))


def group_entries(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, timed: dict[str, dict],
                  image_size: int = IMAGE_SIZE) -> dict[str, dict]:
    """The group entries from the context timings: (part with the ops on every group of their size - the
    part with the baseline there) / those groups, for every statistic; the spread is the two spreads' sum /
    those groups (an upper bound).  The baseline's entry is 0."""
    out = {}
    for ctx in space.latency_contexts(space.macro(macro), image_size):
        base_key = context_key(space, (space.baseline_for(ctx.shape),), ctx.key, ctx.shape)
        base = timed[base_key]
        for k in group_sizes(space):
            n = groups_of_size(space, k)
            for i, c in enumerate(configs(space, candidates, k, ctx.shape)):
                got = timed[context_key(space, c, ctx.key, ctx.shape)]
                e = {"from": [context_key(space, c, ctx.key, ctx.shape), base_key], "groups": n, "runs": got["runs"]}
                for stat in (s for s in STATS if s in got and s in base):
                    e[stat] = 0.0 if i == 0 else (got[stat] - base[stat]) / n
                for sp in (s for s in ("spread_ms", "cpu_spread_ms") if s in got and s in base):
                    e[sp] = 0.0 if i == 0 else (got[sp] + base[sp]) / n
                out[space.group_key(c, ctx.shape)] = e
    return out


def network_group_keys(space: SearchSpace, macro: dict, genotype, image_size: int) -> list[str]:
    """The group entries a genotype's network adds up, one per input group of every cell / block."""
    ops = space.ops_of(genotype)
    return [space.group_key(tuple(ops[d] for d in g.decisions), g.shape) for g in space.latency_groups(macro, image_size)]


def calibrate(space: SearchSpace, macro: dict, candidates: Sequence[str] | None, timed: dict[str, dict],
              groups: dict[str, dict], calibration: int, num_classes: int, image_size: int) -> tuple[dict, dict]:
    """The fixed cost and the groups' scale, fitted on the calibration networks: measured = a + s * (the
    baseline network + their groups' costs), least squares per statistic; fixed = a + s * baseline network,
    and every group entry is multiplied by s, so a prediction stays a sum over groups.  Why: ops timed one
    context at a time add up to less than networks that mix them (memory layouts and caches change between
    neighbouring ops; at batch 32 in torch an op in a whole network also runs ~6 % slower than in a block
    timed alone).  Fewer than 3 calibration networks: the mean residual only (s = 1); none: the baseline
    network.  Returns (the fixed entry, the group entries scaled)."""
    macro = space.macro(macro)
    net_key = space.network_key(macro, num_classes, image_size)
    base = timed[net_key]
    archs = calibration_architectures(space, macro, candidates, calibration)
    fixed = {"from": [net_key] + [calibration_key(k) for k in range(calibration)], "runs": base["runs"]}
    scale = {}
    arch_keys = [network_group_keys(space, macro, g, image_size) for g in archs]  # once for all statistics
    for stat in (s for s in STATS if s in base and all(s in timed[calibration_key(k)] for k in range(calibration))):
        pred = np.array([base[stat] + sum(groups[key][stat] for key in keys) for keys in arch_keys])
        meas = np.array([timed[calibration_key(k)][stat] for k in range(calibration)])
        a, s = float((meas - pred).mean()) if calibration else 0.0, 1.0
        if calibration >= 3 and pred.std() > 0:
            s, a = (float(v) for v in np.polyfit(pred, meas, 1))
        fixed[stat], scale[stat] = a + s * base[stat], s
        if stat == "median_ms":
            fixed["scale"], fixed["calibration_residuals_ms"] = s, (meas - (a + s * pred)).tolist()
    scaled = {k: {**e, **{st: e[st] * scale[st] for st in scale if st in e}} for k, e in groups.items()}
    return fixed, scaled


# ------------------------------------------------------------------ the table
@dataclass
class LatencyTable:
    """entries: key -> {"median_ms", "spread_ms" (IQR), "min_ms", "runs", "inner"} of the wall-clock
    time per call (+ "cpu_median_ms", "cpu_spread_ms" on cpu/onnxruntime); group entries are differences
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
        if isinstance(m.get("macro"), dict):  # (JSON lists back to the tuples of per-stage sizes)
            return {k: tuple(v) if isinstance(v, list) else v for k, v in m["macro"].items()}
        return {"B": m.get("B"), "F": m.get("F")}

    def describe(self) -> str:
        m = self.meta
        size = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in self.macro.items())
        return (f"the table was built for the {m.get('space', 'tree')} space, {size} "
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
        if isinstance(d, dict) and d.get("format") in OLD_FORMATS:
            raise LatencyError(f"{where} was built by an older version of this project (format "
                               f"{d['format'].rsplit('/', 1)[1]}: {OLD_FORMATS[d['format']]}); build it again with "
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


class GroupCosts:
    """A table's costs for one network as the search reads them: ``fixed`` ms plus, for each distinct tuple of
    decisions that form an input group, the cost of every assignment of candidates to them (relative to the
    baseline's, summed over the cells / blocks whose group reads those decisions: NAS-Bench-201 shares its 6
    decisions among all 3N cells).  The tuples partition the decisions, so an architecture's latency is a sum
    of one entry per tuple and its expectation under independent decisions a sum of multilinear forms.

    Held by size k of the group: ``decisions[k]`` (G, k) long, ``costs[k]`` (G, N**k) float64, the flat index of
    an assignment (c_1..c_k) being sum_j c_j N**(k-j) (row-major).
    """

    def __init__(self, fixed: float, groups: dict[tuple[int, ...], torch.Tensor], num_decisions: int, n: int):
        self.fixed, self.n, self.num_decisions = float(fixed), n, num_decisions
        seen = [d for g in groups for d in g]
        assert sorted(seen) == list(range(num_decisions)), "the groups must partition the decisions"
        self.decisions: dict[int, torch.Tensor] = {}
        self.costs: dict[int, torch.Tensor] = {}
        for k in sorted({len(g) for g in groups}):
            tuples = [g for g in groups if len(g) == k]
            self.decisions[k] = torch.tensor(tuples, dtype=torch.long).reshape(len(tuples), k)
            self.costs[k] = torch.stack([groups[g].reshape(-1) for g in tuples]).double()
        self._on: dict[tuple, dict[int, torch.Tensor]] = {}

    def _costs_on(self, device, dtype) -> dict[int, torch.Tensor]:
        key = (str(device), dtype)
        if key not in self._on:
            # an option that is not allowed (+inf) has probability 0: it adds nothing (not inf * 0 = nan)
            self._on[key] = {k: torch.where(torch.isinf(c), 0.0, c).to(device=device, dtype=dtype)
                             for k, c in self.costs.items()}
        return self._on[key]

    def expected(self, p: torch.Tensor) -> torch.Tensor:
        """fixed + the expected cost when decision d takes candidate i with probability p[d, i], independently
        (differentiable in p): each group's cost contracted with its decisions' distributions, last edge first."""
        total = p.new_tensor(self.fixed)
        for k, costs in self._costs_on(p.device, p.dtype).items():
            dec = self.decisions[k].to(p.device)
            t = costs
            for j in reversed(range(k)):
                t = (t.reshape(t.shape[0], -1, self.n) * p[dec[:, j]][:, None, :]).sum(-1)
            total = total + t.sum()
        return total

    def flat(self, k: int, idx: torch.Tensor) -> torch.Tensor:
        """(M, G) flat assignment index of each size-k group in each of M architectures ((M, D) indices)."""
        dec = self.decisions[k]
        out = torch.zeros(idx.shape[0], dec.shape[0], dtype=torch.long)
        for j in range(k):
            out = out * self.n + idx[:, dec[:, j]]
        return out

    def predict(self, idx: torch.Tensor) -> torch.Tensor:
        """(M,) float64 ms of M architectures given as (M, D) candidate indices."""
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        if idx.dim() != 2 or idx.shape[1] != self.num_decisions:
            raise LatencyError(f"need one index per decision ({self.num_decisions}) per architecture, got shape "
                               f"{tuple(idx.shape)}")
        total = torch.full((idx.shape[0],), self.fixed, dtype=torch.float64)
        for k, costs in self.costs.items():
            total += costs.gather(1, self.flat(k, idx).T).sum(0)
        return total

    def cheapest(self) -> list[int]:
        """The indices of the fastest architecture."""
        out = [0] * self.num_decisions
        for k, costs in self.costs.items():
            for dec, best in zip(self.decisions[k].tolist(), costs.argmin(1).tolist()):
                for j, d in enumerate(dec):
                    out[d] = best // self.n ** (k - 1 - j) % self.n
        return out


def group_costs(table: LatencyTable, space: SearchSpace, macro: dict, candidates: Sequence[str],
                stat: str = "median_ms", image_size: int | None = None, num_classes: int | None = None) -> GroupCosts:
    """The table's fixed cost and group costs for the network of ``macro`` over ``candidates`` (in this order)."""
    macro = space.macro(macro)
    n, groups = len(candidates), {}
    for g in space.latency_groups(macro, image_size or table.image_size):
        k = len(g.decisions)
        base = table.ms(space.group_key((space.baseline_for(g.shape),) * k, g.shape), stat)
        # an assignment the space does not allow there costs +inf: never the cheapest, never in a knapsack, and the
        # expectation skips it (its probability is 0)
        cost = torch.tensor([table.ms(space.group_key(c, g.shape), stat) - base
                             if all(space.allows(op, g.shape) for op in c) else math.inf
                             for c in itertools.product(candidates, repeat=k)], dtype=torch.float64)
        groups[g.decisions] = groups[g.decisions] + cost if g.decisions in groups else cost
    return GroupCosts(fixed_ms(table, space, macro, num_classes, stat, image_size),
                      {d: c.reshape((n,) * len(d)) for d, c in groups.items()},
                      len(space.decision_names(macro)), n)


def genotype_macro(table: LatencyTable, genotype, macro: dict | None = None, space: SearchSpace | None = None
                   ) -> tuple[SearchSpace, dict]:
    """The space of ``genotype`` (None: looked up among the registered ones) and the network size to predict:
    the genotype's own (tree: B, F), else ``macro``, else the table's (NAS-Bench-201: the C, N it was built for)."""
    space = space or space_of(genotype)
    base = table.macro if table.meta.get("space", "tree") == space.name else {}
    return space, space.macro({**base, **(macro or {}), **space.genotype_macro(genotype)})


def predict_genotype(table: LatencyTable, genotype, num_classes: int | None = None, stat: str = "median_ms",
                     image_size: int | None = None, macro: dict | None = None, space: SearchSpace | None = None
                     ) -> float:
    """Predicted forward latency (ms) of the derived network of ``genotype`` at the table's batch size
    (and, unless given, the image size, classes and network size the table was built for)."""
    space, macro = genotype_macro(table, genotype, macro, space)
    ops = space.ops_of(genotype)
    total = fixed_ms(table, space, macro, num_classes, stat, image_size)
    for g in space.latency_groups(macro, image_size or table.image_size):
        total += (table.ms(space.group_key(tuple(ops[d] for d in g.decisions), g.shape), stat)
                  - table.ms(space.group_key((space.baseline_for(g.shape),) * len(g.decisions), g.shape), stat))
    return total
