"""The one interface a search space implements; the method (MixedOp, path sampling, alpha, the architect,
the latency objective, the training loop, the run scaffold) reads a space only through it.

A space supplies:
* its candidate ops (``primitives``, ``make_op``) and the size of its network (``macro``: named integers,
  e.g. the tree space's B and F, NAS-Bench-201's C and N, with defaults and help for the flags);
* its *decisions*: the rows of the supernet's alpha.  Every searchable edge of the network reads one
  row; the tree space has one decision per edge, NAS-Bench-201 six decisions shared by all 3N cells (the
  benchmark's convention: one cell architecture for the whole network);
* ``build_body``: the network with ``make_edge(decision, channels)`` on every searchable edge -- the same
  builder gives the supernet (MixedOps) and the derived network (one op per edge), so the two share
  module names and a supernet's weights map onto a derived network by name (SuperNet.derived_state_dict);
* its genotype type (one op name per decision, plus whatever the space keeps with it: the tree genotype
  carries B and F, a NAS-Bench-201 genotype is only the cell) and its JSON codec;
* latency-table contexts (utils/latency_table.py): for every distinct edge shape, a part of the network
  (a tree block, a NAS-Bench-201 cell) that can be built with any op on each of its searchable edges, its
  ``input_groups`` (the edges that read one tensor, which a table prices together), and every searchable
  edge's (decision, channels, map size), so that a table adds up to a network group by group.
Pictures are drawn per space by visualize_cifar.py from the same description.

Why alpha is one (decisions x candidates) parameter held by the supernet (models/supernet.py): sharing a
decision among edges is then nothing but an index; sampling every decision, the "two"-mode rescale,
log p(architecture) and the expected latency are each one tensor operation; a checkpoint holds one tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch.nn as nn


from .common import IMAGE_SIZE, NUM_CLASSES, EdgeShape, SpaceError  # noqa: F401  (re-exported)


EdgeFactory = Callable[[int, EdgeShape], nn.Module]  # (decision, shape) -> module on that edge


@dataclass(frozen=True)
class LatencyContext:
    """A part of the network in which a latency table times the ops of one edge shape: ``build(ops)`` is
    the part (a tree block, a NAS-Bench-201 cell, an MBConv block) with ``ops[e]`` on its searchable edge e,
    each edge of ``shape``; its input is (C, H, W) ``in_shape``.  ``key`` names the part."""

    key: str
    build: Callable[[Sequence[str]], nn.Module]
    in_shape: tuple[int, int, int]
    shape: EdgeShape


@dataclass(frozen=True)
class LatencyEdge:
    """A searchable edge of a network for a latency table: which decision it reads, at which shape."""

    decision: int
    shape: EdgeShape


@dataclass(frozen=True)
class LatencyGroup:
    """The searchable edges of one cell / block that read one tensor (one of ``input_groups``), for a latency
    table: the decisions they read, in the group's order, and their shape.  A table prices a group's ops
    together, because ops that read one tensor do not cost the sum of their costs alone."""

    decisions: tuple[int, ...]
    shape: EdgeShape


class SearchSpace:
    """Base of the spaces (models/tree/space.py, models/nb201/space.py); see the module docstring."""

    name: str = ""  # the --space value
    network_name: str = ""  # what messages call its network
    genotype_space: str = ""  # the "space" field of the genotype JSON
    primitives: tuple[str, ...] = ()
    op_codes: dict[str, str] = {}
    macro_defaults: dict[str, int | tuple[int, ...]] = {}  # an int, or a tuple of ints (per stage)
    macro_help: dict[str, str] = {}
    # the op of the table's baseline network and contexts (edge costs are relative to it) on every edge where
    # the space allows it; ``baseline_for`` names another where it does not
    baseline_op: str = ""
    default_genotype: str = ""  # the named architecture (genotypes.py) that train/export use when given none
    # the data a network of this space is drawn and exported for when no checkpoint says (CIFAR-10's by default)
    data_size: tuple[int, int] = (IMAGE_SIZE, NUM_CLASSES)  # (image size, classes)
    small_macro: dict = {}  # the network size of a short run (test_run.py): small enough for a CPU's minutes
    # a table of every architecture's accuracy shipped with the project, which judges a search (NAS-Bench-201's)
    accuracy_table: str | None = None
    # train_cifar.py's recipe for this space's networks: the defaults of its recipe flags (dest -> value); lr is
    # per 64 images (scaled with the batch)
    train_recipe: dict[str, object] = {}
    parameter_free: tuple[str, ...] = ()  # ops without weights (the ones a young supernet tends to prefer)
    # search_cifar.py flags whose default depends on the space (dest -> value), chosen by measurement
    search_defaults: dict[str, str] = {}
    # Adam's learning rate of alpha per search algorithm when --arch-lr is not given (the paper's by default)
    arch_lr_defaults: dict[str, float] = {"gradient": 0.006, "reinforce": 0.01}
    # the searchable edges of one cell / block (their index there) grouped by the tensor they read: ops of one
    # input interact (caches; onnxruntime computes identical parameter-free ops of one input once), so a
    # latency table prices every assignment of ops to a group (utils/latency_table.py)
    input_groups: tuple[tuple[int, ...], ...] = ()

    # ---- network size
    def macro(self, values: dict | None = None) -> dict[str, int]:
        """The full macro settings: ``values`` over the defaults, checked (SpaceError names the problem)."""
        values = dict(values or {})
        unknown = set(values) - set(self.macro_defaults)
        if unknown:
            raise SpaceError(f"the {self.name} space has no setting(s) {', '.join(sorted(unknown))}; its network "
                             f"is sized by {', '.join(self.macro_defaults)}")
        out = {**self.macro_defaults, **{k: tuple(v) if isinstance(v, list) else v  # (JSON has no tuples)
                                         for k, v in values.items() if v is not None}}
        self.check_macro(out)
        return out

    def check_macro(self, macro: dict[str, int]) -> None:
        raise NotImplementedError

    def check_image_size(self, size: int) -> None:
        """SpaceError unless the network can take square images of ``size`` pixels."""
        raise NotImplementedError

    def check_candidates(self, names: Sequence[str]) -> tuple[str, ...]:
        """A candidate list of this space (order kept; unknown, repeated or no names refused)."""
        names = tuple(names)
        unknown = [n for n in names if n not in self.primitives]
        if unknown:
            raise SpaceError(f"unknown candidate op(s) {', '.join(unknown)} for the {self.name} space; "
                             f"valid ops: {', '.join(self.primitives)}")
        if len(set(names)) != len(names):
            raise SpaceError(f"candidate list has duplicates: {', '.join(names)}")
        if not names:
            raise SpaceError("the candidate list is empty")
        return names

    # ---- which op may sit where
    def allows(self, op: str, shape: EdgeShape) -> bool:
        """Whether ``op`` may sit on an edge of ``shape`` (an MBConv space forbids skipping a block that changes
        channels or stride).  Every part of the method honours it: the supernet holds and samples only the
        allowed candidates of an edge (``SuperNet.mask``), the latency table prices only them, the knapsack and
        the cheapest-architecture rule choose among them."""
        return True

    def baseline_for(self, shape: EdgeShape) -> str:
        """The baseline op of edges of ``shape`` (the latency table's zero point there)."""
        return self.baseline_op

    def allowed(self, macro: dict[str, int], candidates: Sequence[str], image_size: int = IMAGE_SIZE
                ) -> list[tuple[int, ...]]:
        """Per decision, the indices of ``candidates`` allowed on every edge that reads it (SpaceError if none is)."""
        edges = self.latency_edges(macro, image_size)
        out: list[set[int] | None] = [None] * len(self.decision_names(macro))
        for e in edges:
            ok = {i for i, op in enumerate(candidates) if self.allows(op, e.shape)}
            out[e.decision] = ok if out[e.decision] is None else out[e.decision] & ok
        for d, ok in enumerate(out):
            if not ok:
                raise SpaceError(f"no candidate ({', '.join(candidates)}) is allowed on decision "
                                 f"{self.decision_names(macro)[d]} of the {self.name} space")
        return [tuple(sorted(ok)) for ok in out]

    # ---- decisions and genotypes
    def decision_names(self, macro: dict[str, int]) -> list[str]:
        raise NotImplementedError

    def genotype_from_ops(self, ops: Sequence[str], macro: dict[str, int]):
        """The genotype whose decision d is ``ops[d]``."""
        raise NotImplementedError

    def ops_of(self, genotype) -> tuple[str, ...]:
        """One op name per decision."""
        raise NotImplementedError

    def genotype_macro(self, genotype) -> dict[str, int]:
        """The macro settings a genotype carries ({} when it carries none)."""
        return {}

    def genotype_from_dict(self, d: dict):
        raise NotImplementedError

    def check_genotype(self, genotype, macro: dict[str, int]) -> None:
        """SpaceError unless ``genotype`` is of this space and fits a network of ``macro``."""
        if getattr(genotype, "space", None) != self.genotype_space:
            raise SpaceError(f"genotype is for space {getattr(genotype, 'space', None)!r}, not the {self.name} space")
        carried = self.genotype_macro(genotype)
        clash = {k: (v, macro[k]) for k, v in carried.items() if macro.get(k) != v}
        if clash:
            raise SpaceError("genotype has " + ", ".join(f"{k}={a}" for k, (a, _) in clash.items())
                             + ", the network " + ", ".join(f"{k}={b}" for k, (_, b) in clash.items()))

    # ---- modules
    def make_op(self, name: str, shape: EdgeShape) -> nn.Module:
        """The module of op ``name`` on an edge of ``shape`` (SpaceError where ``allows`` says no)."""
        raise NotImplementedError

    def build_body(self, macro: dict[str, int], make_edge: EdgeFactory, num_classes: int, image_size: int,
                   path_drop: float = 0.0, cell_drop: float = 0.0) -> nn.Module:
        raise NotImplementedError

    def refuse_drops(self, path_drop: float, cell_drop: float) -> None:
        """SpaceError for a network without the tree space's path and cell drop asked to drop."""
        if path_drop or cell_drop:
            raise SpaceError(f"path drop and cell drop belong to the tree space; the {self.network_name} network "
                             "has neither")

    def derived(self, genotype, macro: dict[str, int], num_classes: int, image_size: int,
                path_drop: float = 0.0, cell_drop: float = 0.0) -> nn.Module:
        """The network of ``genotype``: every searchable edge its op.  It carries ``genotype``, ``macro``
        and ``space`` (export, pictures and checkpoints read them)."""
        self.check_genotype(genotype, macro)
        ops = self.ops_of(genotype)
        net = self.build_body(macro, lambda d, shape: self.make_op(ops[d], shape), num_classes, image_size,
                              path_drop, cell_drop)
        net.genotype, net.macro, net.space = genotype, dict(macro), self
        return net

    # ---- pictures (Graphviz; visualize_cifar.py writes them)
    def pictures(self, genotype, macro: dict, title: str = "", image_size: int = IMAGE_SIZE,
                 num_classes: int = NUM_CLASSES, probs=None, candidates: Sequence[str] = (), block: int = 0) -> dict:
        """kind -> graphviz.Digraph: the space's drawings of ``genotype`` in the network of ``macro`` and, given
        ``probs`` (decisions x candidates, a search's softmax(alpha)), its heat map as "alpha".  ``block``: which
        block's cell, where the space draws one per block."""
        raise NotImplementedError

    # ---- latency tables
    def network_key(self, macro: dict[str, int], num_classes: int, image_size: int) -> str:
        """The latency-table key of the whole network with the baseline op on every searchable edge."""
        size = "-".join(f"{k}{','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in macro.items())
        return f"network:{self.name}:{size}:{self.baseline_op}:{image_size}x{image_size}:n{num_classes}"

    def baseline_network(self, macro: dict[str, int], num_classes: int, image_size: int) -> nn.Module:
        """The network with the baseline op (``baseline_for``) on every searchable edge (the table's fixed cost)."""
        return self.build_body(macro, lambda d, shape: self.make_op(self.baseline_for(shape), shape), num_classes,
                               image_size)

    def latency_contexts(self, macro: dict[str, int], image_size: int) -> list[LatencyContext]:
        """One context per distinct shape of the searchable edges, in network order."""
        raise NotImplementedError

    def latency_edges(self, macro: dict[str, int], image_size: int) -> list[LatencyEdge]:
        raise NotImplementedError

    def latency_groups(self, macro: dict[str, int], image_size: int) -> list[LatencyGroup]:
        """Every cell's / block's ``input_groups``, in network order (from ``latency_edges``, which lists the
        edges cell by cell in the cell's edge order)."""
        edges, per_cell = self.latency_edges(macro, image_size), sum(len(g) for g in self.input_groups)
        assert len(edges) % per_cell == 0, (len(edges), per_cell)
        out = []
        for start in range(0, len(edges), per_cell):
            cell = edges[start:start + per_cell]
            for g in self.input_groups:
                assert len({cell[e].shape for e in g}) == 1  # a group reads one tensor
                out.append(LatencyGroup(tuple(cell[e].decision for e in g), cell[g[0]].shape))
        return out

    def group_key(self, ops: Sequence[str], shape: EdgeShape) -> str:
        """The latency-table key of ``ops`` on the edges of one input group (in its order), each of ``shape``."""
        raise NotImplementedError

    def describe_macro(self, macro: dict[str, int]) -> str:
        return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in macro.items())
