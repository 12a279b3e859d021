"""The binary-gated MixedOp of a searchable edge, its gate modes and the path sampling (models/supernet.py
assigns the gates); generic over the spaces: the candidates are whatever modules a space builds."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- MixedOp
GATE_MODES = ("uniform", "sample", "two", "full", "argmax", "fixed")
STOCHASTIC_MODES = ("uniform", "sample", "two", "full")


def sample_paths(alphas: torch.Tensor, mode: str, uniform_over: Sequence[int] | None = None,
                 mask: torch.Tensor | None = None) -> tuple[list[tuple[int, ...]], list[int]]:
    """Sample gates for E edges at once.

    alphas: (E, N) architecture logits (any device; read once, on the CPU, with torch's global RNG
    so that seeding and checkpointed RNG states reproduce the draw).
    Returns (sampled index tuples, active index) per edge:
      uniform: one path uniformly (warm-up), among ``uniform_over`` when given; sample: one path ~ p;
      two: two distinct paths ~ p, the active one by the softmax over their two alphas;
      full: all N paths, the active one ~ p.
    mask: (E, N) bool, the candidates each edge may take (None: all); the others are never drawn.
    """
    a = alphas.detach().float().cpu()
    E, N = a.shape
    if mask is not None and not bool(mask.all()):
        return _sample_masked(a, mode, uniform_over, mask.cpu())
    if mode == "uniform":
        pool = list(range(N)) if uniform_over is None else list(uniform_over)
        idx = [pool[i] for i in torch.randint(len(pool), (E,)).tolist()]
        return [(i,) for i in idx], idx
    probs = torch.softmax(a, dim=1)
    if mode == "sample":
        idx = torch.multinomial(probs, 1).squeeze(1).tolist()
        return [(i,) for i in idx], idx
    if mode == "two":
        if N < 2:
            idx = [0] * E
            return [(0,) for _ in range(E)], idx
        pair = torch.multinomial(probs, 2, replacement=False)  # (E, 2)
        p_pair = torch.softmax(a.gather(1, pair), dim=1)
        pick = torch.multinomial(p_pair, 1).squeeze(1)
        active = pair.gather(1, pick[:, None]).squeeze(1)
        return [tuple(r) for r in pair.tolist()], active.tolist()
    if mode == "full":
        idx = torch.multinomial(probs, 1).squeeze(1).tolist()
        return [tuple(range(N)) for _ in range(E)], idx
    raise ValueError(f"mode {mode!r} does not sample; stochastic modes: {STOCHASTIC_MODES}")


def _sample_masked(a: torch.Tensor, mode: str, uniform_over: Sequence[int] | None, mask: torch.Tensor
                   ) -> tuple[list[tuple[int, ...]], list[int]]:
    """sample_paths where some edges may not take some candidates (a separate path, so that spaces without
    a mask draw exactly the random numbers they always drew)."""
    E, N = a.shape
    allowed = [tuple(i for i in range(N) if mask[e, i]) for e in range(E)]
    if mode == "uniform":
        prefer = set(range(N) if uniform_over is None else uniform_over)
        pools = [tuple(i for i in ok if i in prefer) or ok for ok in allowed]  # none preferred: any allowed
        idx = [pool[int(u * len(pool))] for pool, u in zip(pools, torch.rand(E).tolist())]
        return [(i,) for i in idx], idx
    probs = torch.softmax(a.masked_fill(~mask, float("-inf")), dim=1)
    if mode == "sample":
        idx = torch.multinomial(probs, 1).squeeze(1).tolist()
        return [(i,) for i in idx], idx
    if mode == "two":
        sampled, active = [], []
        for e in range(E):
            if len(allowed[e]) < 2:
                sampled.append(allowed[e])
                active.append(allowed[e][0])
                continue
            pair = torch.multinomial(probs[e], 2, replacement=False)
            p_pair = torch.softmax(a[e, pair], dim=0)
            sampled.append(tuple(pair.tolist()))
            active.append(int(pair[torch.multinomial(p_pair, 1)]))
        return sampled, active
    if mode == "full":
        idx = torch.multinomial(probs, 1).squeeze(1).tolist()
        return list(allowed), idx
    raise ValueError(f"mode {mode!r} does not sample; stochastic modes: {STOCHASTIC_MODES}")


class _BinaryGate(torch.autograd.Function):
    """Returns the active path's output; in backward adds dL/dalpha of the binary gates ("two" mode).

    With g the one-hot gate over the sampled pair S, p~ = softmax(alpha_S) and o_j the path outputs:
        dL/dg_j = <dL/dy, o_j>,   dL/dalpha_i = sum_j dL/dg_j p~_j (delta_ij - p~_i),
    which for a pair is dL/dalpha_s0 = -dL/dalpha_s1 = p~_0 p~_1 <dL/dy, o_s0 - o_s1>: only the
    difference o_s0 - o_s1 is kept, one extra feature map per edge whatever N is.
    """

    @staticmethod
    def forward(ctx, alpha, active_out, pair, diff):
        ctx.save_for_backward(alpha, pair, diff)
        return active_out.view_as(active_out)

    @staticmethod
    def backward(ctx, grad_y):
        alpha, pair, diff = ctx.saved_tensors
        # accumulate in at least float32 (half-precision activations under AMP), in float64 for a
        # float64 model
        acc = torch.promote_types(alpha.dtype, torch.float32)
        p = torch.softmax(alpha.detach()[pair].to(acc), dim=0)
        inner = (grad_y.to(acc) * diff.to(acc)).sum()
        # Finite by construction (for a finite alpha): a nan or inf here means that dL/dy or a path output
        # was not finite (inf * 0 included) or that their products overflowed (|values| ~1e19, where the
        # tiny bf16 search has |dL/dy| <= 0.01, |o_s0 - o_s1| <= 7): no usable estimate, so the edge skips
        # this step, as GradScaler skips a step whose gradients are not finite.  torch.where: no host sync.
        d = torch.where(torch.isfinite(inner), p[0] * p[1] * inner, 0.0)
        grad_alpha = torch.zeros_like(alpha, dtype=acc)
        grad_alpha[pair[0]] = d
        grad_alpha[pair[1]] = -d
        return grad_alpha.to(alpha.dtype), grad_y, None, None


class MixedOp(nn.Module):
    """A searchable edge: N candidate ops and binary gates.  It owns no architecture parameter: it reads
    row ``decision`` of the supernet's alpha (models/supernet.py), which assigns, before every forward,
    the gate mode and the paths of that decision (``set_paths``).  Edges that share a decision (the
    NAS-Bench-201 cell's edges in all 3N cells) run the same paths and their gate gradients add up in
    that row.  Modes (GATE_MODES): "fixed" and "argmax" run one given op; "uniform" and "sample" run the
    active path only, with no gradient to alpha; "two" also runs the other sampled path without a graph
    for the gate gradient; "full" keeps all N paths in the graph.
    """

    def __init__(self, ops: Sequence[nn.Module | None], decision: int):
        super().__init__()
        # by candidate index; None: a candidate the space does not allow on this edge (never sampled here)
        self.ops = Candidates({str(i): op for i, op in enumerate(ops) if op is not None})
        self.num_candidates = len(ops)
        self.decision = decision
        self.mode: str | None = None
        self.sampled: tuple[int, ...] | None = None  # paths of the last forward
        self.active: int | None = None
        self._alpha: torch.Tensor | None = None  # the decision's row of alpha ("two" / "full")
        self._index: torch.Tensor | None = None

    def set_paths(self, mode: str, sampled: Sequence[int], active: int, alpha: torch.Tensor | None = None,
                  index: torch.Tensor | None = None) -> None:
        """The next forward's gates: ``mode``, the sampled paths, the active one, and for "two" / "full"
        the decision's alpha row (a view of the supernet's alpha, so its gradient lands there) and
        ``sampled`` as a tensor on alpha's device (views of one tensor: no host->device copy per edge)."""
        # plain __dict__ writes: nn.Module.__setattr__ costs ~1 us per attribute, times 648 edges a step
        d = self.__dict__
        d["mode"], d["sampled"], d["active"], d["_alpha"], d["_index"] = mode, tuple(sampled), int(active), alpha, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.mode
        if mode is None:
            raise RuntimeError("MixedOp has no paths: run it inside its supernet (SuperNet assigns the gates)")
        active_out = self.ops[self.active](x)
        if mode in ("fixed", "argmax", "uniform", "sample") or len(self.sampled) < 2:
            return active_out  # alpha gets no gradient: evaluation, REINFORCE, warm-up, or a single candidate
        if mode == "full":
            return self._full(x, active_out)
        other = self.sampled[1] if self.sampled[0] == self.active else self.sampled[0]
        with torch.no_grad():  # the other path is needed only for the gate gradient: no graph kept
            o_other = self.ops[other](x)
            diff = active_out.detach() - o_other if self.sampled[0] == self.active else o_other - active_out.detach()
        pair = self._index if self._index is not None else torch.tensor(self.sampled, device=self._alpha.device)
        return _BinaryGate.apply(self._alpha, active_out, pair, diff)

    def _full(self, x: torch.Tensor, active_out: torch.Tensor) -> torch.Tensor:
        """All N paths run with autograd and stay in the graph (memory grows with N, as in the
        official "full" mode): y = sum_j g_j o_j with g the one-hot gate in value and d softmax(alpha)
        in gradient, so dL/dalpha follows the same formula over all N paths."""
        p = torch.softmax(self._alpha, dim=0)  # (a masked row: 0 where the candidate is not allowed)
        gate = (p - p.detach()) + F.one_hot(torch.tensor(self.active), len(p)).to(p)  # value exactly one-hot
        out = None
        for key, op in self.ops.items():
            j = int(key)
            term = gate[j] * (active_out if j == self.active else op(x))
            out = term if out is None else out + term
        return out

    def extra_repr(self) -> str:
        return f"decision={self.decision}, candidates={len(self.ops)} of {self.num_candidates}"


class Candidates(nn.ModuleDict):
    """A MixedOp's ops keyed by candidate index: the state dict names them "ops.<i>" as a ModuleList would,
    and an edge holds only the candidates its space allows there; ``ops[i]`` takes an int."""

    def __getitem__(self, i: int | str) -> nn.Module:
        return super().__getitem__(str(i))

    def __iter__(self):
        """The ops, as a ModuleList iterates (``items()``: with their candidate index, as a string)."""
        return iter(self._modules.values())
