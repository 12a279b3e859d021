"""Architectures: the Genotype type (one op name per searchable edge) and named genotypes.

A genotype is data: it is read from / written to JSON, never ``eval``-ed.
    {"space": "proxyless_cifar_tree", "B": 18, "F": 400, "ops": [[12 op names], ... 3*B blocks]}
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from models.space import EDGE_NAMES, EDGES_PER_CELL, NUM_STAGES, PRIMITIVES, check_macro
from utils.errors import UserError

SPACE_NAME = "proxyless_cifar_tree"


class GenotypeError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class Genotype:
    """B blocks per stage, final width F, and ops[block][edge] (edge order: models.space.EDGE_NAMES)."""

    B: int
    F: int
    ops: tuple[tuple[str, ...], ...]
    space: str = SPACE_NAME

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(tuple(block) for block in self.ops))
        if self.space != SPACE_NAME:
            raise GenotypeError(f"genotype is for space {self.space!r}; this project builds {SPACE_NAME!r}")
        try:
            check_macro(self.B, self.F)
        except ValueError as e:
            raise GenotypeError(f"genotype: {e}") from None
        n_blocks = NUM_STAGES * self.B
        if len(self.ops) != n_blocks:
            raise GenotypeError(
                f"genotype has {len(self.ops)} blocks but B={self.B} needs {n_blocks} ({NUM_STAGES} stages x B)")
        for b, block in enumerate(self.ops):
            if len(block) != EDGES_PER_CELL:
                raise GenotypeError(f"genotype block {b} has {len(block)} edges; every cell has {EDGES_PER_CELL}")
            for e, op in enumerate(block):
                if op not in PRIMITIVES:
                    raise GenotypeError(f"genotype block {b} edge {e} ({EDGE_NAMES[e]}): unknown op {op!r}; "
                                        f"valid ops: {', '.join(PRIMITIVES)}")

    @property
    def num_blocks(self) -> int:
        return len(self.ops)

    def ops_used(self) -> set[str]:
        return {op for block in self.ops for op in block}

    def op_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in PRIMITIVES}
        for block in self.ops:
            for op in block:
                counts[op] += 1
        return counts

    # ---- JSON
    def to_dict(self) -> dict:
        return {"space": self.space, "B": self.B, "F": self.F, "ops": [list(b) for b in self.ops]}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The JSON text (one block per line); written atomically to ``path`` when given."""
        blocks = ",\n    ".join(json.dumps(list(b)) for b in self.ops)
        text = (f'{{\n  "space": {json.dumps(self.space)},\n  "B": {self.B},\n  "F": {self.F},\n'
                f'  "ops": [\n    {blocks}\n  ]\n}}\n')
        if path is not None:
            path = Path(path)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> "Genotype":
        if not isinstance(d, dict):
            raise GenotypeError(f"a genotype must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("B", "F", "ops") if k not in d]
        if missing:
            raise GenotypeError(f"genotype JSON lacks the key(s) {', '.join(missing)}")
        unknown = set(d) - {"space", "B", "F", "ops"}
        if unknown:
            raise GenotypeError(f"genotype JSON has unknown key(s) {', '.join(sorted(unknown))}")
        ops = d["ops"]
        if not isinstance(ops, list) or not all(isinstance(b, list) for b in ops):
            raise GenotypeError("genotype 'ops' must be a list of lists of op names")
        return cls(B=d["B"], F=d["F"], ops=ops, space=d.get("space", SPACE_NAME))

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"genotype is not valid JSON: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Genotype":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise GenotypeError(f"cannot read genotype file {path}: {e.strerror}") from None
        try:
            return cls.from_json(text)
        except GenotypeError as e:
            raise GenotypeError(f"{path}: {e}") from None


def uniform(B: int, F: int, op: str) -> Genotype:
    """Every edge the same op (handy for tests and baselines)."""
    return Genotype(B, F, [[op] * EDGES_PER_CELL for _ in range(NUM_STAGES * B)])


# ------------------------------------------------------------------ named genotypes
_ABBREV = {"s3": "sep_3x3", "s5": "sep_5x5", "s7": "sep_7x7", "d3": "dil_sep_3x3",
           "ap": "avg_pool_3x3", "mp": "max_pool_3x3", "id": "identity"}


def _decode(rows: list[str]) -> list[list[str]]:
    return [[_ABBREV[t] for t in row.replace("|", " ").split()] for row in rows]


# The authors' released CIFAR-10 network (han-cai/files proxylessnas/proxyless_cifar.config):
# PyramidTreeNet, B=18, F=400, 5,731,530 parameters.  One row per block; edges in pre-order,
# half 0 | half 1 (s=sep, d=dilated sep, ap/mp=avg/max pool 3x3, id=identity).
PROXYLESS_CIFAR = Genotype(B=18, F=400, ops=_decode([
    "s7 d3 id mp s7 mp | s5 s5 s5 d3 s7 s7",  # 0
    "ap ap ap id s3 id | mp d3 id s7 d3 d3",  # 1
    "s7 s3 ap id s5 ap | s3 s3 ap d3 d3 s5",  # 2
    "ap s5 d3 s5 s3 d3 | d3 s7 s3 s7 id s7",  # 3
    "ap s5 d3 id d3 s5 | s7 s7 ap mp id mp",  # 4
    "s7 s7 mp mp s3 s5 | ap d3 s3 s7 id id",  # 5
    "d3 id mp mp s7 s7 | s7 s5 s3 s7 id id",  # 6
    "d3 s5 s7 d3 s5 s7 | mp ap ap s5 s3 s7",  # 7
    "s7 s5 mp d3 id id | mp s3 ap mp ap d3",  # 8
    "s5 s3 id id s3 s7 | s3 s5 s7 id s5 s7",  # 9
    "s7 s7 s5 ap s3 s5 | d3 ap d3 id d3 s3",  # 10
    "s5 ap s5 d3 s3 s3 | ap s7 s7 s5 d3 s3",  # 11
    "mp s7 s3 mp s7 d3 | s3 ap s5 mp s7 id",  # 12
    "s3 mp d3 s7 s7 d3 | s5 id s3 d3 s7 s3",  # 13
    "d3 mp s3 ap d3 d3 | ap s5 id id s5 id",  # 14
    "s5 d3 s5 id ap ap | d3 s5 s5 s5 s7 s3",  # 15
    "s7 s5 s5 s5 d3 s3 | id mp s7 d3 s3 s7",  # 16
    "mp id id d3 s3 id | s7 s5 s7 mp id d3",  # 17
    "d3 s5 ap mp ap s7 | s5 s7 s3 ap ap mp",  # 18
    "s7 id s7 d3 id s7 | d3 s3 s7 mp mp s5",  # 19
    "mp ap s3 d3 id d3 | mp mp s5 mp id ap",  # 20
    "d3 s7 s3 ap ap s3 | s3 s7 id ap d3 d3",  # 21
    "d3 mp ap mp s7 id | s7 d3 id d3 ap mp",  # 22
    "s7 mp s7 s5 mp id | mp ap d3 id mp s7",  # 23
    "id ap s5 s5 mp s5 | d3 s7 ap d3 d3 mp",  # 24
    "s3 ap d3 id d3 d3 | d3 ap ap s3 ap s3",  # 25
    "d3 mp s7 s7 id mp | mp s5 s5 mp s5 d3",  # 26
    "s3 s7 s3 s7 ap id | mp s3 s7 s7 mp mp",  # 27
    "s7 s7 s7 s5 ap s3 | s3 id d3 s3 ap s3",  # 28
    "s5 ap id id ap s5 | ap s3 ap s7 ap mp",  # 29
    "id ap d3 s3 id s7 | id s7 mp ap id d3",  # 30
    "s7 s5 id mp s7 d3 | mp d3 mp s7 s7 s7",  # 31
    "s3 mp s3 s7 id s3 | s5 id s3 s3 s5 id",  # 32
    "d3 d3 s3 s7 d3 s7 | s3 s3 d3 id mp id",  # 33
    "mp id s5 id s5 ap | s3 ap id s7 ap d3",  # 34
    "s7 s7 s5 mp d3 ap | s7 s7 s5 s3 s5 s5",  # 35
    "ap ap ap ap d3 ap | s7 s5 id id id ap",  # 36
    "mp id ap s7 s5 id | id ap id id s7 id",  # 37
    "d3 s7 mp s3 id s5 | ap s3 id id mp ap",  # 38
    "s7 ap s5 s7 ap s3 | mp ap s3 id mp mp",  # 39
    "id ap s7 id id s7 | id ap s5 mp ap s7",  # 40
    "d3 s5 id id mp s5 | s7 d3 s7 s5 id d3",  # 41
    "mp id ap mp ap mp | d3 id s5 ap s3 id",  # 42
    "s7 s5 s7 s7 s7 ap | d3 s3 mp s7 s7 ap",  # 43
    "d3 d3 mp ap d3 s3 | s7 id d3 d3 mp s5",  # 44
    "ap ap mp d3 s3 mp | d3 s7 d3 id ap id",  # 45
    "mp ap s7 mp s3 s3 | s5 ap id d3 id s3",  # 46
    "s5 s7 d3 d3 id mp | mp s3 s5 s7 mp id",  # 47
    "s7 s3 mp s7 d3 ap | mp mp mp s5 s5 mp",  # 48
    "mp id ap s5 d3 s3 | s5 s7 s3 s3 s7 s7",  # 49
    "id ap s5 s3 s7 s7 | id s7 s7 s7 s3 ap",  # 50
    "s5 s5 s3 mp ap id | s5 ap mp s5 s5 id",  # 51
    "s3 d3 s3 mp mp ap | id mp d3 s7 s3 s3",  # 52
    "s7 s3 mp s7 s5 id | s5 mp s3 mp s3 s7",  # 53
]))

REGISTRY: dict[str, Genotype] = {"proxyless_cifar": PROXYLESS_CIFAR}


def get(name_or_path: str | os.PathLike) -> Genotype:
    """A named genotype (case-insensitive, e.g. 'proxyless_cifar') or a genotype JSON file."""
    key = str(name_or_path)
    if key.lower() in REGISTRY:
        return REGISTRY[key.lower()]
    if os.path.exists(key):
        return Genotype.load(key)
    raise GenotypeError(f"unknown genotype {key!r}: not a named genotype ({', '.join(REGISTRY)}) "
                        f"and no such JSON file")
