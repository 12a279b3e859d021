"""Latency tables fit from whole networks timed on a device this code does not run on (a phone's benchmark
tool, a board, an accelerator, a published table): ``python -m utils.latency sample`` / ``fit``.

The workflow (docs/devices.md): ``sample`` picks K architectures and exports each to ONNX; the user times
them with the device's own tool and fills the ``latency_ms`` column of ``manifest.csv``; ``fit`` turns the
figures into a table of the project's format (utils/latency_table.py), so ``predict``, the expected latency
and its gradient, ``--target-latency`` and ``--derive within-target`` read it as they read a table timed here.

**The model** is the table's own: latency = fixed + the sum, over the input groups of every cell / block,
of an entry per assignment of ops to the group's edges (a sum over groups is what keeps the expected
latency, its gradient and the within-target knapsack exact).  A group entry is written as an ANOVA-style
sum of terms relative to the baseline op, from coarse to fine:

  level 0  one cost per op type (wherever it sits): the only terms a handful of rows can pin down
  level 1  a deviation per op and edge position (and per edge shape)
  level 2+ interactions of 2 (3, ...) ops of one group (ops that read one tensor: fused, cached, shared)

Level 0 and the constant are plain least squares; every finer level is a ridge with its own penalty,
chosen by leave-one-out cross-validation (closed form for a ridge), one level at a time from the coarsest
(a penalty of inf drops the level).  So 10 rows give, in effect, one cost per op type; a few hundred the
per-edge costs with interactions shrunk toward 0; every cell of NAS-Bench-201 the full group model.
Least squares in milliseconds, not relative errors: on NAS-Bench-201's phone columns weighting by 1/ms^2
lost 0.05 Spearman (0.943 -> 0.892 per edge, every cell as data): the fast cells are the noisiest.

Every row is kept, also the networks that measure far below the others (on the HW-NAS-Bench columns
the cells whose output does not depend on their input, which the device's compiler removes whole: 0.05 ms
beside a median of 10): leaving out the rows under a tenth of the median lowered the Spearman of a fit to
every pixel3 cell from 0.947 to 0.941 (those cells are then ranked among the others).

**The margin** (``margin``): a table fit from 100 networks is off by a few percent to tens of percent (the
phones), so a search for a hard constraint derives below it: target / (1 + m), with m the largest relative
under-prediction (measured / leave-one-out prediction - 1) among the fit's rows predicted within a factor
2 of the target (at least ``MARGIN_ROWS`` nearest rows).  A table timed here has no such record: m = 0.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from models.search_space import SearchSpace
from models.search_space import IMAGE_SIZE, NUM_CLASSES
from models.spaces import space_of
from models.nb201.table import read_text  # a CSV, gzip-compressed or not
from utils.latency_table import LatencyError, LatencyTable, configs, fixed_key, group_shapes, with_baseline

FIT_KIND = "fit from measured networks"
MIN_MS = 0.5  # MAPE is reported over rows at or above this (a relative error of a 0.05 ms row means nothing)
LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, math.inf)
MARGIN_ROWS = 10
LEVEL_NAMES = {0: "one cost per op type", 1: "per op and edge", 2: "with pairs of a group", 3: "with triples"}


# ------------------------------------------------------------------ reading measurements
@dataclass
class Measurements:
    """Distinct architectures and their measured latency (ms); ``rows``: each one's line in the file."""

    archs: list
    ms: np.ndarray
    rows: list[int]
    source: str
    column: str


def read_measurements(path: str | os.PathLike, space: SearchSpace, column: str, parse: Callable[[str], object],
                      arch_column: str = "arch") -> Measurements:
    """The CSV's architectures (``parse``: a name, NAS-Bench-201 string or JSON file -> genotype) and the
    latency in ``column``; every fault is one LatencyError naming the line (the header is line 1) or column."""
    path = Path(path)
    try:
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        header = reader.fieldnames or []
        for need in (arch_column, column):
            if need not in header:
                raise LatencyError(f"{path} has no column {need!r} (its columns: {', '.join(header) or 'none'})")
        lines = list(reader)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise LatencyError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except csv.Error as e:
        raise LatencyError(f"{path} is not a CSV file: {e}") from None
    seen: dict[str, tuple[int, float]] = {}
    archs, ms, rows = [], [], []
    for n, line in enumerate(lines, start=2):
        text, value = (line.get(arch_column) or "").strip(), (line.get(column) or "").strip()
        if not text:
            raise LatencyError(f"{path} line {n}: column {arch_column!r} is empty")
        beside = path.parent / text  # a genotype file named relative to the CSV (sample's manifest)
        try:
            g = parse(str(beside) if text.endswith(".json") and beside.is_file() else text)
        except (ValueError, OSError) as e:  # SpaceError and the genotype errors are ValueErrors
            raise LatencyError(f"{path} line {n}: {arch_column} {text!r} is not an architecture: {e}") from None
        if space_of(g) is not space:
            raise LatencyError(f"{path} line {n}: {text!r} is an architecture of the {space_of(g).name} space, "
                               f"the table is for the {space.name} space")
        if not value:
            raise LatencyError(f"{path} line {n}: {column} is empty (time the network on the device and fill it in)")
        try:
            v = float(value)
        except ValueError:
            raise LatencyError(f"{path} line {n}: {column} {value!r} is not a number") from None
        if not math.isfinite(v) or v <= 0:
            raise LatencyError(f"{path} line {n}: {column} must be a positive number of milliseconds, got {value}")
        key = ",".join(space.ops_of(g))
        if key in seen:
            if seen[key][1] != v:
                raise LatencyError(f"{path} line {n}: {text!r} was measured at {seen[key][1]:g} ms on line "
                                   f"{seen[key][0]} and {v:g} ms here: keep one value per architecture")
            continue
        seen[key] = (n, v)
        archs.append(g)
        ms.append(v)
        rows.append(n)
    if not archs:
        raise LatencyError(f"{path} has no rows")  # (a header alone)
    return Measurements(archs, np.array(ms, dtype=np.float64), rows, str(path), column)


def subsample(m: Measurements, k: int | None, seed: int) -> Measurements:
    """``k`` rows drawn at random (``seed``) from ``m``; None: all."""
    if k is None:
        return m
    if k < 1 or k > len(m.archs):
        raise LatencyError(f"cannot draw {k} rows from the {len(m.archs)} of {m.source} (draw 1 to {len(m.archs)})")
    pick = np.sort(np.random.default_rng(seed).choice(len(m.archs), size=k, replace=False))
    return Measurements([m.archs[i] for i in pick], m.ms[pick], [m.rows[i] for i in pick], m.source, m.column)


# ------------------------------------------------------------------ the design
class Design:
    """The terms of the model for one space, network size and candidate set (module docstring), and the
    design matrix of architectures given as (M, D) candidate indices."""

    def __init__(self, space: SearchSpace, macro: dict, candidates: Sequence[str], image_size: int, max_level: int):
        self.space, self.macro, self.image_size = space, space.macro(macro), image_size
        self.groups = space.latency_groups(self.macro, image_size)
        self.shapes = group_shapes(space, self.macro, image_size)  # (k, edge shape)
        self.ops = list(with_baseline(space, candidates))
        for _, shape in self.shapes:  # every shape's baseline (MBConv: 3x3_MBConv3 where zero may not sit)
            if space.baseline_for(shape) not in self.ops:
                self.ops.append(space.baseline_for(shape))
        self.n = len(self.ops)
        # per edge shape: its baseline (its ops cost 0: no term) and the ops the space allows there
        self.base = {shape: self.ops.index(space.baseline_for(shape)) for _, shape in self.shapes}
        self.live_ops = {shape: [o for o in range(self.n) if o != self.base[shape] and space.allows(self.ops[o], shape)]
                         for _, shape in self.shapes}
        self.terms: list[tuple] = [("const",)]
        self.level: list[int] = [-1]
        for o in sorted({o for ops in self.live_ops.values() for o in ops}):
            self.terms.append(("type", o))
            self.level.append(0)
        for k, shape in self.shapes:
            for subset in self.subsets(k):
                if len(subset) > max_level:
                    continue
                for ops in itertools.product(self.live_ops[shape], repeat=len(subset)):
                    self.terms.append(("term", k, subset, ops, shape))
                    self.level.append(len(subset))
        self.index = {t: i for i, t in enumerate(self.terms)}
        self.level_arr = np.array(self.level)
        self.max_level = int(self.level_arr.max())
        self._cols: dict[tuple, np.ndarray] = {}

    @staticmethod
    def subsets(k: int) -> list[tuple[int, ...]]:
        return [s for r in range(1, k + 1) for s in itertools.combinations(range(k), r)]

    def indices(self, archs: Sequence) -> np.ndarray:
        """(M, D) candidate indices of genotypes; an op outside the candidates is one LatencyError."""
        out = []
        for g in archs:
            ops = self.space.ops_of(g)
            bad = [op for op in ops if op not in self.ops]
            if bad:
                raise LatencyError(f"{g.describe() if hasattr(g, 'describe') else g} uses {bad[0]!r}, not one of the "
                                   f"candidates {', '.join(self.ops)}")
            out.append([self.ops.index(op) for op in ops])
        return np.array(out, dtype=np.int64).reshape(len(out), -1)

    def matrix(self, idx: np.ndarray) -> np.ndarray:
        """(M, terms) counts: how often each term occurs in each architecture's network."""
        idx = np.asarray(idx)
        x = np.zeros((idx.shape[0], len(self.terms)))
        x[:, 0] = 1.0
        rows = np.arange(idx.shape[0])
        for g in self.groups:
            k, base = len(g.decisions), self.base[g.shape]
            ops = idx[:, list(g.decisions)]  # (M, k)
            for j in range(k):
                for o in self.live_ops[g.shape]:
                    x[:, self.index[("type", o)]] += ops[:, j] == o
            for subset in self.subsets(k):
                if len(subset) > self.max_level:
                    continue
                sub = ops[:, list(subset)]
                live = (sub != base).all(1)
                if not live.any():
                    continue
                code = (sub[live] * self.n ** np.arange(len(subset))).sum(1)
                np.add.at(x, (rows[live], self._columns(k, subset, g.shape)[code]), 1.0)
        return x

    def _columns(self, k: int, subset: tuple[int, ...], shape) -> np.ndarray:
        """Column of each assignment to ``subset`` (coded sum_j op_j n**j), -1 where it has no term."""
        key = (k, subset, shape)
        if key not in self._cols:
            out = np.full(self.n ** len(subset), -1, dtype=np.int64)
            for ops in itertools.product(range(self.n), repeat=len(subset)):
                i = self.index.get(("term", k, subset, ops, shape))
                if i is not None:
                    out[sum(o * self.n ** j for j, o in enumerate(ops))] = i
            self._cols[key] = out
        return self._cols[key]

    def entry(self, beta: np.ndarray, k: int, config: Sequence[int], shape) -> float:
        """A group entry: the terms of ``config`` (candidate indices on the group's k edges) summed."""
        total, base = 0.0, self.base[shape]
        for j, o in enumerate(config):
            if o != base:
                total += beta[self.index[("type", o)]]
        for subset in self.subsets(k):
            ops = tuple(config[j] for j in subset)
            if all(o != base for o in ops):
                i = self.index.get(("term", k, subset, ops, shape))
                if i is not None:
                    total += beta[i]
        return float(total)


# ------------------------------------------------------------------ ridge with leave-one-out
def ridge_loo(x: np.ndarray, y: np.ndarray, penalty: np.ndarray, gram: np.ndarray | None = None,
              xty: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, leave-one-out predictions) of least squares with a ridge penalty per column (0: none,
    inf: column dropped).  LOO residual = residual / (1 - leverage), exact for a ridge.  ``gram`` = x'x and
    ``xty`` = x'y when the caller has them (they do not depend on the penalty)."""
    keep = np.isfinite(penalty)
    xk = x[:, keep]
    gk = (xk.T @ xk) if gram is None else gram[np.ix_(keep, keep)]
    inv = np.linalg.pinv(gk + np.diag(penalty[keep] + 1e-9 * (np.trace(gk) / max(1, keep.sum()))), hermitian=True)
    b = inv @ ((xk.T @ y) if xty is None else xty[keep])
    lev = np.einsum("ij,jk,ik->i", xk, inv, xk)
    resid = y - xk @ b
    loo = y - resid / np.maximum(1.0 - lev, 1e-9)
    beta = np.zeros(x.shape[1])
    beta[keep] = b
    return beta, loo


def choose_penalties(x: np.ndarray, y: np.ndarray, level: np.ndarray, max_level: int, rule: str = "min"
                     ) -> tuple[dict[int, float], np.ndarray, np.ndarray]:
    """Each finer level's penalty by leave-one-out squared error, one level at a time from the coarsest
    (the finer ones dropped meanwhile); returns (penalties, coefficients, LOO predictions).
    rule "min": the minimum; "1se": the largest penalty (inf: the level dropped) whose error is within one
    standard error of the level's best, the usual guard against a minimum that is noise.  Measured on the
    shipped device file (mean Spearman over HELP's six test devices, 5 draws): "1se" 0.948 / 0.967 at K = 10 /
    100, "min" 0.944 / 0.969, and on pixel3 at K = 100 0.911 vs 0.923: "min" is the default (tables for a
    search are fit from ~100 rows)."""
    lams = {lv: math.inf for lv in range(1, max_level + 1)}

    gram, xty = x.T @ x, x.T @ y  # once for every penalty tried

    def fit(lam):
        pen = np.array([0.0 if lv <= 0 else lam[lv] for lv in level])
        return ridge_loo(x, y, pen, gram, xty)

    beta, loo = fit(lams)
    for lv in range(1, max_level + 1):
        tried = [(math.inf, beta, loo)] + [(v, *fit({**lams, lv: v})) for v in LAMBDAS[:-1]]
        sq = [(y - lo) ** 2 for _, _, lo in tried]
        means = np.array([e.mean() for e in sq])
        best = int(np.argmin(means))
        bound = means[best] + (sq[best].std(ddof=1) / math.sqrt(len(y)) if rule == "1se" and len(y) > 1 else 0.0)
        # the most regularized within the bound: inf first, then the largest finite penalty
        pick = next(i for i in [0] + list(range(len(tried) - 1, 0, -1)) if means[i] <= bound)
        value, beta, loo = tried[pick]
        lams[lv] = value
        if math.isinf(value):
            break  # a level that does not pay: the finer ones (its refinements) are not tried
    return lams, beta, loo


def scores(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    """MAPE (%) over rows >= MIN_MS, Spearman and Kendall (scipy: ties handled) of predictions."""
    from scipy import stats

    big = meas >= MIN_MS
    out = {"mape": float(np.mean(np.abs(pred[big] / meas[big] - 1)) * 100) if big.any() else float("nan"),
           "rows_mape": int(big.sum())}
    if len(pred) > 2 and np.ptp(pred) > 0 and np.ptp(meas) > 0:
        out["spearman"] = float(stats.spearmanr(pred, meas)[0])
        out["kendall"] = float(stats.kendalltau(pred, meas)[0])
    else:
        out["spearman"] = out["kendall"] = float("nan")
    return out


# ------------------------------------------------------------------ the fit
def min_rows(space: SearchSpace, candidates: Sequence[str]) -> int:
    """The rows a fit needs: its unpenalized numbers (a constant, a cost per op type) and 2 to cross-validate."""
    return len(with_baseline(space, candidates)) + 2


def fit_table(m: Measurements, space: SearchSpace, macro: dict, candidates: Sequence[str] | None = None,
              model: str = "auto", batch_size: int = 1, device_name: str | None = None,
              num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE, extra_meta: dict | None = None
              ) -> LatencyTable:
    """A LatencyTable fit to ``m`` (module docstring).  ``model``: auto (every level, penalties by
    cross-validation), optype, edge or group (the finest level allowed)."""
    levels = {"optype": 0, "edge": 1, "group": 99, "auto": 99}
    if model not in levels:
        raise LatencyError(f"unknown fit model {model!r}; choose one of {', '.join(levels)}")
    macro = space.macro(macro)
    candidates = list(space.check_candidates(space.primitives if candidates is None else candidates))
    design = Design(space, macro, candidates, image_size, levels[model])
    idx = design.indices(m.archs)
    need = min_rows(space, candidates)
    if len(m.archs) < need:
        raise LatencyError(f"{m.source}: {len(m.archs)} rows, the fit needs at least {need} (a constant and one "
                           f"cost per op type, plus 2 to cross-validate)")
    x, y = design.matrix(idx), m.ms
    lams, beta, loo = choose_penalties(x, y, design.level_arr, design.max_level)
    finest = max([0] + [lv for lv, v in lams.items() if math.isfinite(v)])
    cv = scores(loo, y)
    entries: dict[str, dict] = {}
    for k, shape in design.shapes:
        for c in configs(space, candidates, k, shape):
            value = design.entry(beta, k, [design.ops.index(op) for op in c], shape)
            entries[space.group_key(c, shape)] = {"median_ms": value, "fitted": True}
    entries[fixed_key(space, macro, num_classes, image_size)] = {"median_ms": float(beta[0]), "fitted": True}
    fit = {"kind": FIT_KIND, "source": m.source, "column": m.column, "rows": len(m.archs),
           "model": model, "level": finest, "level_name": LEVEL_NAMES.get(finest, f"with {finest}-op terms"),
           "penalties": {str(k): (None if math.isinf(v) else v) for k, v in lams.items()},
           "terms": int(np.isfinite(np.array([0.0 if lv <= 0 else lams[lv] for lv in design.level])).sum()),
           "cv": cv, "loo": [[float(p), float(t)] for p, t in zip(loo, y)], **(extra_meta or {})}
    meta = {"backend": "measured", "device": "measured", "device_name": device_name or m.column,
            "batch_size": batch_size, "space": space.name, "macro": dict(macro), **dict(macro),
            "candidates": candidates, "num_classes": num_classes, "image_size": image_size,
            "model": f"fixed + sum over input groups of fitted group entries ({LEVEL_NAMES.get(finest, '')}; "
                     f"utils/latency_fit.py)", "fit": fit}
    return LatencyTable(entries, meta)


def is_fitted(table: LatencyTable) -> bool:
    return isinstance(table.meta.get("fit"), dict) and table.meta["fit"].get("kind") == FIT_KIND


def margin(table: LatencyTable, target_ms: float) -> float:
    """The relative margin a search derives with under ``target_ms`` (module docstring): 0 for a table
    timed here, else the largest relative under-prediction of the fit's rows predicted within a factor 2
    of the target (at least the MARGIN_ROWS nearest in log ratio)."""
    if not is_fitted(table):
        return 0.0
    loo = np.array(table.meta["fit"].get("loo") or [], dtype=np.float64).reshape(-1, 2)
    loo = loo[loo[:, 0] > 0]
    if len(loo) == 0:
        return 0.0
    dist = np.abs(np.log(loo[:, 0] / target_ms))
    near = dist <= math.log(2.0)
    if near.sum() < MARGIN_ROWS:
        near = np.zeros(len(loo), bool)
        near[np.argsort(dist)[:MARGIN_ROWS]] = True
    return max(0.0, float(np.max(loo[near, 1] / loo[near, 0] - 1.0)))
