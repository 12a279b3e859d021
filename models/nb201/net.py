"""The NAS-Bench-201 network as the benchmark trained it, generic over what sits on a cell edge.

stem (conv 3x3, 3 -> C, BN) -> stage 1: N cells at C -> residual block (stride 2, C -> 2C) -> stage 2:
N cells at 2C -> residual block (2C -> 4C) -> stage 3: N cells at 4C -> BN-ReLU-global pool-linear.
The residual block is the benchmark's basic block: ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN, plus a
shortcut of 2x2 average pooling and a 1x1 conv.  Every op is ReLU-conv-BN (pre-activation), convs
without bias.  Checked: the all-``nor_conv_3x3`` cell at C=16, N=5 with 10 classes has 1,531,546
parameters, the benchmark's published maximum (tests/test_nb201.py).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .arch import EDGES, NODES, NUM_STAGES, PRIMITIVES, check_macro
from ..common import SpaceError

CellEdgeFactory = Callable[[int, int, int], nn.Module]  # (cell index, edge index, channels) -> module


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bn_affine: bool = True,
                 bn_track: bool = True):
        super().__init__(nn.ReLU(inplace=False),  # not in place: a cell node feeds several edges
                         nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout, affine=bn_affine, track_running_stats=bn_track))


class Zero(nn.Module):
    """``none``: the edge is absent.  x * 0 (not a new zeros tensor): same shape, dtype, device and memory
    format, and an exported graph keeps the edge's input as its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int, bn_affine: bool = True, bn_track: bool = True) -> nn.Module:
    """One candidate op of the space at ``channels`` (stride 1: cells never change the map size).
    bn_affine / bn_track: BatchNorm with learned scale and shift / running statistics (a derived network
    has both; the benchmark's own weight-sharing searches turn both off in the supernet)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, bn_affine, bn_track)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, bn_affine, bn_track)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    raise SpaceError(f"unknown NAS-Bench-201 op {name!r}; valid ops: {', '.join(PRIMITIVES)}")


class Cell(nn.Module):
    """Node k = sum over j < k of edge (k, j) applied to node j; the output is the last node."""

    def __init__(self, channels: int, make_edge: Callable[[int, int], nn.Module]):
        super().__init__()
        self.edges = nn.ModuleList(make_edge(e, channels) for e in range(len(EDGES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes, e = [x], 0
        for k in range(1, NODES):
            out = self.edges[e](nodes[0])
            for j in range(1, k):
                out = out + self.edges[e + j](nodes[j])
            nodes.append(out)
            e += k
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's basic block between stages: stride 2, channels cin -> cout."""

    def __init__(self, cin: int, cout: int, bn_affine: bool = True, bn_track: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, bn_affine, bn_track)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, bn_affine, bn_track)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def check_image_size(size: int) -> None:
    """Two stride-2 reductions (a 2x2 average-pool shortcut beside a stride-2 conv: they disagree on odd sizes):
    the size must halve exactly twice and leave at least 2x2 for the last stage."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 4:
        raise SpaceError(f"the image size must be a multiple of 4 and >= 8 (the network halves it twice), got {size!r}")


def stage_plan(C: int, N: int, image_size: int) -> list[tuple[str, int, int]]:
    """The layers between stem and head as data: ("cell" | "reduce", channels out, map size in)."""
    check_macro(C, N)
    check_image_size(image_size)
    plan, size = [], image_size
    for stage in range(NUM_STAGES):
        width = C * 2 ** stage
        if stage:
            plan.append(("reduce", width, size))
            size //= 2
        plan += [("cell", width, size)] * N
    return plan


class NB201Net(nn.Module):
    """The benchmark's network; ``make_edge(cell, edge, channels)`` puts a module on every cell edge."""

    def __init__(self, C: int, N: int, make_edge: CellEdgeFactory, num_classes: int = 10, image_size: int = 32,
                 bn_affine: bool = True, bn_track: bool = True):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise SpaceError(f"the number of classes must be an integer >= 2, got {num_classes!r}")
        self.C, self.N, self.num_classes, self.image_size = C, N, num_classes, image_size
        self.plan = stage_plan(C, N, image_size)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(C, affine=bn_affine, track_running_stats=bn_track))
        layers, cin, cells = [], C, 0
        for kind, width, _ in self.plan:
            if kind == "reduce":
                layers.append(ResidualReduction(cin, width, bn_affine, bn_track))
            else:
                layers.append(Cell(width, lambda e, c, k=cells: make_edge(k, e, c)))
                cells += 1
            cin = width
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(cin, affine=bn_affine, track_running_stats=bn_track),
                                  nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.head(x))
