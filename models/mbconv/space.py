"""The paper's ImageNet MBConv chain (models/mbconv/arch.py, net.py) behind the SearchSpace interface.

One decision per searchable block (``block_plan`` order); a block is its own input group and its own
latency context.  ``zero`` may sit only on a block that keeps its shape (``allows``): the first block of a
stage changes channels or stride.  The latency table's baseline is ``zero`` where it may sit and the
cheapest MBConv (3x3, expansion 3) elsewhere (``baseline_for``), so the table's baseline network is a
legal network: the fixed layers plus one 3x3 MBConv3 per stage.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from ..common import EdgeShape
from ..search_space import EdgeFactory, LatencyContext, LatencyEdge, SearchSpace
from .arch import (DEFAULT_MACRO, OP_CODES, PARAMETER_FREE, PRIMITIVES, SPACE_NAME, MBConvGenotype, block_plan,
                   check_image_size, check_macro)
from .net import Block, MBConvNet, build_derived
from .ops import make_op

STAGE_FIRST_BASELINE = "3x3_MBConv3"  # where zero may not sit: the cheapest candidate by multiply-adds


def block_key(ops: Sequence[str], shape: EdgeShape) -> str:
    """The latency-table key of ``ops[0]`` in a block of ``shape`` (in/out channels, input size, stride)."""
    s = shape
    return f"mbconv-block:{ops[0]}:c{s.in_channels}-{s.out_channels}:{s.in_size}x{s.in_size}:s{s.stride}"


class MBConvSpace(SearchSpace):
    name = SPACE_NAME
    network_name = "MBConv"
    genotype_space = SPACE_NAME
    primitives = PRIMITIVES
    op_codes = OP_CODES
    macro_defaults = dict(DEFAULT_MACRO)
    macro_help = {"stem": "channels of the first conv (paper's search: 32)",
                  "first": "channels of the fixed MBConv1 block after it (paper's search: 16)",
                  "widths": "channels of the 6 stages, comma-separated (paper's search: 24,40,80,96,192,320)",
                  "depths": "searchable blocks of the 6 stages, comma-separated (paper's search: 4,4,4,4,4,1)",
                  "head": "channels of the feature-mix 1x1 conv before pooling (paper's search: 1280)"}
    baseline_op = "zero"
    default_genotype = "proxyless_mobile"
    data_size = (224, 1000)  # ImageNet's: the released networks' own
    # (two stages of 2 blocks: their second block may be skipped, so a short run searches zero too)
    small_macro = {"stem": 8, "first": 8, "widths": (12, 16, 20, 24, 28, 32), "depths": (1, 2, 1, 2, 1, 1), "head": 32}
    # The authors released no retraining script; this is the run config of their ImageNet search script
    # (search/imagenet_arch_search.py): SGD Nesterov 0.9, lr 0.025 at batch 256 (= 0.00625 per 64 images), cosine,
    # weight decay 4e-5 on weights only (no_decay_keys "bn"), 120 epochs.  Not carried over: its label smoothing
    # 0.1 (train_cifar.py has none) and its color jitter.  No cutout (an ImageNet recipe).
    train_recipe = {"epochs": 120, "batch_size": 256, "lr": 0.00625, "weight_decay": 4e-5, "cutout": 0,
                    "decay_bn_bias": False, "drop_last": True}
    parameter_free = PARAMETER_FREE
    search_defaults = {"supernet_bn": "standard", "warmup_ops": "all"}  # the authors' ImageNet search
    input_groups = ((0,),)

    def check_macro(self, macro: dict) -> None:
        check_macro(macro["stem"], macro["first"], macro["widths"], macro["depths"], macro["head"])

    def check_image_size(self, size: int) -> None:
        check_image_size(size)

    def allows(self, op: str, shape: EdgeShape) -> bool:
        return op != "zero" or shape.keeps_shape

    def baseline_for(self, shape: EdgeShape) -> str:
        return "zero" if shape.keeps_shape else STAGE_FIRST_BASELINE

    def _plan(self, macro: dict, image_size: int):
        return block_plan(macro["stem"], macro["first"], macro["widths"], macro["depths"], image_size)

    def decision_names(self, macro: dict) -> list[str]:
        return [f"stage{s}.block{p}" for s, d in enumerate(macro["depths"]) for p in range(d)]

    def genotype_from_ops(self, ops: Sequence[str], macro: dict) -> MBConvGenotype:
        return MBConvGenotype(tuple(ops), macro["stem"], macro["first"], macro["widths"], macro["depths"], macro["head"])

    def ops_of(self, genotype: MBConvGenotype) -> tuple[str, ...]:
        return genotype.ops

    def genotype_macro(self, genotype: MBConvGenotype) -> dict:
        return {"stem": genotype.stem, "first": genotype.first, "widths": genotype.widths, "depths": genotype.depths,
                "head": genotype.head}

    def genotype_from_dict(self, d: dict) -> MBConvGenotype:
        return MBConvGenotype.from_dict(d)

    def make_op(self, name: str, shape: EdgeShape) -> nn.Module:
        return make_op(name, shape)

    def build_body(self, macro: dict, make_edge: EdgeFactory, num_classes: int, image_size: int,
                   path_drop: float = 0.0, cell_drop: float = 0.0) -> MBConvNet:
        self.refuse_drops(path_drop, cell_drop)
        return MBConvNet(macro["stem"], macro["first"], macro["widths"], macro["depths"], macro["head"], make_edge,
                         num_classes, image_size)

    def derived(self, genotype: MBConvGenotype, macro: dict, num_classes: int, image_size: int,
                path_drop: float = 0.0, cell_drop: float = 0.0) -> MBConvNet:
        self.refuse_drops(path_drop, cell_drop)
        self.check_genotype(genotype, macro)
        net = build_derived(genotype, num_classes, image_size)
        net.macro, net.space = dict(macro), self
        return net

    def baseline_network(self, macro: dict, num_classes: int, image_size: int) -> MBConvNet:
        """The baseline genotype's derived network: its zero blocks skipped, as any derived network's."""
        ops = [self.baseline_for(b.shape) for b in self._plan(macro, image_size)]
        return build_derived(self.genotype_from_ops(ops, macro), num_classes, image_size)

    def pictures(self, genotype: MBConvGenotype, macro: dict, title: str = "", image_size: int = 224,
                 num_classes: int = 1000, probs=None, candidates: Sequence[str] = (), block: int = 0) -> dict:
        from . import pictures as P  # (graphviz: only when drawing)
        out = {"network": P.network_graph(genotype, title, image_size, num_classes)}
        if probs is not None:
            out["alpha"] = P.alpha_graph(probs.tolist(), list(candidates), self.allowed(macro, candidates, image_size),
                                         title="search " + self.describe_macro(macro))
        return out

    # ---- latency tables: every block is its own context and group
    def latency_contexts(self, macro: dict, image_size: int) -> list[LatencyContext]:
        out = {}
        for b in self._plan(macro, image_size):
            s = b.shape
            if s not in out:
                out[s] = LatencyContext(
                    block_key(("block",), s).replace("mbconv-block:block:", "mbconv-context:"),
                    lambda ops, s=s: Block(self.make_op(ops[0], s), s.keeps_shape),
                    (s.in_channels, s.in_size, s.in_size), s)
        return list(out.values())

    def latency_edges(self, macro: dict, image_size: int) -> list[LatencyEdge]:
        return [LatencyEdge(b.index, b.shape) for b in self._plan(macro, image_size)]

    def group_key(self, ops: Sequence[str], shape: EdgeShape) -> str:
        return block_key(ops, shape)


MBCONV = MBConvSpace()
