"""The ProxylessNAS CIFAR-10 search space as plain data.

Every reader (supernet, derived network, genotypes, latency tables, pictures, export) takes its
facts from here, so the space is described once.  No torch import: genotypes.py and tools that
only read JSON stay light.

Facts (checked against the authors' released ``proxyless_cifar`` config, see tests/test_models.py):
* Backbone: bottleneck PyramidNet, 3 stages x B residual tree blocks, widths growing linearly
  from 16 to F/4, each rounded down to an even number (the cell splits its 2w channels in halves).
* Cell: root edge (grouped 3x3 conv w->2w + shuffle) -> split into two halves of w channels ->
  per half a depth-2 binary tree of searchable edges (6 edges), branch BN + residual -> sum.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..common import IMAGE_SIZE, NUM_CLASSES, SpaceError  # noqa: F401  (the tree space's data: CIFAR-10)



# Candidate operations on a searchable edge, in the order the supernet holds them.
PRIMITIVES: tuple[str, ...] = (
    "sep_3x3",
    "sep_5x5",
    "sep_7x7",
    "dil_sep_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "identity",
)

# Two-letter codes (genotype tables in genotypes.py, the op heat map of visualize_cifar.py).
OP_CODES = {
    "sep_3x3": "s3",
    "sep_5x5": "s5",
    "sep_7x7": "s7",
    "dil_sep_3x3": "d3",
    "avg_pool_3x3": "ap",
    "max_pool_3x3": "mp",
    "identity": "id",
}

# Per op family: used by the visualizer for colors and by the latency table for grouping.
OP_FAMILY = {
    "sep_3x3": "sep_conv",
    "sep_5x5": "sep_conv",
    "sep_7x7": "sep_conv",
    "dil_sep_3x3": "dil_conv",
    "avg_pool_3x3": "pool",
    "max_pool_3x3": "pool",
    "identity": "skip",
}

STEM_CHANNELS = 16
NUM_STAGES = 3
TREE_DEPTH = 2  # searchable levels below each half of the split
TREE_BRANCHES = 2  # edges out of every copy/add node


def _tree(depth: int, branches: int, counter: list[int]) -> tuple:
    """Pre-order numbering of a copy/add tree: ((edge, child_tree_or_None), ...)."""
    nodes = []
    for _ in range(branches):
        edge = counter[0]
        counter[0] += 1
        child = _tree(depth - 1, branches, counter) if depth > 1 else None
        nodes.append((edge, child))
    return tuple(nodes)


def _cell_trees() -> tuple[tuple, ...]:
    counter = [0]
    return tuple(_tree(TREE_DEPTH, TREE_BRANCHES, counter) for _ in range(2))


# CELL_TREES[h] is the copy/add tree hanging under half h of the split node, as nested
# ((edge_index, child_tree), ...) tuples.  Edge indices are pre-order: for each half
# [e_a, e_c, e_d, e_b, e_e, e_f], half 0 then half 1 -- the order of the released JSON.
CELL_TREES: tuple[tuple, ...] = _cell_trees()


def _edge_names() -> tuple[str, ...]:
    names: dict[int, str] = {}

    def walk(tree, prefix):
        for branch, (edge, child) in enumerate(tree):
            name = f"{prefix}.{branch}"
            names[edge] = name
            if child is not None:
                walk(child, name)

    for half, tree in enumerate(CELL_TREES):
        walk(tree, f"h{half}")
    return tuple(names[i] for i in range(len(names)))


# Human-readable edge names, e.g. "h0.1.0" = half 0, second edge, its first child edge.
EDGE_NAMES: tuple[str, ...] = _edge_names()
EDGES_PER_CELL = len(EDGE_NAMES)  # 12


@dataclass(frozen=True)
class BlockSpec:
    """One residual tree block: input channels, bottleneck width w, output 4w, stride, map size."""

    index: int
    stage: int
    in_channels: int
    width: int
    out_channels: int
    stride: int
    in_size: int  # spatial size of the block input

    @property
    def out_size(self) -> int:
        return self.in_size // self.stride


def block_widths(B: int, F: int) -> list[int]:
    """PyramidNet widths: 16 + (F/4 - 16) * (k+1) / 3B, rounded, then down to even."""
    n = NUM_STAGES * B
    final = F / 4
    return [int(round(STEM_CHANNELS + (final - STEM_CHANNELS) * (k + 1) / n)) // 2 * 2 for k in range(n)]


def check_macro(B: int, F: int) -> None:
    if not isinstance(B, int) or B < 1:
        raise SpaceError(f"B (blocks per stage) must be an integer >= 1, got {B!r}")
    # F = 4 * (last bottleneck width), and widths are even: F must be a multiple of 8 or the last
    # block would not output F channels (the head's BN(F) would fail on a shape mismatch).
    # F >= 64 keeps widths from shrinking below the stem's 16 channels (F/4 >= 16).
    if not isinstance(F, int) or F % 8 or F < 4 * STEM_CHANNELS:
        raise SpaceError(f"F (final width) must be a multiple of 8 >= {4 * STEM_CHANNELS}, got {F!r}")
    if min(block_widths(B, F)) < 2:
        raise SpaceError(f"F={F} gives a bottleneck width below 2")


def check_image_size(size: int) -> None:
    """Two stride-2 stages: the size must halve exactly twice (a 2x2 average-pool shortcut and a
    stride-2 convolution disagree on odd sizes), and leave at least 2x2 for the last stage."""
    if not isinstance(size, int) or size < 8 or size % 4:
        raise SpaceError(f"the image size must be a multiple of 4 and >= 8 (the network halves it twice), got {size!r}")


def block_plan(B: int, F: int, image_size: int = IMAGE_SIZE) -> list[BlockSpec]:
    """The backbone as data: one BlockSpec per block, stage by stage, for square images of ``image_size``."""
    check_macro(B, F)
    check_image_size(image_size)
    plan, in_ch, size = [], STEM_CHANNELS, image_size
    for k, w in enumerate(block_widths(B, F)):
        stage = k // B
        stride = 2 if (stage > 0 and k % B == 0) else 1
        plan.append(BlockSpec(k, stage, in_ch, w, 4 * w, stride, size))
        in_ch, size = 4 * w, size // stride
    return plan

