"""What every space shares and nothing in it needs torch for: the error type, the data's defaults, the shape
of a searchable edge."""
from __future__ import annotations

from dataclasses import dataclass


class SpaceError(ValueError):
    """A description a space cannot build: a bad network size, an unknown or repeated op, a malformed
    genotype, an op where the space forbids it.  The entry scripts report it as one ``error:`` line
    (utils.errors.run_cli)."""


# The data's defaults where a caller names none: CIFAR-10's 32 px and 10 classes.
IMAGE_SIZE, NUM_CLASSES = 32, 10


@dataclass(frozen=True)
class EdgeShape:
    """What a searchable edge maps: ``in_channels`` x ``in_size`` x ``in_size`` to ``out_channels`` at
    ``stride`` (square maps).  The tree and NAS-Bench-201 edges keep channels and size; a chain space's block
    (MBConv) may change both.  Hashable: edges of one shape share latency-table entries."""

    in_channels: int
    out_channels: int
    stride: int
    in_size: int

    @property
    def out_size(self) -> int:
        return -(-self.in_size // self.stride)  # ceil, as a padded strided convolution

    @property
    def keeps_shape(self) -> bool:
        return self.in_channels == self.out_channels and self.stride == 1


class FlatOps:
    """What a genotype with a flat ``ops`` tuple (one op per decision) of ``PRIMITIVES`` says of its ops: the
    NAS-Bench-201 cell's and the MBConv chain's (the tree genotype holds a list per block and has its own)."""

    PRIMITIVES: tuple[str, ...] = ()
    ops: tuple[str, ...]

    def ops_used(self) -> set[str]:
        return set(self.ops)

    def op_counts(self) -> dict[str, int]:
        return {name: self.ops.count(name) for name in self.PRIMITIVES}

    def describe_counts(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.op_counts().items() if v)
