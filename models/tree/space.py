"""The paper's CIFAR-10 tree-cell space (models/tree/arch.py) behind the SearchSpace interface.

One decision per searchable edge: decision = block * 12 + edge (models/tree/arch.py EDGE_NAMES order), so a
genotype's ops, flattened block by block, are the decisions' ops.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from .genotype import SPACE_NAME, Genotype
from .ops import OPS
from .cells import ResidualTreeBlock
from .net import DerivedNet, TreeNet
from ..search_space import EdgeFactory, EdgeShape, LatencyContext, LatencyEdge, SearchSpace
from .arch import (CELL_TREES, EDGE_NAMES, EDGES_PER_CELL, NUM_STAGES, OP_CODES, PRIMITIVES, BlockSpec, SpaceError,
                   block_plan, check_image_size, check_macro)


# ---- latency-table keys of this space (the batch size is the table's)
def group_key(ops: Sequence[str], shape: EdgeShape) -> str:
    """The key of the ops of one input group (``ops``, in the group's edge order) on edges of that shape."""
    return f"group:{'+'.join(ops)}:c{shape.in_channels}:{shape.in_size}x{shape.in_size}"


def edge_shape(spec: BlockSpec) -> EdgeShape:
    """Every searchable edge of a block maps width x out_size onto itself (the root edge, not searchable,
    strides and widens)."""
    return EdgeShape(spec.width, spec.width, 1, spec.out_size)


def block_key(spec: BlockSpec) -> str:
    return f"block:c{spec.in_channels}-{spec.width}-{spec.out_channels}:{spec.in_size}x{spec.in_size}:s{spec.stride}"


def _input_groups(tree=None) -> list[tuple[int, ...]]:
    """Edges that read one tensor: a half's first edges read the half, an edge's children its output."""
    if tree is None:
        return [g for t in CELL_TREES for g in _input_groups(t)]
    out = [tuple(edge for edge, _ in tree)]
    for _, child in tree:
        if child:
            out += _input_groups(child)
    return out


class TreeSpace(SearchSpace):
    name = "tree"
    network_name = "tree"
    genotype_space = SPACE_NAME
    primitives = PRIMITIVES
    op_codes = OP_CODES
    macro_defaults = {"B": 18, "F": 400}
    macro_help = {"B": "blocks per stage (paper's network: 18)",
                  "F": "final width, a multiple of 8 >= 64 (paper's network: 400)"}
    baseline_op = "identity"
    default_genotype = "proxyless_cifar"
    small_macro = {"B": 1, "F": 64}
    # the authors' CIFAR configs: lr 0.1 at batch 64, cutout 16, 300 epochs, decay on conv/linear weights only
    train_recipe = {"epochs": 300, "batch_size": 64, "lr": 0.1, "weight_decay": 1e-4, "cutout": 16,
                    "decay_bn_bias": False, "drop_last": True}
    parameter_free = ("avg_pool_3x3", "max_pool_3x3", "identity")
    search_defaults = {"supernet_bn": "standard", "warmup_ops": "all"}  # the paper's setting
    input_groups = tuple(_input_groups())  # ((0, 3), (1, 2), (4, 5), (6, 9), (7, 8), (10, 11))

    def check_macro(self, macro: dict[str, int]) -> None:
        check_macro(macro["B"], macro["F"])

    def check_image_size(self, size: int) -> None:
        check_image_size(size)

    def decision_names(self, macro: dict[str, int]) -> list[str]:
        return [f"block{b}.{e}" for b in range(NUM_STAGES * macro["B"]) for e in EDGE_NAMES]

    def genotype_from_ops(self, ops: Sequence[str], macro: dict[str, int]) -> Genotype:
        ops = list(ops)
        return Genotype(macro["B"], macro["F"], [ops[i:i + EDGES_PER_CELL] for i in range(0, len(ops), EDGES_PER_CELL)])

    def ops_of(self, genotype: Genotype) -> tuple[str, ...]:
        return tuple(op for block in genotype.ops for op in block)

    def genotype_macro(self, genotype: Genotype) -> dict[str, int]:
        return {"B": genotype.B, "F": genotype.F}

    def genotype_from_dict(self, d: dict) -> Genotype:
        return Genotype.from_dict(d)

    def make_op(self, name: str, shape: EdgeShape) -> nn.Module:
        if not shape.keeps_shape:
            raise SpaceError(f"the tree space's edges keep their shape, got {shape}")
        return OPS[name](shape.in_channels, 1)

    def build_body(self, macro: dict[str, int], make_edge: EdgeFactory, num_classes: int, image_size: int,
                   path_drop: float = 0.0, cell_drop: float = 0.0) -> TreeNet:
        shapes = [edge_shape(spec) for spec in block_plan(macro["B"], macro["F"], image_size)]
        return TreeNet(macro["B"], macro["F"], lambda b, e, c: make_edge(b * EDGES_PER_CELL + e, shapes[b]), num_classes,
                       path_drop, cell_drop, image_size)

    def derived(self, genotype: Genotype, macro: dict[str, int], num_classes: int, image_size: int,
                path_drop: float = 0.0, cell_drop: float = 0.0) -> DerivedNet:
        self.check_genotype(genotype, macro)
        net = DerivedNet(genotype, num_classes, path_drop, cell_drop, image_size)
        net.macro, net.space = dict(macro), self
        return net

    def pictures(self, genotype: Genotype, macro: dict, title: str = "", image_size: int = 32, num_classes: int = 10,
                 probs=None, candidates: Sequence[str] = (), block: int = 0) -> dict:
        from . import pictures as P  # (graphviz: only when drawing)
        out = {"cell": P.cell_graph(genotype, block, title, image_size, num_classes),
               "network": P.network_graph(genotype, title, image_size, num_classes), "ops": P.ops_graph(genotype, title)}
        if probs is not None:
            out["alpha"] = P.alpha_graph(probs.view(NUM_STAGES * macro["B"], EDGES_PER_CELL, -1).tolist(),
                                         list(candidates), macro["B"], title=f"search B={macro['B']}, F={macro['F']}")
        return out

    # ---- latency tables: the ops are timed in context, inside a block
    def latency_contexts(self, macro: dict[str, int], image_size: int) -> list[LatencyContext]:
        out = {}
        for spec in block_plan(macro["B"], macro["F"], image_size):
            shape = (spec.width, spec.out_size)  # widths are rounded to even: neighbours can share one
            if shape not in out:
                out[shape] = LatencyContext(
                    block_key(spec), lambda ops, s=spec: ResidualTreeBlock(s, lambda e, c: self.make_op(ops[e], edge_shape(s))),
                    (spec.in_channels, spec.in_size, spec.in_size), edge_shape(spec))
        return list(out.values())

    def group_key(self, ops: Sequence[str], shape: EdgeShape) -> str:
        return group_key(ops, shape)

    def latency_edges(self, macro: dict[str, int], image_size: int) -> list[LatencyEdge]:
        return [LatencyEdge(spec.index * EDGES_PER_CELL + e, edge_shape(spec))
                for spec in block_plan(macro["B"], macro["F"], image_size) for e in range(EDGES_PER_CELL)]


TREE = TreeSpace()
