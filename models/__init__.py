"""The search space and its networks: space description, Genotype type, candidate ops, MixedOp, tree
cells, the supernet and the derived network.  Imports nothing from utils/ (arrows point scripts ->
utils -> models)."""
from .genotype import Genotype, GenotypeError
from .operations import GATE_MODES, OPS, MixedOp, check_candidates
from .proxyless_nas import DerivedNet, SuperNet, TreeNet, build_net, build_supernet, count_parameters, multiply_adds
from .space import EDGE_NAMES, EDGES_PER_CELL, PRIMITIVES, SpaceError, block_plan

__all__ = ["Genotype", "GenotypeError", "GATE_MODES", "OPS", "MixedOp", "check_candidates", "DerivedNet", "SuperNet",
           "TreeNet", "build_net", "build_supernet", "count_parameters", "multiply_adds", "EDGE_NAMES", "EDGES_PER_CELL", "PRIMITIVES",
           "SpaceError", "block_plan"]
