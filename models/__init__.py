"""The search spaces and their networks: the SearchSpace interface (search_space.py), the tree-cell space
of the paper (space.py, genotype.py, operations.py, cells.py, proxyless_nas.py, tree_space.py), the
NAS-Bench-201 space (nb201.py, nb201_net.py, nb201_space.py), the generic supernet with its MixedOps
(supernet.py, operations.py) and the registry (spaces.py).  Imports nothing from utils/ (arrows point
scripts -> utils -> models)."""
from .genotype import Genotype, GenotypeError
from .nb201 import CellGenotype
from .operations import GATE_MODES, OPS, MixedOp, check_candidates
from .proxyless_nas import DerivedNet, TreeNet
from .search_space import SearchSpace
from .space import EDGE_NAMES, EDGES_PER_CELL, PRIMITIVES, SpaceError, block_plan
from .spaces import (DEFAULT_SPACE, SPACES, build_net, build_supernet, count_parameters, genotype_from_dict, get_space,
                     multiply_adds, space_of)
from .supernet import SuperNet

__all__ = ["Genotype", "GenotypeError", "CellGenotype", "GATE_MODES", "OPS", "MixedOp", "check_candidates", "DerivedNet",
           "TreeNet", "SearchSpace", "EDGE_NAMES", "EDGES_PER_CELL", "PRIMITIVES", "SpaceError", "block_plan",
           "DEFAULT_SPACE", "SPACES", "build_net", "build_supernet", "count_parameters", "genotype_from_dict", "get_space",
           "multiply_adds", "space_of", "SuperNet"]
