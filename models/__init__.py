"""The method's generic pieces and one package per search space.

Generic: what every space shares (common.py: SpaceError, EdgeShape, the data's defaults), the SearchSpace
interface (search_space.py), the MixedOp with its binary gates and path sampling (mixed_op.py), the supernet
(supernet.py), the registry of spaces and what is built from any genotype (spaces.py), the pictures' shared
helpers (pictures.py).  Spaces: tree/ (the paper's CIFAR-10 tree cells), nb201/ (NAS-Bench-201), mbconv/ (the
paper's ImageNet MBConv chain); each holds its data and genotype, ops, network, SearchSpace and pictures.
Imports nothing from utils/ (arrows point scripts -> utils -> models)."""
from .tree.genotype import Genotype, GenotypeError
from .nb201.arch import CellGenotype
from .mixed_op import GATE_MODES, MixedOp
from .tree.ops import OPS, check_candidates
from .tree.net import DerivedNet, TreeNet
from .search_space import SearchSpace
from .common import EdgeShape, SpaceError
from .tree.arch import EDGE_NAMES, EDGES_PER_CELL, PRIMITIVES, block_plan
from .spaces import (DEFAULT_SPACE, SPACES, build_net, build_supernet, count_parameters, genotype_from_dict,
                     get_space, multiply_adds, space_of)
from .supernet import SuperNet

__all__ = ["Genotype", "GenotypeError", "CellGenotype", "GATE_MODES", "OPS", "MixedOp", "check_candidates", "DerivedNet",
           "TreeNet", "SearchSpace", "EDGE_NAMES", "EDGES_PER_CELL", "PRIMITIVES", "SpaceError", "EdgeShape", "block_plan",
           "DEFAULT_SPACE", "SPACES", "build_net", "build_supernet", "count_parameters", "genotype_from_dict", "get_space",
           "multiply_adds", "space_of", "SuperNet"]
