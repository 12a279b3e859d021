"""The paper's ImageNet space (a MobileNetV2-like chain of MBConv blocks) as plain data, and its genotype.

* Network: stem (conv 3x3 stride 2, 3 -> ``stem``, BN, ReLU6) -> ``first`` (a fixed MBConv1 3x3 block,
  stem -> first) -> 6 stages of ``depths[s]`` searchable blocks at ``widths[s]`` channels, the first block
  of stage s at stride ``STRIDES[s]`` -> ``head`` (feature mix, conv 1x1 + BN + ReLU6) -> global average
  pool -> linear classifier.  BN momentum 0.1, eps 1e-3 everywhere (the authors' released configs).
* Searchable block: one of ``PRIMITIVES``: an MBConv (kernel 3/5/7, expansion 3/6) or ``zero`` (the block is
  skipped: its op gives zeros, and with the residual the block passes its input on).  A block that keeps
  its shape (stride 1, in == out channels) has a residual; the first block of a stage changes channels or
  stride, has none, and so may not be ``zero`` (it would cut the network).
* Search-space defaults (the paper's): stem 32, first 16, widths (24, 40, 80, 96, 192, 320), depths
  (4, 4, 4, 4, 4, 1), head 1280 -- 21 searchable blocks.  The released networks (``NAMED``) were widened
  after the search, so a genotype carries its own widths.

No torch import: parsing and writing genotypes stays light.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Sequence

from ..common import EdgeShape, FlatOps, SpaceError

SPACE_NAME = "mbconv"

# The authors' candidate order (the supernet's alpha columns follow it).
PRIMITIVES: tuple[str, ...] = ("3x3_MBConv3", "3x3_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "7x7_MBConv3",
                               "7x7_MBConv6", "zero")
# Short codes for tables and pictures: kernel and expansion.
OP_CODES = {"3x3_MBConv3": "k3e3", "3x3_MBConv6": "k3e6", "5x5_MBConv3": "k5e3", "5x5_MBConv6": "k5e6",
            "7x7_MBConv3": "k7e3", "7x7_MBConv6": "k7e6", "zero": "--"}
PARAMETER_FREE = ("zero",)

NUM_STAGES = 6
STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2, 1)  # stride of each stage's first block (ImageNet images)
STEM_KERNEL, STEM_STRIDE = 3, 2
FIRST_KERNEL, FIRST_EXPAND = 3, 1  # the fixed MBConv1 block after the stem
BN_MOMENTUM, BN_EPS = 0.1, 1e-3

# Below this image size the network is the CIFAR-size variant (``stage_strides``).
SMALL_IMAGE = 64

DEFAULT_MACRO = {"stem": 32, "first": 16, "widths": (24, 40, 80, 96, 192, 320), "depths": (4, 4, 4, 4, 4, 1),
                 "head": 1280}


def _check_op(op: str) -> None:
    if op not in PRIMITIVES:
        raise SpaceError(f"unknown MBConv op {op!r}; valid ops: {', '.join(PRIMITIVES)}")


def kernel_of(op: str) -> int:
    """The depthwise kernel of an MBConv op ("5x5_MBConv3" -> 5); SpaceError for ``zero`` or unknown."""
    _check_op(op)
    if op == "zero":
        raise SpaceError("'zero' has no kernel")
    return int(op.split("x", 1)[0])


def expand_of(op: str) -> int:
    """The expansion ratio of an MBConv op ("5x5_MBConv3" -> 3); SpaceError for ``zero`` or unknown."""
    _check_op(op)
    if op == "zero":
        raise SpaceError("'zero' has no expansion ratio")
    return int(op.rsplit("MBConv", 1)[1])


def _positive_int(name: str, value) -> None:
    # bool is an int subclass; True as a width is a bug, not a 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpaceError(f"{name} must be an integer >= 1, got {value!r}")


def _check_stages(widths: Sequence[int], depths: Sequence[int]) -> None:
    widths, depths = tuple(widths), tuple(depths)
    if len(widths) != NUM_STAGES or len(depths) != NUM_STAGES:
        raise SpaceError(f"the MBConv space has {NUM_STAGES} stages: widths and depths need {NUM_STAGES} entries "
                         f"each, got {len(widths)} widths and {len(depths)} depths")
    for s, (w, d) in enumerate(zip(widths, depths)):
        _positive_int(f"stage {s}'s width", w)
        _positive_int(f"stage {s}'s depth", d)


def check_macro(stem: int, first: int, widths: Sequence[int], depths: Sequence[int], head: int) -> None:
    """SpaceError naming the problem unless the five settings size an MBConv network of this space."""
    for name, value in (("stem", stem), ("first", first), ("head", head)):
        _positive_int(name, value)
    _check_stages(widths, depths)
    # A stage starts where the width changes.  So every stage's first block changes channels, has no residual and
    # may not be zero -- the genotype's rule by position and the space's by shape (space.allows) then agree at every
    # image size (the CIFAR-size variant runs stage 0 at stride 1).  The paper's space and all three released
    # networks change width at every stage.
    for s, (before, w) in enumerate(zip((first,) + tuple(widths), widths)):
        if before == w:
            raise SpaceError(f"stage {s} has the width of the layer before it ({w}): each stage must change the width")


def check_image_size(size: int) -> None:
    """The sizes the network is built for: a multiple of its total stride, 32 (>= 64) or 8 (< 64, the
    CIFAR-size variant, ``stage_strides``); so at least 64 px for the ImageNet variant and 8 px for CIFAR.

    Strictly the network computes on any size: every layer pads k // 2 with an odd kernel, so a stride-2
    layer maps n to ceil(n / 2) (as ``EdgeShape.out_size`` says) and a residual add always meets a stride-1
    op of its own shape.  The check asks for exact halving anyway, so that every map is image / stride:
    the plan, the latency tables' keys (which name map sizes, as the authors' 224 px table does: 112, 56,
    28, 14, 7) and runtimes that round odd sizes or place padding differently (TF's "SAME") all agree, and
    the last stage still has at least 2x2 (ImageNet variant at 64 px) / 1x1 (CIFAR variant at 8 px)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise SpaceError(f"the image size must be an integer, got {size!r}")
    if size < 8 or size % 8:
        raise SpaceError(f"the image size must be a multiple of 8 and >= 8 (the network divides it by 8 below "
                         f"{SMALL_IMAGE} px), got {size}")
    if size >= SMALL_IMAGE and size % 32:
        raise SpaceError(f"from {SMALL_IMAGE} px the image size must be a multiple of 32 (the network divides "
                         f"it by 32), got {size}")


def stage_strides(image_size: int) -> tuple[int, tuple[int, ...]]:
    """(stem stride, stride of each stage's first block) for square images of ``image_size``.

    At ImageNet sizes: stem 2 and ``STRIDES``: 224 px -> 112 after the stem ... 7x7 before the head
    (total stride 32).  Below ``SMALL_IMAGE`` px (CIFAR's 32) the same strides would leave 1x1 maps for the
    last two stages, where a 5x5 or 7x7 depthwise kernel sees nothing but padding; so, as the usual CIFAR
    MobileNetV2 does, the stem and the first stage keep stride 1 (total stride 8): 32 px ends at 4x4."""
    check_image_size(image_size)
    if image_size < SMALL_IMAGE:
        return 1, (1,) + STRIDES[1:]
    return STEM_STRIDE, STRIDES


@dataclass(frozen=True)
class BlockSpec:
    """Searchable block ``index`` (its decision, 0..sum(depths)-1): ``position`` within ``stage`` (0 = the
    stage's first block, which may not be ``zero``) and the shape it maps."""

    index: int
    stage: int
    position: int
    shape: EdgeShape

    @property
    def zero_allowed(self) -> bool:
        return self.position > 0


def block_plan(stem: int, first: int, widths: Sequence[int], depths: Sequence[int],
               image_size: int) -> list[BlockSpec]:
    """The searchable blocks as data, in network order."""
    for name, value in (("stem", stem), ("first", first)):
        _positive_int(name, value)
    _check_stages(widths, depths)
    stem_stride, strides = stage_strides(image_size)
    plan, cin, size = [], first, -(-image_size // stem_stride)  # the fixed first block keeps the size
    for s, (width, depth, stride) in enumerate(zip(widths, depths, strides)):
        for p in range(depth):
            shape = EdgeShape(cin, width, stride if p == 0 else 1, size)
            plan.append(BlockSpec(len(plan), s, p, shape))
            cin, size = width, shape.out_size
    return plan


def fixed_layers(stem: int, first: int, widths: Sequence[int], head: int, image_size: int) -> dict[str, EdgeShape]:
    """The shapes of the layers that are not searched ("stem", "first", "head"; the classifier reads the
    pooled ``head`` vector), e.g. for the fixed part of a latency table."""
    check_macro(stem, first, widths, (1,) * NUM_STAGES, head)  # the depths do not change these shapes
    stem_stride, strides = stage_strides(image_size)
    size = -(-image_size // stem_stride)
    last = size
    for s in strides:
        last = -(-last // s)
    return {"stem": EdgeShape(3, stem, stem_stride, image_size),
            "first": EdgeShape(stem, first, 1, size),
            "head": EdgeShape(widths[-1], head, 1, last)}


@dataclass(frozen=True)
class MBConvGenotype(FlatOps):
    """One op per searchable block (``block_plan`` order) and the widths of the network it is meant for
    (a released network is wider than the search space's defaults)."""

    ops: tuple[str, ...]
    stem: int = DEFAULT_MACRO["stem"]
    first: int = DEFAULT_MACRO["first"]
    widths: tuple[int, ...] = DEFAULT_MACRO["widths"]
    depths: tuple[int, ...] = DEFAULT_MACRO["depths"]
    head: int = DEFAULT_MACRO["head"]
    space: ClassVar[str] = SPACE_NAME
    PRIMITIVES = PRIMITIVES  # (FlatOps counts these)

    def __post_init__(self):
        for name in ("ops", "widths", "depths"):  # lists from JSON become tuples: hashable, immutable
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_macro(self.stem, self.first, self.widths, self.depths, self.head)
        if len(self.ops) != sum(self.depths):
            raise SpaceError(f"an MBConv genotype of depths {list(self.depths)} needs {sum(self.depths)} ops (one "
                             f"per searchable block), got {len(self.ops)}")
        for i, (op, (stage, position)) in enumerate(zip(self.ops, self.block_positions())):
            if op not in PRIMITIVES:
                raise SpaceError(f"block {i} (stage {stage}): unknown op {op!r}; valid ops: {', '.join(PRIMITIVES)}")
            if op == "zero" and position == 0:
                raise SpaceError(f"block {i}: 'zero' on the first block of stage {stage}, which changes channels "
                                 f"or stride and has no residual to pass its input on")

    def block_positions(self) -> list[tuple[int, int]]:
        """(stage, position in the stage) of every searchable block."""
        return [(s, p) for s, d in enumerate(self.depths) for p in range(d)]

    @property
    def macro(self) -> dict:
        return {"stem": self.stem, "first": self.first, "widths": self.widths, "depths": self.depths,
                "head": self.head}

    def stage_ops(self) -> list[tuple[str, ...]]:
        out, start = [], 0
        for d in self.depths:
            out.append(self.ops[start:start + d])
            start += d
        return out

    def describe(self) -> str:
        """Stages separated by '|', e.g. ``k5e3 -- -- -- | k7e3 ...``."""
        return " | ".join(" ".join(OP_CODES[op] for op in stage) for stage in self.stage_ops())

    def to_dict(self) -> dict:
        return {"space": self.space, "stem": self.stem, "first": self.first, "widths": list(self.widths),
                "depths": list(self.depths), "head": self.head, "ops": list(self.ops)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "MBConvGenotype":
        """Strict: every key present (a genotype names the widths it was searched or released with), none
        unknown, lists where lists belong."""
        if not isinstance(d, dict):
            raise SpaceError(f"a genotype must be a JSON object, got {type(d).__name__}")
        keys = ("space", "stem", "first", "widths", "depths", "head", "ops")
        missing = [k for k in keys if k not in d]
        if missing:
            raise SpaceError(f"MBConv genotype JSON lacks the key(s) {', '.join(missing)}")
        unknown = set(d) - set(keys)
        if unknown:
            raise SpaceError(f"MBConv genotype JSON has unknown key(s) {', '.join(sorted(unknown))}")
        if d["space"] != SPACE_NAME:
            raise SpaceError(f"genotype is for space {d['space']!r}, not {SPACE_NAME!r}")
        for k in ("widths", "depths", "ops"):
            if not isinstance(d[k], list):
                raise SpaceError(f"MBConv genotype '{k}' must be a list, got {type(d[k]).__name__}")
        return cls(ops=d["ops"], stem=d["stem"], first=d["first"], widths=d["widths"], depths=d["depths"],
                   head=d["head"])


def _genotype(stem, first, widths, head, stages: str) -> MBConvGenotype:
    """A released network from its codes, stages separated by '|' (depths follow from the codes)."""
    code_to_op = {v: k for k, v in OP_CODES.items()}
    groups = [g.split() for g in stages.split("|")]
    return MBConvGenotype(tuple(code_to_op[c] for g in groups for c in g), stem, first, widths,
                          tuple(len(g) for g in groups), head)


# The three released networks, transcribed from the authors' proxyless_{gpu,cpu,mobile}.config (every
# MBInvertedConvLayer's kernel / expand_ratio, ZeroLayer as "zero"; tests/test_mbconv_net.py compares them
# with the configs when PNAS_REFERENCE is set).  Parameters at 1000 classes: 7,119,848 / 4,361,648 /
# 4,080,512; ImageNet top-1 in the authors' logs 75.1 / 75.3 / 74.6 %.
NAMED = {
    "proxyless_gpu": _genotype(40, 24, (32, 56, 112, 128, 256, 432), 1728,
                               "k5e3 -- -- -- | k7e3 -- -- k3e3 | k7e6 -- -- k5e3 | k5e6 -- k3e3 k5e3 |"
                               " k7e6 k7e6 k7e6 k5e6 | k7e6"),
    "proxyless_cpu": _genotype(40, 24, (32, 48, 88, 104, 216, 360), 1432,
                               "k3e6 k3e3 k3e3 k3e3 | k3e6 k3e3 k3e3 k5e3 | k3e6 -- -- k3e3 | k5e6 k3e3 k3e3 k3e3 |"
                               " k5e6 k5e3 k5e3 k3e3 | k5e6"),
    "proxyless_mobile": _genotype(32, 16, (32, 40, 80, 96, 192, 320), 1280,
                                  "k5e3 k3e3 -- -- | k7e3 k3e3 k5e3 k5e3 | k7e6 k5e3 k5e3 k5e3 | k5e6 k5e3 k5e3 k5e3 |"
                                  " k7e6 k7e6 k7e3 k7e3 | k7e6"),
}
