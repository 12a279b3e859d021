"""The supernet of any search space: the space's network with a MixedOp on every searchable edge, and
the architecture parameter alpha, one (decisions x candidates) tensor (models/search_space.py says why).

Gate modes (``gate_mode`` context manager; GATE_MODES in models/mixed_op.py) are the supernet's
state, assigned to every MixedOp before each forward: stochastic modes sample every decision at once
(one read of alpha, torch's global CPU RNG, so seeds and checkpointed RNG states reproduce every draw),
and all edges of a decision run the same paths.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from .mixed_op import GATE_MODES, STOCHASTIC_MODES, MixedOp, sample_paths
from .search_space import SearchSpace
from .common import SpaceError


# "standard": the derived network's BatchNorm (scale, shift, running statistics); "plain": no affine
# parameters and batch statistics also in eval mode, as the NAS-Bench-201 authors' weight-sharing searches
# run their supernets: a BN layer is shared by every path through it, and neither a learned scale nor
# running statistics of one path's activations then mislead another path.
BN_KINDS = ("standard", "plain")
# which ops a warm-up (uniform gates) trains: "all" candidates, or only the "weighted" ones -- an op without
# weights has nothing to learn, and each sampled parameter-free op is a step the convolutions miss -- or the
# candidates named in a comma-separated list (e.g. the weighted ops and skip_connect: the weights downstream of
# an identity edge then learn to work with it too; docs/results.md measures it on NAS-Bench-201)


def warmup_pool(warmup_ops: str, candidates: Sequence[str], parameter_free: Sequence[str]) -> list[int] | None:
    """The candidate indices a warm-up draws from (None: all) for ``warmup_ops``: all, weighted or OP,OP,..."""
    if warmup_ops == "all":
        return None
    if warmup_ops == "weighted":
        return [i for i, n in enumerate(candidates) if n not in parameter_free] or None
    names = [n.strip() for n in str(warmup_ops).split(",")]
    if any(n not in candidates for n in names) or len(set(names)) != len(names):
        raise SpaceError(f"unknown warm-up ops {warmup_ops!r}: give all, weighted, or distinct candidates separated by "
                         f"commas ({', '.join(candidates)})")
    return [list(candidates).index(n) for n in names]


def _plain_batchnorm(module: nn.Module) -> None:
    """Replace every BatchNorm2d below ``module`` by one without affine parameters or running statistics."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                parent._modules[name] = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                                       affine=False, track_running_stats=False)


class SuperNet(nn.Module):
    """``space``'s network of ``macro`` size, every searchable edge a MixedOp over ``candidates``."""

    def __init__(self, space: SearchSpace, macro: dict | None, candidates: Sequence[str] | None = None,
                 num_classes: int = 10, image_size: int = 32, bn: str = "standard", warmup_ops: str = "all"):
        super().__init__()
        if bn not in BN_KINDS:
            raise SpaceError(f"unknown supernet BatchNorm {bn!r}; choose one of {', '.join(BN_KINDS)}")
        self.bn = bn
        self.space = space
        self.macro = space.macro(macro)
        self.candidates = space.check_candidates(space.primitives if candidates is None else candidates)
        self.num_classes, self.image_size = num_classes, image_size
        # "uniform" gates (warm-up) draw from these candidates only (None: all)
        self.warmup_ops = warmup_ops
        self.uniform_over = warmup_pool(warmup_ops, self.candidates, space.parameter_free)
        names = space.decision_names(self.macro)
        self.alpha = nn.Parameter(torch.zeros(len(names), len(self.candidates)))
        # mask[d, i]: candidate i is allowed on every edge that reads decision d (space.allows; all True in the
        # tree and NAS-Bench-201 spaces, not so where an MBConv block may not be skipped)
        mask = torch.ones(len(names), len(self.candidates), dtype=torch.bool)

        def edge(d: int, shape) -> MixedOp:
            ok = [space.allows(n, shape) for n in self.candidates]
            mask[d] &= torch.tensor(ok)
            return MixedOp([space.make_op(n, shape) if a else None for n, a in zip(self.candidates, ok)], d)

        body = space.build_body(self.macro, edge, num_classes, image_size)
        if not bool(mask.any(1).all()):
            d = int((~mask.any(1)).nonzero()[0])
            raise SpaceError(f"no candidate ({', '.join(self.candidates)}) is allowed on decision {names[d]} of the "
                             f"{space.name} space")
        self.mask = mask  # not a buffer: checkpoints hold alpha only; the mask follows from space and candidates
        self._masked = not bool(mask.all())
        # The body's children become this module's children, so that a supernet's state_dict names every
        # weight as the derived network does (plus "alpha" and each edge's "ops.<i>"); the body itself
        # only runs the forward.  Both share one dict of children: a module swapped on the supernet (sync BN
        # conversion, a wrapper) is the one the body's forward runs.
        if bn == "plain":
            _plain_batchnorm(body)
        if list(body.parameters(recurse=False)) or list(body.buffers(recurse=False)):
            raise SpaceError(f"the {space.name} space's network holds parameters outside its child modules")
        for name, child in body.named_children():
            self.add_module(name, child)
        body._modules = self._modules
        self.__dict__["_body"] = body
        self._mixed = [m for m in self.modules() if isinstance(m, MixedOp)]
        self._prefixes = {name: m.decision for name, m in self.named_modules() if isinstance(m, MixedOp)}
        if {m.decision for m in self._mixed} != set(range(len(names))):
            raise SpaceError(f"the {space.name} space's network does not read every one of its {len(names)} decisions")
        if any(".ops." in f".{name}." for name in self._prefixes):
            raise SpaceError("a searchable edge sits inside a module named 'ops'")  # derived_state_dict splits there
        self.mode = "sample"
        self.sampled: list[tuple[int, ...]] | None = None  # per decision, of the last stochastic forward
        self.active: list[int] | None = None
        self._before = None  # (pairs, alphas of the pairs) of the last "two"-mode sampling
        # a running digest of every sampled path (< 2**52: exact in float64), so that data-parallel
        # processes can check that they computed the same architectures (utils.distributed.Sync)
        self.path_digest = 0
        self._fixed: list[int] | None = None

    def train(self, mode: bool = True) -> "SuperNet":
        super().train(mode)
        self._body.training = mode  # (not a child: nn.Module.train does not reach it)
        return self

    # ---- sizes and parameters
    @property
    def num_decisions(self) -> int:
        return self.alpha.shape[0]

    def mixed_ops(self) -> list[MixedOp]:
        """Every searchable edge, in network order (``m.decision`` is its row of alpha)."""
        return self._mixed

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p is not self.alpha]

    def alphas(self) -> torch.Tensor:
        """(decisions, N) detached copy of alpha."""
        return self.alpha.detach().clone()

    def masked_alpha(self) -> torch.Tensor:
        """alpha with -inf where a candidate is not allowed (alpha itself where every candidate is): what
        every distribution over the candidates is a softmax of (differentiable)."""
        if not self._masked:
            return self.alpha
        return self.alpha.masked_fill(~self.mask.to(self.alpha.device), float("-inf"))

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.masked_alpha().detach().float(), dim=1)

    def entropy(self) -> float:
        """Mean entropy (nats) of the decisions' op distributions; log(N) when uniform."""
        p = self.probs()
        return float(-(p * torch.log(p.clamp_min(1e-12))).sum(1).mean())

    # ---- gates
    @contextlib.contextmanager
    def gate_mode(self, mode: str) -> Iterator["SuperNet"]:
        """Set the gate mode for the block; the previous mode comes back afterwards."""
        if mode not in GATE_MODES:
            raise ValueError(f"unknown gate mode {mode!r}; valid: {', '.join(GATE_MODES)}")
        before, self.mode = self.mode, mode
        try:
            yield self
        finally:
            self.mode = before

    def resample(self) -> None:
        """Sample paths for every decision at once and hand them to the edges."""
        mode, alpha = self.mode, self.alpha
        sampled, active = sample_paths(alpha, mode, self.uniform_over, self.mask if self._masked else None)
        self.sampled, self.active = sampled, active
        self.path_digest = (self.path_digest * 1_000_003 + hash((tuple(sampled), tuple(active)))) % (1 << 52)
        rows = index = [None] * len(sampled)
        if mode in ("two", "full"):
            # views: each edge's gate gradient lands in its decision's row ("full" reads softmax(row): masked)
            rows = (self.masked_alpha() if mode == "full" else alpha).unbind(0)
            if mode == "two":
                # one copy for all decisions; a decision with one allowed candidate sampled (i,): padded to (i, i)
                pairs = torch.tensor([s if len(s) == 2 else (s[0], s[0]) for s in sampled], device=alpha.device)
                index = pairs.unbind(0)
                self._before = (pairs, alpha.detach().gather(1, pairs))
        for m in self._mixed:
            d = m.decision
            m.set_paths(mode, sampled[d], active[d], rows[d], index[d])

    def _assign_fixed(self, indices: Sequence[int]) -> None:
        for m in self._mixed:
            i = indices[m.decision]
            m.set_paths(self.mode, (i,), i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode in STOCHASTIC_MODES:
            self.resample()
        elif self.mode == "argmax":
            self._assign_fixed(self.masked_alpha().detach().argmax(1).tolist())
        else:  # fixed
            if self._fixed is None:
                raise RuntimeError("gate mode 'fixed' needs a genotype: call SuperNet.fix(genotype) first")
            self._assign_fixed(self._fixed)
        return self._body(x)

    @torch.no_grad()
    def rescale_sampled(self) -> None:
        """After an arch step in "two" mode: per decision, shift the two updated alphas by a common offset
        so their logsumexp is as before the step: the probabilities of the unsampled paths stay the same."""
        if self._before is None:
            return
        pairs, old = self._before
        offset = torch.logsumexp(self.alpha.gather(1, pairs), 1) - torch.logsumexp(old, 1)  # (D,)
        offset = torch.where(pairs[:, 0] == pairs[:, 1], 0.0, offset)  # a padded single: nothing to rescale
        self.alpha.scatter_add_(1, pairs, -offset[:, None].expand_as(pairs).to(self.alpha.dtype))
        self._before = None

    # ---- architectures as indices
    def active_indices(self) -> torch.Tensor:
        """(decisions,) index of the op each decision ran in the last stochastic forward."""
        if self.active is None:
            raise RuntimeError("the supernet has not run a stochastic forward yet: no active paths")
        return torch.tensor(self.active)

    def log_prob(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """log p(architecture) = sum over decisions of log p(op); differentiable in alpha.
        indices: (D,) or (M, D) op indices (default: the last forward's); returns () or (M,)."""
        idx = (self.active_indices() if indices is None else indices).to(self.alpha.device)
        logp = torch.log_softmax(self.masked_alpha(), dim=1)  # (D, N)
        out = logp.gather(1, idx.reshape(-1, logp.shape[0]).T).sum(0)  # (M,)
        return out[0] if idx.ndim == 1 else out

    def indices_of(self, genotype) -> list[int]:
        """The candidate index of every decision of ``genotype`` (SpaceError if it does not fit)."""
        self.space.check_genotype(genotype, self.macro)
        ops = self.space.ops_of(genotype)
        missing = sorted(set(ops) - set(self.candidates))
        if missing:
            raise SpaceError(f"the genotype uses op(s) {', '.join(missing)} that the supernet lacks (its candidates: "
                             f"{', '.join(self.candidates)})")
        out = [self.candidates.index(op) for op in ops]
        bad = [d for d, i in enumerate(out) if not self.mask[d, i]]
        if bad:
            names = self.space.decision_names(self.macro)
            raise SpaceError(f"the genotype puts {ops[bad[0]]} on {names[bad[0]]}, where the {self.space.name} space "
                             f"does not allow it")
        return out

    def genotype_of(self, indices: Sequence[int]):
        return self.space.genotype_from_ops([self.candidates[int(i)] for i in indices], self.macro)

    def active_genotype(self):
        """The architecture that the last stochastic forward ran."""
        return self.genotype_of(self.active_indices().tolist())

    def derive(self):
        """The argmax architecture."""
        return self.genotype_of(self.masked_alpha().detach().argmax(1).tolist())

    def fix(self, genotype) -> None:
        """Run ``genotype``'s ops in gate mode "fixed"."""
        self._fixed = self.indices_of(genotype)

    # ---- the derived network's weights
    def derived_state_dict(self, genotype) -> dict[str, torch.Tensor]:
        """Weights for ``space.derived(genotype, ...)``: every edge takes the weights of its chosen op
        (the supernet's body and the derived network come from one builder, so names match)."""
        chosen = self.indices_of(genotype)
        out = {}
        for key, value in self.state_dict().items():
            if key == "alpha":
                continue
            head, sep, rest = key.partition(".ops.")
            if sep and head in self._prefixes:
                i, _, tail = rest.partition(".")
                if int(i) != chosen[self._prefixes[head]]:
                    continue
                key = f"{head}.{tail}"
            out[key] = value
        return out
