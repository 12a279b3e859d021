"""The search spaces by name, and what is built from a genotype whatever its space.

    get_space("tree" | "nb201" | "mbconv") -> SearchSpace
    space_of(genotype)          -> the space a genotype belongs to
    genotype_from_dict(d)       -> a genotype of the space its JSON names ("space"; none: the tree space)
    build_net(genotype, ...)    -> the derived network;  build_supernet(B, F, ...): a tree supernet
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .mbconv.space import MBCONV
from .nb201.space import NB201
from .search_space import SearchSpace
from .common import IMAGE_SIZE, NUM_CLASSES, SpaceError
from .tree.arch import PRIMITIVES
from .supernet import SuperNet
from .tree.space import TREE

SPACES: dict[str, SearchSpace] = {TREE.name: TREE, NB201.name: NB201, MBCONV.name: MBCONV}
DEFAULT_SPACE = TREE.name
# the named architecture that train / export / pictures use when given none, per space (the spaces' data)
DEFAULT_GENOTYPES = {name: space.default_genotype for name, space in SPACES.items()}


def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise SpaceError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return SPACES[name]


def space_of(genotype) -> SearchSpace:
    for space in SPACES.values():
        if getattr(genotype, "space", None) == space.genotype_space:
            return space
    raise SpaceError(f"{type(genotype).__name__} is not a genotype of a known space ({', '.join(SPACES)})")


def genotype_from_dict(d: dict):
    """A genotype from its JSON object; its "space" names the space (tree genotypes may leave it out)."""
    if not isinstance(d, dict):
        raise SpaceError(f"a genotype must be a JSON object, got {type(d).__name__}")
    name = d.get("space", TREE.genotype_space)
    for space in SPACES.values():
        if name == space.genotype_space:
            return space.genotype_from_dict(d)
    raise SpaceError(f"genotype JSON names space {name!r}; known: "
                     + ", ".join(s.genotype_space for s in SPACES.values()))


def build_net(genotype, num_classes: int = NUM_CLASSES, path_drop: float = 0.0, cell_drop: float = 0.0,
              image_size: int = IMAGE_SIZE, macro: dict | None = None) -> nn.Module:
    """The derived network of ``genotype`` (macro: the network's size where the genotype does not carry it,
    e.g. NAS-Bench-201's C and N; None: the genotype's, else the space's defaults)."""
    space = space_of(genotype)
    full = space.macro({**space.genotype_macro(genotype), **(macro or {})})
    return space.derived(genotype, full, num_classes, image_size, path_drop, cell_drop)


def build_supernet(B: int = 18, F: int = 400, candidates: Sequence[str] = PRIMITIVES, num_classes: int = NUM_CLASSES,
                   image_size: int = IMAGE_SIZE) -> SuperNet:
    """A supernet of the tree space (the paper's); other spaces: SuperNet(space, macro, ...)."""
    return SuperNet(TREE, {"B": B, "F": F}, candidates, num_classes, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def multiply_adds(genotype, image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES,
                  macro: dict | None = None) -> int:
    """Multiply-adds of one image through the derived network, counted by torch's FLOP counter
    (2 FLOPs per multiply-add; it counts convolutions and matmuls, not BN, pooling or additions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):  # building the network must not move the caller's RNG
        net = build_net(genotype, num_classes, image_size=image_size, macro=macro).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops() // 2
