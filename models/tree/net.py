"""The PyramidTreeNet of the tree space: one builder (TreeNet, generic over what sits on an edge) gives
both the supernet's body (models/supernet.py via models/tree/space.py) and the derived network."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..weights import init_conv_bn
from .cells import ResidualTreeBlock
from .genotype import Genotype
from .ops import OPS
from .arch import IMAGE_SIZE, NUM_CLASSES, STEM_CHANNELS, SpaceError, block_plan, check_macro

BlockEdgeFactory = Callable[[int, int, int], nn.Module]  # (block, edge, channels) -> module


class TreeNet(nn.Module):
    """stem -> 3 stages of B residual tree blocks -> BN-ReLU-global pool -> linear.

    cell_drop: the residual of block k (0-based, of n) is dropped with probability
    cell_drop * (k+1)/n per batch in training (linear in depth); path_drop: see TreeCell.
    """

    def __init__(self, B: int, F: int, make_edge: BlockEdgeFactory, num_classes: int = NUM_CLASSES,
                 path_drop: float = 0.0, cell_drop: float = 0.0, image_size: int = IMAGE_SIZE):
        super().__init__()
        check_macro(B, F)
        for name, rate in (("path_drop", path_drop), ("cell_drop", cell_drop)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise SpaceError(f"the number of classes must be an integer >= 2, got {num_classes!r}")
        self.B, self.F, self.num_classes, self.image_size = B, F, num_classes, image_size
        self.plan = block_plan(B, F, image_size)
        self.stem = nn.Sequential(nn.Conv2d(3, STEM_CHANNELS, 3, 1, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS))
        n = len(self.plan)
        self.blocks = nn.ModuleList(
            ResidualTreeBlock(spec, lambda e, c, k=spec.index: make_edge(k, e, c), path_drop,
                              cell_drop * (spec.index + 1) / n)
            for spec in self.plan)
        self.head = nn.Sequential(nn.BatchNorm2d(F), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(F, num_classes)
        init_conv_bn(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DerivedNet(TreeNet):
    """Every searchable edge is one op, taken from a Genotype."""

    def __init__(self, genotype: Genotype, num_classes: int = NUM_CLASSES, path_drop: float = 0.0,
                 cell_drop: float = 0.0, image_size: int = IMAGE_SIZE):
        self.genotype = genotype
        super().__init__(genotype.B, genotype.F, lambda b, e, c: OPS[genotype.ops[b][e]](c, 1),
                         num_classes, path_drop, cell_drop, image_size)
