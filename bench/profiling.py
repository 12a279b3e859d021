"""Measuring what a search step costs: bytes autograd saves for backward, and the steps themselves.

Shared by bench/memory.py, bench/step_cost.py and tests/test_memory.py, so that the test asserts on
exactly what the benchmark prints.

Memory is counted with ``torch.autograd.graph.saved_tensors_hooks``: every tensor that autograd
(or a custom Function's ``save_for_backward``) keeps for the backward pass goes through the pack
hook.  Tensors are deduplicated by storage (a view, an in-place result or a tensor saved by two
nodes occupies memory once), and each storage counts its full ``nbytes`` once.  The model's own
parameters and buffers are excluded by default: they exist whether or not a step runs, and a
supernet holds N times more of them by design; the claim is about the memory a step adds.
"""
from __future__ import annotations

import contextlib
import random
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import PRIMITIVES, Genotype, build_net, build_supernet
from models.tree.arch import EDGES_PER_CELL, NUM_STAGES
from utils import train as train_utils


class SavedBytes:
    """Context manager around a forward: ``with SavedBytes(exclude=model) as sb: loss = ...``; then
    ``sb.bytes`` is the memory held for backward (unique storages, excluded ones left out)."""

    def __init__(self, exclude: nn.Module | Iterable[torch.Tensor] | None = None):
        if isinstance(exclude, nn.Module):
            exclude = list(exclude.parameters()) + list(exclude.buffers())
        self._skip = {_storage_key(t) for t in (exclude or [])}
        self.storages: dict[tuple, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self._skip:
            self.storages[key] = t.untyped_storage().nbytes()
        return t  # keep the tensor itself: the count must not change what autograd holds

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> "SavedBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _storage_key(t: torch.Tensor) -> tuple:
    # A saved tensor stays alive until backward, so its storage address cannot be reused by
    # another saved tensor in the meantime: (device, address) identifies it.
    return (t.device, t.untyped_storage().data_ptr())


# ---------------------------------------------------------------- pinning a supernet's sampling
@torch.no_grad()
def pin_alphas(supernet, active: Iterable[str] | str, second: Iterable[str] | str | None = None,
               gap: float = 50.0) -> None:
    """Set every edge's alphas so that sampling is (to float precision) deterministic: "sample"
    draws ``active`` and "two" draws the pair {active, second} with ``active`` as the active path.

    The supernet's own forward (with its sampling overhead) then runs known ops, so it can be
    compared with the derived network of the same ops.  ``active``/``second``: one op name for all
    edges, or one per decision (tree space: per edge, in ``supernet.mixed_ops()`` order).  With ``second=None`` the other paths
    stay equal, so "two" draws the second path uniformly from the rest (a realistic pair).
    """
    n, cands = supernet.num_decisions, supernet.candidates
    act = [active] * n if isinstance(active, str) else list(active)
    sec = [second] * n if isinstance(second, str) or second is None else list(second)
    supernet.alpha.zero_()
    for row, a, s in zip(supernet.alpha, act, sec):
        if s is not None:
            row[cands.index(s)] = gap
        row[cands.index(a)] = 2 * gap if s is not None else gap


def genotype_ops(genotype) -> list[str]:
    """A genotype's ops in ``supernet.mixed_ops()`` order (block * 12 + edge)."""
    return [op for block in genotype.ops for op in block]


# ---------------------------------------------------------------- the steps being compared
def arch_forward(supernet, x: torch.Tensor, y: torch.Tensor, mode: str = "two") -> torch.Tensor:
    """The architecture step's forward as the search runs it: train mode, binary gates, weights frozen."""
    supernet.train()
    with supernet.gate_mode(mode), train_utils.frozen(supernet.weight_parameters()):
        return F.cross_entropy(supernet(x), y)


def weight_forward(model, x: torch.Tensor, y: torch.Tensor, mode: str | None = "sample") -> torch.Tensor:
    """A weight step's forward: train mode, weights require grad (supernet: one sampled path per edge)."""
    model.train()
    ctx = model.gate_mode(mode) if mode is not None and hasattr(model, "gate_mode") else contextlib.nullcontext()
    with ctx:
        return F.cross_entropy(model(x), y)


def saved_bytes(forward, model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str | None) -> int:
    """Bytes saved for backward by ``forward(model, x, y, mode)``; runs the backward too (so the graph
    is complete and freed), and clears the gradients it made."""
    with SavedBytes(exclude=model) as sb:
        loss = forward(model, x, y, mode=mode)
    loss.backward()
    for p in model.parameters():
        p.grad = None
    return sb.bytes


# ---------------------------------------------------------------- the memory figures
def random_genotype(B: int, F: int, seed: int, ops: Iterable[str] | None = None):
    """A seeded random genotype over ``ops`` (default: all candidates), each op used at least once."""
    ops = list(PRIMITIVES if ops is None else ops)
    rng = random.Random(seed)
    n = NUM_STAGES * B * EDGES_PER_CELL
    flat = ops + [rng.choice(ops) for _ in range(n - len(ops))]
    rng.shuffle(flat)
    return Genotype(B, F, [flat[k:k + EDGES_PER_CELL] for k in range(0, n, EDGES_PER_CELL)])


def memory_figures(B: int, F: int, batch: int, seed: int = 0, pair: tuple[str, str] = ("sep_3x3", "sep_5x5")
                   ) -> dict[str, int]:
    """Bytes saved for backward (model state excluded) by the steps the search makes, on CPU.

    * ``two_7`` / ``two_2``, ``full_7`` / ``full_2``: architecture steps of a 7- and a 2-candidate
      supernet, pinned to the same ops (``pair``: active, second) so that only N differs.
    * ``derived_pair``: a training step of the derived net those steps ran (all edges = pair[0]).
    * ``arch``, ``weight``, ``derived``: a random genotype over all 7 ops as the active paths
      (second paths of the arch step drawn uniformly from the rest), the supernet's weight step
      ("sample") and the derived network's training step.
    """
    torch.manual_seed(seed)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    out: dict[str, int] = {}
    for n, cands in ((7, PRIMITIVES), (2, pair)):
        net = build_supernet(B, F, cands)
        for mode in ("two", "full"):
            pin_alphas(net, pair[0], pair[1])
            out[f"{mode}_{n}"] = saved_bytes(arch_forward, net, x, y, mode=mode)
            assert set(genotype_ops(net.active_genotype())) == {pair[0]}, "pinning failed"
    pair_genotype = net.active_genotype()
    out["derived_pair"] = saved_bytes(weight_forward, build_net(pair_genotype), x, y, mode=None)

    g = random_genotype(B, F, seed)
    net = build_supernet(B, F)
    pin_alphas(net, genotype_ops(g))
    out["arch"] = saved_bytes(arch_forward, net, x, y, mode="two")
    assert net.active_genotype() == g, "pinning failed"
    out["weight"] = saved_bytes(weight_forward, net, x, y, mode="sample")
    assert net.active_genotype() == g, "pinning failed"
    derived = build_net(g)
    derived.load_state_dict(net.derived_state_dict(g))
    out["derived"] = saved_bytes(weight_forward, derived, x, y, mode=None)
    return out


def memory_ratios(b: dict[str, int]) -> dict[str, float]:
    return {
        "mem_two_7_over_2": b["two_7"] / b["two_2"],
        "mem_full_7_over_2": b["full_7"] / b["full_2"],
        "mem_arch_over_derived": b["arch"] / b["derived"],
        "mem_weight_step_over_derived": b["weight"] / b["derived"],
        "mem_full_7_over_derived": b["full_7"] / b["derived_pair"],
    }
