"""The MBConv network, generic over what sits in a searchable block, and the network of a genotype.

stem (conv 3x3, BN, ReLU6) -> first (fixed MBConv1 3x3) -> blocks.0 .. blocks.{n-1} (searchable, residual
where the block keeps its shape) -> head (conv 1x1, BN, ReLU6) -> global average pool -> dropout ->
classifier (linear).  ``make_block(decision, shape)`` builds what sits in block ``decision``: one op for a
derived network, a MixedOp over the candidates for a supernet; the network never looks at it, so both
share module names (``blocks.<i>.op...``) and a supernet's weights map onto a derived network by name.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from ..common import EdgeShape, SpaceError
from ..weights import init_conv_bn

from .arch import FIRST_EXPAND, FIRST_KERNEL, STEM_KERNEL, MBConvGenotype, block_plan, fixed_layers
from .ops import ConvBNReLU6, MBConv, make_op

BlockFactory = Callable[[int, EdgeShape], nn.Module]  # (decision, shape) -> module in that block


class Block(nn.Module):
    """A searchable block: ``op(x) + x`` when the block keeps its shape, else ``op(x)``.  ``residual`` is
    fixed when the network is built (a Python bool, not data-dependent: export traces one path)."""

    def __init__(self, op: nn.Module, residual: bool):
        super().__init__()
        self.op, self.residual = op, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        return y + x if self.residual else y


class Skip(nn.Identity):
    """A derived network's ``zero`` block: ``zero`` gives 0 and the block adds its input, so the block is
    its input -- without the multiply and add (and with no weights, so no names to map)."""


class MBConvNet(nn.Module):
    """See the module docstring.  ``image_size`` picks the ImageNet or the CIFAR-size strides
    (models/mbconv/arch.py: ``stage_strides``); ``dropout`` is applied to the pooled features."""

    def __init__(self, stem: int, first: int, widths: Sequence[int], depths: Sequence[int], head: int,
                 make_block: BlockFactory, num_classes: int = 1000, image_size: int = 224, dropout: float = 0.0):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise SpaceError(f"the number of classes must be an integer >= 2, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise SpaceError(f"dropout must be in [0, 1), got {dropout!r}")
        self.plan = block_plan(stem, first, widths, depths, image_size)
        self.fixed = fixed_layers(stem, first, widths, head, image_size)
        self.num_classes, self.image_size = num_classes, image_size
        self.stem = ConvBNReLU6(3, stem, STEM_KERNEL, self.fixed["stem"].stride)
        self.first = MBConv(stem, first, FIRST_KERNEL, 1, FIRST_EXPAND)
        self.blocks = nn.ModuleList(Block(make_block(b.index, b.shape), b.shape.keeps_shape) for b in self.plan)
        self.head = ConvBNReLU6(widths[-1], head, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Convs and BN: ``init_conv_bn`` (he_fout, as the authors'); linear: N(0, 0.01), bias 0 (small logits at
        the start, as torchvision's MobileNetV2).  Applies to what ``make_block`` built too: one rule for the whole
        net."""
        init_conv_bn(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The map before pooling (N, head, s, s)."""
        x = self.first(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean over the spatial axes: no batch size or map size baked into a reshape
        return self.classifier(self.dropout(self.features(x).mean((2, 3))))


def build_derived(genotype: MBConvGenotype, num_classes: int = 1000, image_size: int = 224,
                  dropout: float = 0.0) -> MBConvNet:
    """The network of ``genotype``: every searchable block its op, a ``zero`` block a ``Skip``."""
    ops = genotype.ops
    net = MBConvNet(genotype.stem, genotype.first, genotype.widths, genotype.depths, genotype.head,
                    lambda d, shape: make_op(ops[d], shape), num_classes, image_size, dropout)
    for b in net.plan:
        if ops[b.index] == "zero":  # Zero() + residual is the input: replace the block by what it computes
            net.blocks[b.index] = Skip()
    net.genotype = genotype
    return net
