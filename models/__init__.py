"""Candidate ops, MixedOp, tree cells, the supernet and the derived network."""
from .operations import GATE_MODES, OPS, MixedOp, check_candidates
from .proxyless_nas import DerivedNet, SuperNet, TreeNet, build_net, build_supernet, count_parameters
from .space import EDGE_NAMES, EDGES_PER_CELL, PRIMITIVES, block_plan

__all__ = ["GATE_MODES", "OPS", "MixedOp", "check_candidates", "DerivedNet", "SuperNet", "TreeNet", "build_net",
           "build_supernet", "count_parameters", "EDGE_NAMES", "EDGES_PER_CELL", "PRIMITIVES", "block_plan"]
