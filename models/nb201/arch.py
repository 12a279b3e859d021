"""The NAS-Bench-201 cell space as plain data, and its genotype: the benchmark's architecture string.

NAS-Bench-201 (Dong & Yang, ICLR 2020; NATS-Bench's topology space) trained every one of its 5^6 =
15,625 cells with one recipe, so the accuracy of a searched cell is looked up, not retrained.

* Cell: a DAG of 4 nodes.  Node 0 is the cell's input; node k (1..3) is the sum of one op applied to
  each earlier node j < k; node 3 is the output.  That is 6 edges, in the string's order
  (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
* Ops: ``none`` (zeros), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-conv-BN),
  ``avg_pool_3x3`` (stride 1, padding 1, padding not counted).
* Network (the benchmark's, models/nb201/net.py): 3x3 conv stem (3 -> C) + BN; three stages of N cells at
  C, 2C, 4C channels with a residual stride-2 basic block between stages; BN-ReLU-global pool-linear.
* One cell architecture for the whole network: a search has 6 decisions, shared by all 3N cells.
* String: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: the k-th ``+`` group lists the edges into node k,
  ``op~j`` the edge from node j.

No torch import: parsing and writing genotypes stays light.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..common import FlatOps, SpaceError

SPACE_NAME = "nb201"

PRIMITIVES: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
OP_CODES = {"none": "0", "skip_connect": "id", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "ap"}
OP_FAMILY = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "conv", "nor_conv_3x3": "conv",
             "avg_pool_3x3": "pool"}
PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")

NODES = 4
# (to, from) of every edge, in the string's order
EDGES: tuple[tuple[int, int], ...] = tuple((k, j) for k in range(1, NODES) for j in range(k))
EDGE_NAMES: tuple[str, ...] = tuple(f"{j}->{k}" for k, j in EDGES)
NUM_EDGES = len(EDGES)  # 6

STEM_CHANNELS = 16  # the benchmark's C
CELLS_PER_STAGE = 5  # the benchmark's N
NUM_STAGES = 3


class CellGenotypeError(SpaceError):
    """A cell string or file that is not a NAS-Bench-201 cell (the message names the problem)."""


def check_macro(C: int, N: int) -> None:
    if not isinstance(C, int) or C < 1:
        raise SpaceError(f"C (stem channels) must be an integer >= 1, got {C!r}")
    if not isinstance(N, int) or N < 1:
        raise SpaceError(f"N (cells per stage) must be an integer >= 1, got {N!r}")


@dataclass(frozen=True)
class CellGenotype(FlatOps):
    """One op name per edge (EDGES order).  The network around the cell (C, N) is not part of it: the
    benchmark's network is fixed, and a searched cell is meant to be trained in it."""

    ops: tuple[str, ...]
    space: str = SPACE_NAME
    PRIMITIVES = PRIMITIVES  # (FlatOps counts these)

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        if self.space != SPACE_NAME:
            raise CellGenotypeError(f"genotype is for space {self.space!r}, not {SPACE_NAME!r}")
        if len(self.ops) != NUM_EDGES:
            raise CellGenotypeError(f"a NAS-Bench-201 cell has {NUM_EDGES} edges, got {len(self.ops)}")
        for (k, j), op in zip(EDGES, self.ops):
            if op not in PRIMITIVES:
                raise CellGenotypeError(f"edge {j}->{k}: unknown op {op!r}; valid ops: {', '.join(PRIMITIVES)}")

    # ---- the benchmark's string
    def to_string(self) -> str:
        groups, e = [], 0
        for k in range(1, NODES):
            groups.append("|" + "|".join(f"{self.ops[e + j]}~{j}" for j in range(k)) + "|")
            e += k
        return "+".join(groups)

    @classmethod
    def from_string(cls, text: str) -> "CellGenotype":
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` strictly: every group, edge and source checked."""
        if not isinstance(text, str):
            raise CellGenotypeError(f"a cell string is text, got {type(text).__name__}")
        s = text.strip()
        groups = s.split("+")
        if len(groups) != NODES - 1:
            raise CellGenotypeError(f"cell string {s!r} has {len(groups)} '+'-separated node groups; "
                                    f"a NAS-Bench-201 cell has {NODES - 1}")
        ops = []
        for k, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise CellGenotypeError(f"node {k}'s group {group!r} must be written |op~j|...| in {s!r}")
            items = group[1:-1].split("|")
            if len(items) != k:
                raise CellGenotypeError(f"node {k} needs {k} incoming edge(s) (from nodes 0..{k - 1}), "
                                        f"got {len(items)} in {group!r}")
            for j, item in enumerate(items):
                op, sep, src = item.partition("~")
                if not sep or src != str(j):
                    raise CellGenotypeError(f"node {k}: edge {item!r} should read op~{j} (the edge from node {j})")
                if op not in PRIMITIVES:
                    raise CellGenotypeError(f"edge {j}->{k}: unknown op {op!r}; valid ops: {', '.join(PRIMITIVES)}")
                ops.append(op)
        return cls(tuple(ops))

    def describe(self) -> str:
        return self.to_string()

    def to_dict(self) -> dict:
        return {"space": self.space, "arch": self.to_string()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "CellGenotype":
        if not isinstance(d, dict):
            raise CellGenotypeError(f"a genotype must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {"space", "arch"}
        if unknown:
            raise CellGenotypeError(f"NAS-Bench-201 genotype JSON has unknown key(s) {', '.join(sorted(unknown))}")
        if "arch" not in d:
            raise CellGenotypeError("NAS-Bench-201 genotype JSON lacks the key 'arch' (the benchmark's string)")
        if d.get("space", SPACE_NAME) != SPACE_NAME:
            raise CellGenotypeError(f"genotype is for space {d['space']!r}, not {SPACE_NAME!r}")
        return cls.from_string(d["arch"])


def all_cells() -> list[CellGenotype]:
    """Every cell of the space (5^6 = 15,625), in lexicographic order of the op indices."""
    import itertools

    return [CellGenotype(ops) for ops in itertools.product(PRIMITIVES, repeat=NUM_EDGES)]


def uniform_cell(op: str) -> CellGenotype:
    return CellGenotype((op,) * NUM_EDGES)


# Named cells (genotypes.py registers them): the benchmark's best CIFAR-10 cell (94.37 % after its
# 200-epoch recipe), the all-3x3 cell (the largest network: 1,531,546 parameters at C=16, N=5), and
# the all-skip cell where DARTS collapses (54.30 %).
NAMED = {
    "nb201_best_cifar10": CellGenotype.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"),
    "nb201_all_conv3x3": uniform_cell("nor_conv_3x3"),
    "nb201_all_skip": uniform_cell("skip_connect"),
}
