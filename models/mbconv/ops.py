"""The modules of the MBConv space: conv-BN(-ReLU6) layers, the MBConv block, ``Zero`` and the op factory.

Layers follow the authors' released configs: convolutions without bias, padding k // 2 (odd kernels, so a
stride-s layer maps n to ceil(n / s)), weight -> BN -> activation, BN momentum 0.1 and eps 1e-3, ReLU6.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..common import EdgeShape, SpaceError

from .arch import BN_EPS, BN_MOMENTUM, PRIMITIVES, expand_of, kernel_of


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


class ConvBN(nn.Sequential):
    """conv (no bias: BN follows) + BN, no activation: an MBConv's linear projection."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__(OrderedDict(conv=nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                                     bn=batch_norm(cout)))


class ConvBNReLU6(ConvBN):
    """conv + BN + ReLU6: the stem, the head (feature mix) and an MBConv's expansion and depthwise layers."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, groups)
        self.add_module("act", nn.ReLU6(inplace=True))  # in place on BN's output: BN's backward does not read it


class MBConv(nn.Sequential):
    """Mobile inverted bottleneck: ``expand`` (1x1, in -> round(in * expand), omitted when expand == 1, as in
    the fixed MBConv1 block) -> ``depthwise`` (kxk at ``stride``) -> ``project`` (1x1 to out, linear: a ReLU
    on the narrow output would destroy information, MobileNetV2's argument).  The residual, where the block
    has one, is added by the network (models/mbconv/net.py), not here."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        mid = round(in_ch * expand)  # the authors' rounding (expand is an integer in this space anyway)
        layers = OrderedDict()
        if expand != 1:
            layers["expand"] = ConvBNReLU6(in_ch, mid, 1)
        layers["depthwise"] = ConvBNReLU6(mid, mid, kernel, stride, groups=mid)
        layers["project"] = ConvBN(mid, out_ch, 1)
        super().__init__(layers)
        # not self.expand: that names the expansion layer
        self.in_ch, self.out_ch, self.kernel, self.stride, self.expand_ratio = in_ch, out_ch, kernel, stride, expand


class Zero(nn.Module):
    """``zero`` in a searchable block: the op contributes nothing, so the block (op + residual) passes its
    input on.  Only in blocks that keep their shape (``make_op`` refuses others): there the zeros have the
    input's shape, and a supernet's MixedOp can weigh "skip this block" against the MBConvs.  x * 0 (not a
    new zeros tensor): same shape, dtype, device and memory format, and an exported graph keeps the input as
    its input.  A derived network does not run it at all (``net.build_derived`` puts a ``Skip`` there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, shape: EdgeShape) -> nn.Module:
    """Candidate ``name`` for a searchable block of ``shape``."""
    if name not in PRIMITIVES:
        raise SpaceError(f"unknown MBConv op {name!r}; valid ops: {', '.join(PRIMITIVES)}")
    if name == "zero":
        if not shape.keeps_shape:
            raise SpaceError(f"'zero' needs a block that keeps its shape, this one maps {shape.in_channels} -> "
                             f"{shape.out_channels} channels at stride {shape.stride}")
        return Zero()
    return MBConv(shape.in_channels, shape.out_channels, kernel_of(name), shape.stride, expand_of(name))
