"""The Genotype type: one op name per searchable edge of the tree network, as data.

A genotype is read from / written to JSON, never ``eval``-ed:
    {"space": "proxyless_cifar_tree", "B": 18, "F": 400, "ops": [[12 op names], ... 3*B blocks]}
It imports only the space description (models/tree/arch.py), so models and the named genotypes in
genotypes.py can both use it without an import cycle.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .arch import EDGE_NAMES, EDGES_PER_CELL, NUM_STAGES, PRIMITIVES, SpaceError, check_macro

SPACE_NAME = "proxyless_cifar_tree"


class GenotypeError(SpaceError):
    """A genotype that does not fit the space, or a genotype file that cannot be read."""


@dataclass(frozen=True)
class Genotype:
    """B blocks per stage, final width F, and ops[block][edge] (edge order: models/tree/arch.py EDGE_NAMES)."""

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

    def describe(self) -> str:
        return f"B={self.B} F={self.F}"

    def ops_used(self) -> set[str]:
        return {op for block in self.ops for op in block}

    def describe_counts(self) -> str:
        """'sep_3x3 5, identity 2, ...': the ops used and how often."""
        return ", ".join(f"{k} {v}" for k, v in self.op_counts().items() if v)

    def op_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in PRIMITIVES}
        for block in self.ops:
            for op in block:
                counts[op] += 1
        return counts

    # ---- JSON
    def to_dict(self) -> dict:
        return {"space": self.space, "B": self.B, "F": self.F, "ops": [list(b) for b in self.ops]}

    def to_json(self) -> str:
        """The JSON text, one block per line (files: utils.checkpoint.save_genotype writes it atomically)."""
        blocks = ",\n    ".join(json.dumps(list(b)) for b in self.ops)
        return (f'{{\n  "space": {json.dumps(self.space)},\n  "B": {self.B},\n  "F": {self.F},\n'
                f'  "ops": [\n    {blocks}\n  ]\n}}\n')

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
