"""Named architectures and one lookup for every way a genotype is given: a name, a NAS-Bench-201 string,
or a JSON file (whose "space" names its space).

Named: the authors' released CIFAR-10 network (tree space), three NAS-Bench-201 cells and the authors' three
ImageNet networks (MBConv space).  The genotype types live in models/tree/genotype.py (tree), models/nb201/arch.py
(NAS-Bench-201 cell) and models/mbconv/arch.py.
"""
from __future__ import annotations

import json
import os

from models.tree.genotype import SPACE_NAME, Genotype, GenotypeError, uniform
from models.mbconv import NAMED as MBCONV_NAMED
from models.nb201.arch import NAMED as NB201_NAMED
from models.nb201.arch import CellGenotype
from models.common import SpaceError
from models.tree.arch import OP_CODES
from models.spaces import genotype_from_dict

__all__ = ["SPACE_NAME", "Genotype", "GenotypeError", "CellGenotype", "uniform", "PROXYLESS_CIFAR", "REGISTRY", "get"]


# ------------------------------------------------------------------ named genotypes
_OP_OF_CODE = {code: op for op, code in OP_CODES.items()}


def _decode(rows: list[str]) -> list[list[str]]:
    return [[_OP_OF_CODE[t] for t in row.replace("|", " ").split()] for row in rows]


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

# the authors' three ImageNet networks (MBConv space): proxyless_gpu, proxyless_cpu, proxyless_mobile
REGISTRY: dict[str, object] = {"proxyless_cifar": PROXYLESS_CIFAR, **NB201_NAMED, **MBCONV_NAMED}


def get(spec: str | os.PathLike):
    """A genotype from a name (case-insensitive: proxyless_cifar, nb201_best_cifar10, ...), a NAS-Bench-201
    string (|op~0|+|op~0|op~1|+|op~0|op~1|op~2|) or a genotype JSON file of either space."""
    key = str(spec)
    if key.lower() in REGISTRY:
        return REGISTRY[key.lower()]
    if key.lstrip().startswith("|"):
        return CellGenotype.from_string(key)
    if os.path.exists(key):
        return load(key)
    raise GenotypeError(f"unknown genotype {key!r}: not a named genotype ({', '.join(REGISTRY)}), not a "
                        f"NAS-Bench-201 string (|op~0|+|op~0|op~1|+...) and no such JSON file")


def load(path: str | os.PathLike):
    """A genotype JSON file of any space."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise GenotypeError(f"cannot read genotype file {path}: {e.strerror}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"{path}: genotype is not valid JSON: {e}") from None
    try:
        return genotype_from_dict(d)
    except SpaceError as e:
        raise GenotypeError(f"{path}: {e}") from None
