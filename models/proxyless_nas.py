"""The PyramidTreeNet: one builder gives both the supernet and the derived network."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn

from .cells import ResidualTreeBlock
from .genotype import Genotype
from .operations import OPS, STOCHASTIC_MODES, MixedOp, check_candidates, sample_paths
from .space import EDGES_PER_CELL, IMAGE_SIZE, NUM_CLASSES, PRIMITIVES, STEM_CHANNELS, SpaceError, block_plan, check_macro

BlockEdgeFactory = Callable[[int, int, int], nn.Module]  # (block, edge, channels) -> module


class TreeNet(nn.Module):
    """stem -> 3 stages of B residual tree blocks -> BN-ReLU-global pool -> linear.

    cell_drop: the residual of block k (0-based, of n) is dropped with probability
    cell_drop * (k+1)/n per batch in training (linear in depth); path_drop: see TreeCell.
    """

    def __init__(self, B: int, F: int, make_edge: BlockEdgeFactory, num_classes: int = NUM_CLASSES,
                 path_drop: float = 0.0, cell_drop: float = 0.0, image_size: int = IMAGE_SIZE):
        super().__init__()
        check_macro(B, F)
        for name, rate in (("path_drop", path_drop), ("cell_drop", cell_drop)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise SpaceError(f"the number of classes must be an integer >= 2, got {num_classes!r}")
        self.B, self.F, self.num_classes, self.image_size = B, F, num_classes, image_size
        self.plan = block_plan(B, F, image_size)
        self.stem = nn.Sequential(nn.Conv2d(3, STEM_CHANNELS, 3, 1, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS))
        n = len(self.plan)
        self.blocks = nn.ModuleList(
            ResidualTreeBlock(spec, lambda e, c, k=spec.index: make_edge(k, e, c), path_drop,
                              cell_drop * (spec.index + 1) / n)
            for spec in self.plan)
        self.head = nn.Sequential(nn.BatchNorm2d(F), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(F, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DerivedNet(TreeNet):
    """Every searchable edge is one op, taken from a Genotype."""

    def __init__(self, genotype: Genotype, num_classes: int = NUM_CLASSES, path_drop: float = 0.0,
                 cell_drop: float = 0.0, image_size: int = IMAGE_SIZE):
        self.genotype = genotype
        super().__init__(genotype.B, genotype.F, lambda b, e, c: OPS[genotype.ops[b][e]](c, 1),
                         num_classes, path_drop, cell_drop, image_size)


class SuperNet(TreeNet):
    """Every searchable edge is a MixedOp over ``candidates``; alphas live in the MixedOps."""

    def __init__(self, B: int, F: int, candidates: Sequence[str] = PRIMITIVES, num_classes: int = NUM_CLASSES,
                 image_size: int = IMAGE_SIZE):
        self.candidates = check_candidates(candidates)
        super().__init__(B, F, lambda b, e, c: MixedOp(c, self.candidates), num_classes, image_size=image_size)
        self._mixed = [m for m in self.modules() if isinstance(m, MixedOp)]
        self._before = None  # (pairs, alphas of the pairs) of the last "two"-mode sampling
        # a running digest of every sampled path (< 2**52: exact in float64), so that data-parallel
        # processes can check that they computed the same architectures (utils.distributed.Sync)
        self.path_digest = 0
        assert len(self._mixed) == len(self.plan) * EDGES_PER_CELL

    # ---- parameters
    def mixed_ops(self) -> list[MixedOp]:
        """In (block, edge) order: index = block * 12 + edge."""
        return self._mixed

    def arch_parameters(self) -> list[nn.Parameter]:
        return [m.alpha for m in self._mixed]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def alphas(self) -> torch.Tensor:
        """(num_edges, N) detached copy of all alphas."""
        return torch.stack([m.alpha.detach() for m in self._mixed])

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alphas().float(), dim=1)

    def entropy(self) -> float:
        """Mean entropy (nats) of the edges' op distributions; log(N) when uniform."""
        p = self.probs()
        return float(-(p * torch.log(p.clamp_min(1e-12))).sum(1).mean())

    # ---- gates
    @contextlib.contextmanager
    def gate_mode(self, mode: str) -> Iterator["SuperNet"]:
        """Set every MixedOp's gate mode for the block; the previous modes come back afterwards."""
        before = [m.mode for m in self._mixed]
        try:
            for m in self._mixed:
                m.set_mode(mode)
            yield self
        finally:
            for m, b in zip(self._mixed, before):
                m.mode = b

    def resample(self) -> None:
        """Sample paths for all edges at once (one read of all alphas, torch's global RNG)."""
        mode = self._mixed[0].mode
        alphas = self.alphas()
        sampled, active = sample_paths(alphas, mode)
        self.path_digest = (self.path_digest * 1_000_003 + hash((tuple(sampled), tuple(active)))) % (1 << 52)
        index = [None] * len(sampled)
        if mode in ("two", "full"):
            pairs = torch.tensor(sampled, device=alphas.device)  # one copy for all edges
            index = pairs.unbind(0)
            self._before = (pairs, alphas.gather(1, pairs)) if mode == "two" else None
        for m, s, a, i in zip(self._mixed, sampled, active, index):
            m.set_paths(s, a, index=i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mixed[0].mode in STOCHASTIC_MODES:
            self.resample()
        return super().forward(x)

    @torch.no_grad()
    def rescale_sampled(self) -> None:
        """After an arch step in "two" mode: per edge, shift the two updated alphas by a common offset
        so their logsumexp is as before the step: the probabilities of the unsampled paths stay the same."""
        if self._before is None:
            return
        pairs, old = self._before
        alphas = [m.alpha for m in self._mixed]
        new = torch.stack(alphas).gather(1, pairs)
        offset = torch.logsumexp(new, 1) - torch.logsumexp(old, 1)  # (E,)
        delta = torch.zeros(len(alphas), alphas[0].numel(), device=offset.device, dtype=offset.dtype)
        delta.scatter_(1, pairs, offset[:, None].expand(-1, pairs.shape[1]).contiguous())
        torch._foreach_sub_(alphas, list(delta.unbind(0)))
        self._before = None

    def active_indices(self) -> torch.Tensor:
        """(E,) index of the op each edge ran in the last forward."""
        return torch.tensor([m.active for m in self._mixed])

    def log_prob(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """log p(architecture) = sum over edges of log p(op); differentiable in alpha.
        indices: (E,) or (M, E) op indices (default: the last forward's); returns () or (M,)."""
        idx = self.active_indices() if indices is None else indices
        alpha = torch.stack([m.alpha for m in self._mixed])
        idx = idx.to(alpha.device)
        logp = torch.log_softmax(alpha, dim=1)  # (E, N)
        picked = logp.gather(1, idx.reshape(-1, logp.shape[0]).T)  # (E, M)
        out = picked.sum(0)
        return out[0] if idx.ndim == 1 else out

    def active_genotype(self) -> Genotype:
        """The architecture that the last forward ran (one op per edge)."""
        return self._genotype([m.active for m in self._mixed])

    def fix(self, genotype: Genotype) -> None:
        """Point every MixedOp's fixed path at the genotype's op (use with gate_mode('fixed'))."""
        self._check_genotype(genotype)
        for k, m in enumerate(self._mixed):
            m.fixed_index = m.candidates.index(genotype.ops[k // EDGES_PER_CELL][k % EDGES_PER_CELL])

    # ---- derived architecture
    def derive(self) -> Genotype:
        """The argmax architecture."""
        return self._genotype([m.argmax() for m in self._mixed])

    def _genotype(self, indices: list[int]) -> Genotype:
        names = [self.candidates[i] for i in indices]
        ops = [names[b * EDGES_PER_CELL:(b + 1) * EDGES_PER_CELL] for b in range(len(self.plan))]
        return Genotype(self.B, self.F, ops)

    def _check_genotype(self, genotype: Genotype) -> None:
        if (genotype.B, genotype.F) != (self.B, self.F):
            raise SpaceError(f"genotype has B={genotype.B} F={genotype.F}, supernet has B={self.B} F={self.F}")
        missing = sorted(genotype.ops_used() - set(self.candidates))
        if missing:
            raise SpaceError(f"genotype uses op(s) {', '.join(missing)} that this supernet does not hold")

    def derived_state_dict(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """Weights for ``DerivedNet(genotype)``: every edge takes the weights of its chosen op."""
        self._check_genotype(genotype)
        out = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            # blocks.{b}.cell.edges.{e}.alpha | blocks.{b}.cell.edges.{e}.ops.{i}.rest
            if len(parts) > 5 and parts[2:4] == ["cell", "edges"]:
                b, e = int(parts[1]), int(parts[4])
                if parts[5] == "alpha":
                    continue
                chosen = self.candidates.index(genotype.ops[b][e])
                if int(parts[6]) != chosen:
                    continue
                key = ".".join(parts[:5] + parts[7:])
            out[key] = value
        return out


def build_net(genotype: Genotype, num_classes: int = NUM_CLASSES, path_drop: float = 0.0,
              cell_drop: float = 0.0, image_size: int = IMAGE_SIZE) -> DerivedNet:
    return DerivedNet(genotype, num_classes, path_drop, cell_drop, image_size)


def build_supernet(B: int = 18, F: int = 400, candidates: Sequence[str] = PRIMITIVES,
                   num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> SuperNet:
    return SuperNet(B, F, candidates, num_classes, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def multiply_adds(genotype: Genotype, image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES) -> int:
    """Multiply-adds of one image through the derived network, counted by torch's FLOP counter
    (2 FLOPs per multiply-add; it counts convolutions and matmuls, not BN, pooling or additions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):  # building the network must not move the caller's RNG
        net = build_net(genotype, num_classes, image_size=image_size).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops() // 2
