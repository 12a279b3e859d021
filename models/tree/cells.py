"""The tree cell and the residual bottleneck block, generic over what sits on an edge."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import ChannelShuffle, bn_act_conv
from .arch import CELL_TREES, EDGES_PER_CELL, BlockSpec

EdgeFactory = Callable[[int, int], nn.Module]  # (edge index, channels) -> module


def _keep(rate: float, training: bool) -> bool:
    """One Bernoulli draw per batch from torch's global RNG (seeded, checkpointed)."""
    return not (training and rate > 0 and float(torch.rand(())) < rate)


def _sum(terms: list, like: torch.Tensor) -> torch.Tensor:
    """Sum of the kept branches (None = dropped); zeros shaped like ``like`` when all were dropped."""
    out = None
    for t in terms:
        if t is None:
            continue
        out = t if out is None else out + t
    return torch.zeros_like(like) if out is None else out


class TreeCell(nn.Module):
    """Root edge (BN-ReLU-grouped 3x3 conv w->2w, shuffle) -> split into halves of w channels ->
    per half a copy/add tree of searchable edges, then branch BN + residual -> sum of halves.

    path_drop: each branch of the split and copy/add nodes is dropped (zeros, not computed) with this
    probability per batch in training; kept branches are scaled by 1/(1-rate) so that evaluation
    (and an exported graph) is the plain network.
    """

    def __init__(self, width: int, stride: int, make_edge: EdgeFactory, path_drop: float = 0.0):
        super().__init__()
        self.width, self.stride, self.path_drop = width, stride, path_drop
        self.root = nn.Sequential(bn_act_conv(width, 2 * width, 3, stride, groups=2), ChannelShuffle(2))
        self.edges = nn.ModuleList(make_edge(i, width) for i in range(EDGES_PER_CELL))
        self.branch_bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in CELL_TREES)

    def _branch(self, fn, x, *args):
        if not _keep(self.path_drop, self.training):
            return None
        y = fn(x, *args)
        return y / (1.0 - self.path_drop) if self.training and self.path_drop > 0 else y

    def _path(self, x: torch.Tensor, edge: int, child) -> torch.Tensor:
        y = self.edges[edge](x)
        return self._tree(y, child) if child else y

    def _tree(self, x: torch.Tensor, tree) -> torch.Tensor:
        return _sum([self._branch(self._path, x, edge, child) for edge, child in tree], x)

    def _half(self, h: torch.Tensor, tree, bn: nn.Module) -> torch.Tensor:
        return bn(self._tree(h, tree)) + h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.root(x)
        halves = x.chunk(len(CELL_TREES), dim=1)
        outs = [self._branch(self._half, h, t, bn) for h, t, bn in zip(halves, CELL_TREES, self.branch_bns)]
        return _sum(outs, halves[0])


class ResidualTreeBlock(nn.Module):
    """shortcut (identity / 2x2 avg pool, zero-padded channels) + finalBN(out_bottle(cell(in_bottle(x))))."""

    def __init__(self, spec: BlockSpec, make_edge: EdgeFactory, path_drop: float = 0.0, cell_drop: float = 0.0):
        super().__init__()
        self.spec, self.cell_drop = spec, cell_drop
        self.shortcut = nn.AvgPool2d(2, 2) if spec.stride == 2 else nn.Identity()
        self.in_bottle = bn_act_conv(spec.in_channels, spec.width, 1, act=False)
        self.cell = TreeCell(spec.width, spec.stride, make_edge, path_drop)
        self.out_bottle = bn_act_conv(spec.width, spec.out_channels, 1)
        self.final_bn = nn.BatchNorm2d(spec.out_channels)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_bn(self.out_bottle(self.cell(self.in_bottle(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(x)
        extra = self.spec.out_channels - self.spec.in_channels
        if extra:
            s = F.pad(s, (0, 0, 0, 0, 0, extra))
        if not _keep(self.cell_drop, self.training):
            return s  # cell dropped: the block is its (padded) shortcut
        r = self.residual(x)
        if self.training and self.cell_drop > 0:
            r = r / (1.0 - self.cell_drop)
        return s + r
