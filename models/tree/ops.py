"""The tree space's candidate operations and fixed layers.

All layers use the pre-activation order BN -> ReLU -> weight of the authors' tree networks.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from .arch import PRIMITIVES, SpaceError


# ---------------------------------------------------------------- candidate ops
class DilatedDepthwiseConv(nn.Conv2d):
    """nn.Conv2d (same parameters and state_dict) that trains right in bf16 on the CPU.

    There oneDNN (torch 2.14.1, oneDNN 3.12, AVX512-BF16/AMX CPU) computes the *weight* gradient of a
    dilated depthwise convolution wrongly when its tensors are channels_last, from 28 pixels up: 60-100 %
    error to 1e36 garbage, every call (tests/test_bf16_search.py); the output and the input gradient
    are right.  The dil_sep_3x3 weights then blew up, and a search's alpha or loss went nan.  With
    contiguous (NCHW) input and weight the gradient is right, so a bf16 CPU training step uses those."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bf16 = x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                             and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        if x.device.type == "cpu" and bf16 and self.weight.requires_grad and torch.is_grad_enabled():
            # clone, not contiguous(): a (C, 1, k, k) channels_last weight already counts as contiguous
            weight = self.weight.clone(memory_format=torch.contiguous_format)
            return self._conv_forward(x.contiguous(), weight, self.bias)
        return super().forward(x)


class SepConv(nn.Sequential):
    """BN -> ReLU -> depthwise kxk (optionally dilated) -> pointwise 1x1, no biases."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, dilation: int = 1):
        pad = dilation * (kernel // 2)
        depthwise = DilatedDepthwiseConv if dilation > 1 else nn.Conv2d
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            depthwise(channels, channels, kernel, stride, pad, dilation=dilation, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
        )


def _identity(channels: int, stride: int) -> nn.Module:
    if stride != 1:
        raise ValueError("identity is only defined for stride 1")
    return nn.Identity()


# name -> factory(channels, stride).  Keys are exactly space.PRIMITIVES (a test checks it).
OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "sep_3x3": lambda c, s: SepConv(c, 3, s),
    "sep_5x5": lambda c, s: SepConv(c, 5, s),
    "sep_7x7": lambda c, s: SepConv(c, 7, s),
    "dil_sep_3x3": lambda c, s: SepConv(c, 3, s, dilation=2),
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, s, 1, count_include_pad=False),
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, s, 1),
    "identity": _identity,
}


def check_candidates(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a candidate list (order kept, duplicates refused)."""
    names = tuple(names)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise SpaceError(f"unknown candidate op(s) {', '.join(unknown)}; valid ops: {', '.join(PRIMITIVES)}")
    if len(set(names)) != len(names):
        raise SpaceError(f"candidate list has duplicates: {', '.join(names)}")
    if not names:
        raise SpaceError("the candidate list is empty")
    return names


# ---------------------------------------------------------------- fixed layers
def bn_act_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.BatchNorm2d(cin)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False))
    return nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # unflatten/flatten instead of view(n, ...): no batch size baked into an exported graph
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)
