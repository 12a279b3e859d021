"""NAS-Bench-201 (models/nb201/arch.py, models/nb201/net.py) behind the SearchSpace interface.

Six decisions, one per cell edge, shared by all 3N cells: a search samples one cell for the whole
network each step, as the benchmark's own searches do, and its genotype is one cell.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from .arch import (CELLS_PER_STAGE, EDGE_NAMES, EDGES, NODES, NUM_EDGES, OP_CODES, PARAMETER_FREE, PRIMITIVES,
                   SPACE_NAME, STEM_CHANNELS, CellGenotype, check_macro)
from .net import Cell, NB201Net, make_op, stage_plan
from .table import SHIPPED
from ..search_space import EdgeFactory, EdgeShape, LatencyContext, LatencyEdge, SearchSpace
from ..common import SpaceError
from .net import check_image_size


# ---- latency-table keys of this space (the batch size is the table's); ops share tree-style edge keys
def group_key(ops: Sequence[str], shape: EdgeShape) -> str:
    """The key of the ops of one input group (``ops``, in the group's edge order) on edges of that shape."""
    return f"nb201-group:{'+'.join(ops)}:c{shape.in_channels}:{shape.in_size}x{shape.in_size}"


def cell_key(channels: int, size: int) -> str:
    return f"nb201-cell:c{channels}:{size}x{size}"


class NB201Space(SearchSpace):
    name = SPACE_NAME
    network_name = "NAS-Bench-201"
    genotype_space = SPACE_NAME
    primitives = PRIMITIVES
    op_codes = OP_CODES
    macro_defaults = {"C": STEM_CHANNELS, "N": CELLS_PER_STAGE}
    macro_help = {"C": "stem channels; the stages have C, 2C, 4C (the benchmark's: 16)",
                  "N": "cells per stage (the benchmark's: 5)"}
    baseline_op = "skip_connect"
    default_genotype = "nb201_best_cifar10"
    small_macro = {"C": 8, "N": 1}
    accuracy_table = str(SHIPPED)
    # the benchmark's 200-epoch recipe: Nesterov SGD, lr 0.1 at batch 256 = 0.025 per 64 images, cosine to 0,
    # weight decay 5e-4 on every parameter, random crop and flip, no cutout, the last partial batch of an epoch
    # kept as a DataLoader does by default
    train_recipe = {"epochs": 200, "batch_size": 256, "lr": 0.025, "weight_decay": 5e-4, "cutout": 0,
                    "decay_bn_bias": True, "drop_last": False}
    parameter_free = PARAMETER_FREE
    # Measured with bench/nb201_search.py (C=8 N=1, 10 + 15 epochs, seed 0; CIFAR-10 test accuracy of the
    # final cell in the benchmark's table): standard BN, uniform warm-up 92.63; plain BN (no affine, batch
    # statistics: the benchmark authors' searches) 92.23; plain BN + warm-up paths drawn only from the ops
    # with weights 93.35 (seeds 0-2: 93.35, 93.35, 93.16).  Drawn uniformly from all 5, each conv trains on
    # 1/5 of the warm-up's paths while `none`, `skip` and pooling, with nothing to learn, look as good as
    # the young convs at the start of the search: it then leans toward them (DARTS's collapse, milder).
    search_defaults = {"supernet_bn": "plain", "warmup_ops": "weighted"}
    # Half the paper's alpha learning rate for Proxyless-G (bench/nb201_search.py, seeds 0-2, docs/results.md
    # "Toward GDAS's 93.6"): from one shared warm-up each 93.35 / 93.38 / 93.34 against 93.17 / 91.32 / 91.98 at
    # 0.006; run from scratch as a user runs the bench (seed 0's shared warm-up came from an earlier version of
    # the code) 92.29 / 93.38 / 93.34 against 92.12 / 91.32 / 91.98 at 0.006 from the same warm-ups.  A guess at
    # why, not measured: alpha settles later, so the weight steps draw closer to uniform for longer before the
    # search commits.  Alpha still ends near uniform (entropy ~1.54 of 1.609): the final argmax is fragile.
    # Proxyless-R keeps the paper's 0.01 (not measured at 0.003).
    arch_lr_defaults = {"gradient": 0.003, "reinforce": 0.01}
    input_groups = tuple(tuple(e for e, (_, src) in enumerate(EDGES) if src == j) for j in range(NODES - 1))

    def check_macro(self, macro: dict[str, int]) -> None:
        check_macro(macro["C"], macro["N"])

    def check_image_size(self, size: int) -> None:
        check_image_size(size)  # two stride-2 reductions, as the tree network's stages

    def decision_names(self, macro: dict[str, int]) -> list[str]:
        return list(EDGE_NAMES)

    def genotype_from_ops(self, ops: Sequence[str], macro: dict[str, int]) -> CellGenotype:
        return CellGenotype(tuple(ops))

    def ops_of(self, genotype: CellGenotype) -> tuple[str, ...]:
        return genotype.ops

    def genotype_from_dict(self, d: dict) -> CellGenotype:
        return CellGenotype.from_dict(d)

    def make_op(self, name: str, shape: EdgeShape) -> nn.Module:
        if not shape.keeps_shape:
            raise SpaceError(f"NAS-Bench-201's cell edges keep their shape, got {shape}")
        return make_op(name, shape.in_channels)

    def build_body(self, macro: dict[str, int], make_edge: EdgeFactory, num_classes: int, image_size: int,
                   path_drop: float = 0.0, cell_drop: float = 0.0) -> NB201Net:
        self.refuse_drops(path_drop, cell_drop)  # the benchmark trained its cells without them
        shapes = [EdgeShape(w, w, 1, size) for kind, w, size in stage_plan(macro["C"], macro["N"], image_size)
                  if kind == "cell"]  # cell k's edges
        return NB201Net(macro["C"], macro["N"], lambda k, e, c: make_edge(e, shapes[k]), num_classes, image_size)

    def pictures(self, genotype: CellGenotype, macro: dict, title: str = "", image_size: int = 32,
                 num_classes: int = 10, probs=None, candidates: Sequence[str] = (), block: int = 0) -> dict:
        from . import pictures as P  # (graphviz: only when drawing)
        out = {"cell": P.cell_graph(genotype, title, macro["C"]),
               "network": P.network_graph(genotype, macro, title, image_size, num_classes)}
        if probs is not None:
            out["alpha"] = P.alpha_graph(probs.tolist(), list(candidates), title=f"search C={macro['C']}, N={macro['N']}")
        return out

    # ---- latency tables: the ops are timed in context, inside a cell
    def latency_contexts(self, macro: dict[str, int], image_size: int) -> list[LatencyContext]:
        out = {}
        for kind, width, size in stage_plan(macro["C"], macro["N"], image_size):
            if kind == "cell" and (width, size) not in out:
                out[width, size] = LatencyContext(
                    cell_key(width, size), lambda ops, s=EdgeShape(width, width, 1, size): Cell(
                        s.in_channels, lambda e, c: self.make_op(ops[e], s)),
                    (width, size, size), EdgeShape(width, width, 1, size))
        return list(out.values())

    def group_key(self, ops: Sequence[str], shape: EdgeShape) -> str:
        return group_key(ops, shape)

    def latency_edges(self, macro: dict[str, int], image_size: int) -> list[LatencyEdge]:
        return [LatencyEdge(e, EdgeShape(width, width, 1, size)) for kind, width, size in stage_plan(macro["C"], macro["N"], image_size)
                if kind == "cell" for e in range(NUM_EDGES)]


NB201 = NB201Space()
