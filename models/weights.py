"""Weight initialization that networks of several spaces share."""
from __future__ import annotations

import torch.nn as nn


def init_conv_bn(module: nn.Module) -> None:
    """Every convolution below ``module``: Kaiming normal over fan-out (the authors' "he_fout"; for a depthwise
    convolution fan-out is k*k*C, as theirs); every BatchNorm: weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
