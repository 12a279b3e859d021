"""A bf16 search that cannot go non-finite.

The cause (bench/bf16_stress.py): on the CPU, oneDNN computed the weight gradient of the dilated depthwise
convolution (dil_sep_3x3) wrongly in bf16 channels_last, the dil_sep_3x3 weights blew up (~1e26), and
their outputs, as the gate's other path, made the gate gradient nan or inf.  models/tree/ops.py'
DilatedDepthwiseConv avoids that kernel; its weight gradient is checked here against float64.

The binary gate's alpha gradient is finite by construction: it equals a float64 reference for ordinary
bf16 inputs, and an input that leaves no usable estimate (a nan or inf in dL/dy or in the path
difference, inf * 0, products past float32's range) skips the edge (a zero gradient) instead of
returning nan or inf, which Adam turns into a nan alpha.  Each of these cases failed before the guard."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.tree.ops import SepConv
from models.mixed_op import _BinaryGate

PAIR = (2, 5)
ALPHA = torch.tensor([0.0, 0.3, -0.2, 0.1, 0.0, 0.5, -1.0])


def gate_grad(grad_y: torch.Tensor, diff: torch.Tensor, alpha: torch.Tensor = ALPHA
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dalpha, dL/d active output) of one gate through autograd, for dL/dy = grad_y, o_s0 - o_s1 = diff."""
    alpha = alpha.clone().requires_grad_()
    active = torch.zeros_like(diff, requires_grad=True)  # its value does not enter alpha's gradient
    _BinaryGate.apply(alpha, active, torch.tensor(PAIR), diff).backward(grad_y)
    return alpha.grad, active.grad


def reference(grad_y: torch.Tensor, diff: torch.Tensor, alpha: torch.Tensor = ALPHA) -> float:
    """p~_0 p~_1 <dL/dy, o_s0 - o_s1>, exactly summed in float64 from the same (bf16) values."""
    inner = math.fsum(a * b for a, b in zip(grad_y.double().flatten().tolist(), diff.double().flatten().tolist()))
    p = torch.softmax(alpha.double()[list(PAIR)], 0)
    return float(p[0] * p[1]) * inner


def bf16(values=(), shape=(2, 3, 4, 4), seed=0) -> torch.Tensor:
    """A bf16 tensor of `shape`: random values of ~0.01, its first elements replaced by `values`."""
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 1e-2
    t.view(-1)[:len(values)] = torch.tensor(values, dtype=torch.float64).float()
    return t.to(torch.bfloat16)


def check_pair(grad_alpha: torch.Tensor, alpha: torch.Tensor = ALPHA) -> float:
    """The gradient is finite, in alpha's dtype, opposite on the pair and zero elsewhere; returns its value."""
    assert grad_alpha.dtype == alpha.dtype and torch.isfinite(grad_alpha).all()
    rest = [i for i in range(len(alpha)) if i not in PAIR]
    assert (grad_alpha[rest] == 0).all() and grad_alpha[PAIR[0]] == -grad_alpha[PAIR[1]]
    return float(grad_alpha[PAIR[0]])


def test_ordinary_bf16_values_match_float64():
    g, o = bf16(seed=1), bf16([0.5, -2.0], seed=2)
    got, through = gate_grad(g, o)
    assert check_pair(got) == pytest.approx(reference(g, o), rel=1e-5)  # float32 accumulation of 96 terms
    assert torch.equal(through, g)  # the active path's gradient passes unchanged


@pytest.mark.parametrize("g_values, o_values", [
    ([float("nan")], [1.0]),                    # nan dL/dy
    ([1.0], [float("nan")]),                    # nan path output
    ([float("inf")], [2.0]),                    # inf dL/dy on a path difference
    ([float("inf")], [0.0]),                    # inf dL/dy where the paths agree: inf * 0
    ([1.0, 1.0], [float("inf"), float("-inf")]),  # the other path overflowed
    ([3e19], [3e19]),                           # bf16 3e19^2 = 9e38, past float32's 3.4e38
])
def test_an_input_without_a_usable_estimate_skips_the_edge(g_values, o_values):
    g = bf16(g_values, seed=1)
    got, through = gate_grad(g, bf16(o_values, seed=2))
    assert check_pair(got) == 0.0
    torch.testing.assert_close(through, g, rtol=0, atol=0, equal_nan=True)  # the path's own gradient: as it is


def test_float64_model_keeps_float64():
    g, o = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    alpha = ALPHA.double()
    got, _ = gate_grad(g, o, alpha)
    assert check_pair(got, alpha) == pytest.approx(reference(g, o, alpha), rel=1e-12)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_dilated_depthwise_weight_gradient_in_bf16_on_cpu(memory_format):
    """Through oneDNN's channels_last kernel this gradient was 100 % off at 32 pixels (1e24 in other draws)."""
    torch.manual_seed(0)
    conv = SepConv(16, 3, dilation=2)[2].to(memory_format=memory_format)
    assert isinstance(conv, nn.Conv2d) and set(conv.state_dict()) == {"weight"}  # checkpoints load as before
    x = torch.rand(4, 16, 32, 32).to(torch.bfloat16).contiguous(memory_format=memory_format)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    g = (torch.randn(y.shape) * 1e-2).to(torch.bfloat16).contiguous(memory_format=memory_format)
    y.backward(g)
    w = conv.weight.detach().to(torch.bfloat16).double().requires_grad_()
    F.conv2d(x.double(), w, None, 1, 2, 2, 16).backward(g.double())
    err = float((conv.weight.grad.double() - w.grad).abs().max() / w.grad.abs().max())
    assert err < 0.02, err  # bf16 rounding: ~0.3 %
