"""The binary gate's alpha gradient is finite by construction and equals a float64 reference, also for
bf16 inputs (bf16 autocast) with values whose float32 products overflow, and inf * 0.  Each of these
cases gave a non-finite gradient before the gate computed in float64 with its guards."""
import math

import pytest
import torch

from models.operations import _BinaryGate

PAIR = (2, 5)


def gate_grad(grad_y: torch.Tensor, diff: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dalpha, dL/d active output) of one gate, through autograd, for dL/dy = grad_y and o_s0 - o_s1 = diff."""
    alpha = alpha.clone().requires_grad_()
    active = torch.zeros_like(diff, requires_grad=True)  # its value does not enter alpha's gradient
    _BinaryGate.apply(alpha, active, torch.tensor(PAIR), diff).backward(grad_y)
    return alpha.grad, active.grad


def reference(grad_y: torch.Tensor, diff: torch.Tensor, alpha: torch.Tensor) -> float:
    """p~_0 p~_1 <dL/dy, o_s0 - o_s1> in float64 from the same (bf16) values, terms with diff 0 left out."""
    g, o = grad_y.double().flatten().tolist(), diff.double().flatten().tolist()
    inner = math.fsum(a * b for a, b in zip(g, o) if b != 0)
    p = torch.softmax(alpha.double()[list(PAIR)], 0)
    return float(p[0] * p[1]) * inner


def bf16(values, shape=(2, 3, 4, 4)) -> torch.Tensor:
    """A bf16 tensor of `shape`: small random values, its first elements replaced by `values`."""
    t = torch.randn(shape, generator=torch.Generator().manual_seed(len(values))) * 1e-2
    t.view(-1)[:len(values)] = torch.tensor(values, dtype=torch.float64).float()
    return t.to(torch.bfloat16)


ALPHA = torch.tensor([0.0, 0.3, -0.2, 0.1, 0.0, 0.5, -1.0])


def check_pair(grad_alpha: torch.Tensor, expected: float) -> None:
    assert grad_alpha.dtype == ALPHA.dtype and torch.isfinite(grad_alpha).all()
    rest = [i for i in range(len(ALPHA)) if i not in PAIR]
    assert (grad_alpha[rest] == 0).all() and grad_alpha[PAIR[0]] == -grad_alpha[PAIR[1]]
    assert float(grad_alpha[PAIR[0]]) == pytest.approx(expected, rel=1e-6, abs=1e-30)


def test_ordinary_bf16_values_match_float64():
    g, o = bf16([]), bf16([0.5, -2.0])
    got, through = gate_grad(g, o, ALPHA)
    check_pair(got, reference(g, o, ALPHA))
    assert torch.equal(through, g)  # the active path's gradient passes unchanged


def test_a_product_past_float32s_range_whose_gradient_fits():
    """bf16(3e19)^2 = 9e38 > float32's 3.4e38: the old float32 product was inf (a nan alpha after Adam:
    inf / inf); times p~_0 p~_1 = 0.22 the gradient, 2e38, is a float32."""
    g, o = bf16([3e19]), bf16([3e19])
    got, _ = gate_grad(g, o, ALPHA)
    check_pair(got, reference(g, o, ALPHA))
    assert 1e38 < reference(g, o, ALPHA) < torch.finfo(torch.float32).max  # nothing was clamped


def test_inf_gradient_where_the_paths_agree_is_no_term():
    """dL/dy = inf on an element where o_s0 == o_s1: inf * 0 was nan; the gate does not change y there."""
    g, o = bf16([float("inf"), 0.25]), bf16([0.0, 4.0])
    got, _ = gate_grad(g, o, ALPHA)
    check_pair(got, reference(g, o, ALPHA))
    assert got[PAIR[0]] != 0


@pytest.mark.parametrize("g_values, o_values", [([float("nan")], [1.0]),      # nan dL/dy
                                                ([1.0], [float("nan")]),      # nan path output
                                                ([float("inf")], [2.0]),      # inf dL/dy on a path difference
                                                ([1.0, 1.0], [float("inf"), float("-inf")])])  # inf - inf
def test_non_finite_inputs_skip_the_edge(g_values, o_values):
    got, _ = gate_grad(bf16(g_values), bf16(o_values), ALPHA)
    assert torch.equal(got, torch.zeros_like(ALPHA))


def test_a_gradient_beyond_alphas_range_is_clamped_not_inf():
    g, o = bf16([1e30] * 8), bf16([1e30] * 8)  # inner product ~8e60: no float32 holds it
    got, _ = gate_grad(g, o, ALPHA)
    assert torch.isfinite(got).all() and got[PAIR[0]] == torch.finfo(torch.float32).max


def test_float64_model_keeps_float64():
    g, o = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    alpha = ALPHA.double()
    got, _ = gate_grad(g, o, alpha)
    assert got.dtype == torch.float64
    assert float(got[PAIR[0]]) == pytest.approx(reference(g, o, alpha), rel=1e-12)
