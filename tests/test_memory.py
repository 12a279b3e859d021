"""The memory claim (docs/design.md), small: what bench/memory.py measures, asserted at B=1 F=64."""
import pytest
import torch

from bench.profiling import SavedBytes, memory_figures, memory_ratios


def test_saved_bytes_dedupes_storages():
    a = torch.randn(100, requires_grad=True)
    c = torch.randn(50, requires_grad=True)
    with SavedBytes() as sb:
        u = a.view(10, 10) * a.view(10, 10).t()  # saves two views of a: one storage, counted once
        v = torch.sin(c)  # saves c
    assert sb.bytes == 100 * 4 + 50 * 4
    with SavedBytes(exclude=[a]) as sb2:
        w = a[:10] * c[:10]  # a's storage is excluded (as a model's parameters are)
    assert sb2.bytes == 50 * 4
    (u.sum() + v.sum() + w.sum()).backward()  # the hooks did not change what backward gets
    expected = torch.cos(c.detach())
    expected[:10] += a.detach()[:10]
    torch.testing.assert_close(c.grad, expected)


@pytest.fixture(scope="module")
def ratios():
    return memory_ratios(memory_figures(B=1, F=64, batch=16, seed=0))


def test_arch_step_memory_does_not_grow_with_candidates(ratios):
    assert ratios["mem_two_7_over_2"] <= 1.05


def test_arch_step_memory_close_to_derived(ratios):
    assert ratios["mem_arch_over_derived"] <= 2.2
    assert ratios["mem_weight_step_over_derived"] <= 1.05


def test_full_mode_grows_with_candidates(ratios):
    # the counter sees N: keeping all 7 paths' outputs costs clearly more than keeping 2
    assert ratios["mem_full_7_over_2"] > 1.5
