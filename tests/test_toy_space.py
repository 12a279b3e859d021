"""A toy third search space, defined here and registered nowhere, shows that the SearchSpace interface
(models/search_space.py) is all the method's generic pieces need: the supernet (alpha, mask, gate modes,
derive, derived_state_dict), MixedOp and path sampling, the architecture step, the latency tables
(keys, GroupCosts, predictions) and the objective (expected latency, knapsack).

The toy network: stem conv -> edge0 (C -> C) -> edge1 (C -> 2C, stride 2) -> edge2 (2C -> 2C) -> BN ->
pool -> linear; candidates conv3, conv1, skip, where skip may only sit on an edge that keeps its shape
(so never on edge1, whose baseline is conv1).  Five gaps it first found (a decision with one allowed candidate in "two" mode, the
latency term's pair mask, predictions and tables of an unregistered space, the architect's TensorBoard
counts) are fixed and tested here.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Sequence

import pytest
import torch
import torch.nn as nn

from models.search_space import EdgeShape, LatencyContext, LatencyEdge, SearchSpace, SpaceError
from models.supernet import SuperNet
from models.mixed_op import MixedOp, STOCHASTIC_MODES
from utils import latency_table as T
from utils import objective as O
from utils.architect import Architect, LatencyTerm
from utils.train import Amp

TOY_NAME = "toy-chain"  # registered nowhere: models/spaces.py does not know it
NUM_CLASSES, IMAGE_SIZE = 5, 8
CANDS = ("conv3", "conv1", "skip")
SKIP = CANDS.index("skip")


# ---------------------------------------------------------------- the toy space
@dataclass(frozen=True)
class ToyGenotype:
    ops: tuple[str, ...]
    space: str = TOY_NAME

    def to_dict(self) -> dict:
        return {"space": self.space, "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, d: dict) -> "ToyGenotype":
        if not isinstance(d, dict) or d.get("space") != TOY_NAME or not isinstance(d.get("ops"), list):
            raise SpaceError(f"not a {TOY_NAME} genotype: {d!r}")
        return cls(tuple(d["ops"]))


def edge_shapes(C: int, size: int) -> list[EdgeShape]:
    return [EdgeShape(C, C, 1, size), EdgeShape(C, 2 * C, 2, size), EdgeShape(2 * C, 2 * C, 1, -(-size // 2))]


class ToyNet(nn.Module):
    def __init__(self, C: int, make_edge, num_classes: int, image_size: int):
        super().__init__()
        self.stem = nn.Conv2d(3, C, 3, 1, 1, bias=False)
        self.edges = nn.ModuleList(make_edge(d, s) for d, s in enumerate(edge_shapes(C, image_size)))
        self.final_bn = nn.BatchNorm2d(2 * C)  # a direct child with BN: what a sync-BN conversion replaces
        self.classifier = nn.Linear(2 * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for edge in self.edges:
            x = edge(x)
        return self.classifier(torch.relu(self.final_bn(x)).mean((2, 3)))


class ToySpace(SearchSpace):
    name = genotype_space = TOY_NAME
    primitives = CANDS
    op_codes = {"conv3": "c3", "conv1": "c1", "skip": "--"}
    macro_defaults = {"C": 4}
    macro_help = {"C": "stem channels"}
    baseline_op = "skip"
    parameter_free = ("skip",)
    input_groups = ((0,),)  # one searchable edge per "cell"

    def check_macro(self, macro):
        if isinstance(macro["C"], bool) or not isinstance(macro["C"], int) or macro["C"] < 1:
            raise SpaceError(f"C must be an integer >= 1, got {macro['C']!r}")

    def check_image_size(self, size):
        if size < 2:
            raise SpaceError(f"image size must be >= 2, got {size}")

    def allows(self, op, shape):
        return op != "skip" or shape.keeps_shape

    def baseline_for(self, shape):
        return "skip" if shape.keeps_shape else "conv1"

    def decision_names(self, macro):
        return ["edge0", "edge1", "edge2"]

    def genotype_from_ops(self, ops, macro):
        return ToyGenotype(tuple(ops))

    def ops_of(self, genotype):
        return genotype.ops

    def genotype_from_dict(self, d):
        return ToyGenotype.from_dict(d)

    def make_op(self, name, shape):
        if not self.allows(name, shape):
            raise SpaceError(f"{name} may not sit on an edge of {shape}")
        if name == "skip":
            return nn.Identity()
        k = 3 if name == "conv3" else 1
        return nn.Sequential(nn.BatchNorm2d(shape.in_channels), nn.ReLU(),
                             nn.Conv2d(shape.in_channels, shape.out_channels, k, shape.stride, k // 2, bias=False))

    def build_body(self, macro, make_edge, num_classes, image_size, path_drop=0.0, cell_drop=0.0):
        return ToyNet(macro["C"], make_edge, num_classes, image_size)

    def latency_edges(self, macro, image_size):
        return [LatencyEdge(d, s) for d, s in enumerate(edge_shapes(macro["C"], image_size))]

    def latency_contexts(self, macro, image_size):
        return [LatencyContext(f"toy-edge:c{s.in_channels}-{s.out_channels}:s{s.stride}:{s.in_size}",
                               lambda ops, s=s: self.make_op(ops[0], s), (s.in_channels, s.in_size, s.in_size), s)
                for s in edge_shapes(macro["C"], image_size)]

    def group_key(self, ops: Sequence[str], s: EdgeShape) -> str:
        return f"toy-group:{'+'.join(ops)}:c{s.in_channels}-{s.out_channels}:s{s.stride}:{s.in_size}"


TOY = ToySpace()
MACRO = {"C": 4}
S0, S1, S2 = EdgeShape(4, 4, 1, 8), EdgeShape(4, 8, 2, 8), EdgeShape(8, 8, 1, 4)  # written out by hand


def supernet(candidates=CANDS, seed=0) -> SuperNet:
    torch.manual_seed(seed)
    return SuperNet(TOY, MACRO, candidates, NUM_CLASSES, IMAGE_SIZE)


def batch(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g), torch.randint(NUM_CLASSES, (n,), generator=g)


def favour_skip(net: SuperNet, by: float = 6.0) -> None:
    """alpha with skip far ahead in every row (also where it is forbidden)."""
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[:, SKIP] = by


# ---------------------------------------------------------------- the space itself
def test_toy_space_is_not_registered_and_its_genotype_round_trips_through_json():
    from models.spaces import SPACES
    assert TOY_NAME not in SPACES and all(s is not TOY for s in SPACES.values())
    g = ToyGenotype(("conv3", "conv1", "skip"))
    back = TOY.genotype_from_dict(json.loads(json.dumps(g.to_dict())))
    assert back == g and TOY.ops_of(back) == ("conv3", "conv1", "skip")
    with pytest.raises(SpaceError):
        TOY.genotype_from_dict({"space": "tree", "ops": ["conv3"] * 3})
    assert TOY.macro() == {"C": 4}
    with pytest.raises(SpaceError, match="no setting"):
        TOY.macro({"B": 1})
    assert TOY.allowed(MACRO, CANDS) == [(0, 1, 2), (0, 1), (0, 1, 2)]
    assert [e.shape for e in TOY.latency_edges(MACRO, IMAGE_SIZE)] == [S0, S1, S2]


# ---------------------------------------------------------------- 1. the supernet
def test_supernet_alpha_mask_and_edges_hold_only_allowed_candidates():
    net = supernet()
    assert tuple(net.alpha.shape) == (3, 3) and net.num_decisions == 3
    want = torch.ones(3, 3, dtype=torch.bool)
    want[1, SKIP] = False
    assert torch.equal(net.mask, want)
    mixed = net.mixed_ops()
    assert [m.decision for m in mixed] == [0, 1, 2]
    assert [sorted(m.ops.keys()) for m in mixed] == [["0", "1", "2"], ["0", "1"], ["0", "1", "2"]]
    assert not any(k.startswith(f"edges.1.ops.{SKIP}") for k in net.state_dict())
    assert isinstance(mixed[0].ops[SKIP], nn.Identity)
    # the supernet's children are the body's: one dict
    assert net._body._modules is net._modules and net.edges[1] is mixed[1]
    p = net.probs()
    assert float(p[1, SKIP]) == 0.0 and torch.allclose(p.sum(1), torch.ones(3))


@pytest.mark.parametrize("mode", STOCHASTIC_MODES)
def test_forbidden_candidate_is_never_sampled_in_any_stochastic_mode(mode):
    net = supernet()
    favour_skip(net)  # skip would win nearly every draw on edge1 if the mask were ignored
    x, _ = batch()
    skip_elsewhere = 0
    for seed in range(40):
        torch.manual_seed(seed)
        with net.gate_mode(mode):
            out = net(x)
        assert out.shape == (4, NUM_CLASSES) and torch.isfinite(out).all()
        assert SKIP not in net.sampled[1] and net.active[1] != SKIP, (mode, seed, net.sampled)
        assert all(s in m.sampled for m in net.mixed_ops() for s in (m.active,))
        assert all(str(i) in m.ops for m in net.mixed_ops() for i in m.sampled)  # every sampled path exists
        skip_elsewhere += sum(net.active[d] == SKIP for d in (0, 2))
        lp = net.log_prob().detach()
        assert torch.isfinite(lp) and float(lp) <= 0.0
    if mode == "full":
        assert net.sampled[1] == (0, 1) and net.sampled[0] == (0, 1, 2)
    # the draws do reach skip where it is allowed: the assertion above could have failed
    assert skip_elsewhere > 0
    # log p of an architecture with skip on edge1 is -inf (probability 0), of an allowed one finite
    assert float(net.log_prob(torch.tensor([0, SKIP, 0])).detach()) == float("-inf")
    assert math.isfinite(float(net.log_prob(torch.tensor([[SKIP, 1, SKIP], [0, 0, 0]])).detach()[0]))


def test_derive_and_argmax_never_pick_the_forbidden_candidate():
    net = supernet()
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([[0.0, 1.0, 10.0], [0.0, 1.0, 10.0], [2.0, 0.0, 10.0]]))
    assert net.derive() == ToyGenotype(("skip", "conv1", "skip"))
    with torch.no_grad():
        net.alpha[1] = torch.tensor([3.0, 1.0, 10.0])
    assert net.derive() == ToyGenotype(("skip", "conv3", "skip"))
    with net.gate_mode("argmax"):
        net(batch()[0])
    assert [m.active for m in net.mixed_ops()] == [SKIP, 0, SKIP]


def test_a_genotype_with_skip_on_the_strided_edge_is_one_space_error():
    net = supernet()
    bad = ToyGenotype(("conv3", "skip", "conv3"))
    with pytest.raises(SpaceError, match="skip on edge1"):
        net.indices_of(bad)
    with pytest.raises(SpaceError):
        net.fix(bad)
    with pytest.raises(SpaceError):
        net.derived_state_dict(bad)
    with pytest.raises(SpaceError, match="may not sit"):
        TOY.derived(bad, MACRO, NUM_CLASSES, IMAGE_SIZE)
    assert net.indices_of(ToyGenotype(("skip", "conv1", "conv3"))) == [SKIP, 1, 0]
    with pytest.raises(SpaceError, match="lacks"):  # an op the supernet was not built with
        supernet(("conv3", "conv1")).indices_of(ToyGenotype(("skip", "conv1", "conv3")))


def test_no_candidate_allowed_on_a_decision_is_refused():
    with pytest.raises(SpaceError, match="edge1"):
        supernet(("skip",))
    with pytest.raises(SpaceError, match="edge1"):
        TOY.allowed(MACRO, ("skip",))


# ---------------------------------------------------------------- 2. the architecture step
def hand_table(seed=0, candidates=CANDS, space_in_meta=False) -> T.LatencyTable:
    """Made-up latencies for every key the toy network needs.  ``space_in_meta``: the meta names the space
    as utils.latency.table_meta writes it (LatencyTable.space then looks it up in the registry)."""
    g = torch.Generator().manual_seed(seed)
    keys = T.required_keys(TOY, MACRO, candidates, NUM_CLASSES, IMAGE_SIZE)
    entries = {k: {"median_ms": float(torch.rand((), generator=g)) * 2 + 0.1, "runs": 1} for k in keys}
    meta = {"macro": dict(MACRO), "candidates": list(candidates), "batch_size": 1, "image_size": IMAGE_SIZE,
            "num_classes": NUM_CLASSES, "backend": "hand", "device_name": "test"}
    if space_in_meta:
        meta["space"] = TOY_NAME
    return T.LatencyTable(entries, meta)


@pytest.mark.parametrize("mode", ["two", "full"])
def test_architecture_step_moves_only_sampled_allowed_alphas(mode):
    """utils.architect.Architect (the search's own step, with the latency term): the alpha gradient lands
    only in sampled, allowed entries; never on skip of edge1, though alpha favours it."""
    net = supernet()
    favour_skip(net, by=1.0)
    # (a table without "space" in its meta: with it LatencyModel fails, see the xfail test below)
    term = LatencyTerm(O.LatencyModel(hand_table(), net), target=1.0, lam=1.0)
    arch = Architect(net, Amp(None, "cpu"), nn.CrossEntropyLoss(), mode=mode, latency=term, lr=0.01)
    touched = torch.zeros(3, 3, dtype=torch.bool)
    for seed in range(12):
        x, y = batch(seed)
        torch.manual_seed(seed)
        before = net.alphas()
        ce, logits = arch.step(x, y)
        assert torch.isfinite(ce) and logits.shape == (4, NUM_CLASSES)
        grad = net.alpha.grad
        assert grad is not None and torch.isfinite(grad).all()
        assert float(grad[1, SKIP]) == 0.0 and float(net.alpha.detach()[1, SKIP]) == float(before[1, SKIP])
        assert SKIP not in net.sampled[1]
        for d, paths in enumerate(net.sampled):
            outside = [i for i in range(3) if i not in paths]
            assert torch.all(grad[d, outside] == 0), (mode, seed, d, paths, grad)
            if mode == "two":  # and alpha moved only in the pair
                assert torch.equal(net.alpha.detach()[d, outside], before[d, outside])
        touched |= grad != 0
    assert not bool(touched[1, SKIP]) and bool(touched[0, SKIP]) and bool(touched[1, :2].all())


def test_two_mode_with_an_edge_that_allows_one_candidate():
    net = supernet(("conv3", "skip"))
    assert net.mask[1].tolist() == [True, False]
    term = LatencyTerm(O.LatencyModel(hand_table(candidates=("conv3", "skip")), net), target=1.0)
    arch = Architect(net, Amp(None, "cpu"), nn.CrossEntropyLoss(), mode="two", latency=term)
    x, y = batch()
    arch.step(x, y)
    assert net.sampled[1] == (0,) and float(net.alpha.grad[1, 1]) == 0.0


def test_expected_latency_in_two_mode_with_a_one_candidate_edge_uses_the_other_pairs():
    net = supernet()
    model = O.LatencyModel(hand_table(), net)
    # what "two"-mode sampling gives where an edge allows one candidate (_sample_masked: a 1-tuple); set by hand,
    # since SuperNet.resample cannot yet produce it (the xfail test above)
    net.mode, net.sampled = "two", [(0, SKIP), (1,), (SKIP, 1)]
    p = model.probs(net).detach()
    assert float(p[0, 1]) == 0.0 and float(p[2, 0]) == 0.0 and float(p[1, 1]) == 1.0


# ---------------------------------------------------------------- 3. the derived network
@pytest.mark.parametrize("ops", [("conv1", "conv3", "skip"), ("skip", "conv1", "conv3"), ("conv3", "conv3", "conv1")])
def test_derived_network_takes_the_supernet_weights_and_computes_the_same(ops):
    net = supernet()
    x, _ = batch(1)
    with torch.no_grad(), net.gate_mode("uniform"):  # running statistics away from their defaults
        for seed in range(6):
            torch.manual_seed(seed)
            net(x * (seed + 1))
    net.eval()
    geno = ToyGenotype(ops)
    derived = TOY.derived(geno, net.macro, NUM_CLASSES, IMAGE_SIZE)
    assert derived.genotype == geno and derived.space is TOY and derived.macro == MACRO
    assert not any(isinstance(m, MixedOp) for m in derived.modules())
    derived.load_state_dict(net.derived_state_dict(geno), strict=True)
    derived.eval()
    net.fix(geno)
    with torch.no_grad(), net.gate_mode("fixed"):
        want = net(x)
    with torch.no_grad():
        got = derived(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # another genotype's weights give another output (the comparison could fail)
    other = ToyGenotype(tuple("conv1" if op == "conv3" else "conv3" if op == "conv1" else op for op in ops))
    net.fix(other)
    with torch.no_grad(), net.gate_mode("fixed"):
        assert not torch.allclose(net(x), got)


# ---------------------------------------------------------------- 4. latency tables and the objective
def hand_values():
    """A table with hand-picked costs: v[(op, shape)]; skip is the cheapest op wherever it is allowed."""
    v = {("conv3", S0): 0.7, ("conv1", S0): 0.4, ("skip", S0): 0.05,
         ("conv3", S1): 1.3, ("conv1", S1): 0.9,
         ("conv3", S2): 1.1, ("conv1", S2): 0.5, ("skip", S2): 0.02}
    fixed = 10.0
    entries = {TOY.group_key((op, ), s): {"median_ms": ms} for (op, s), ms in v.items()}
    entries[T.fixed_key(TOY, MACRO, NUM_CLASSES, IMAGE_SIZE)] = {"median_ms": fixed}
    # a cost for skip on the strided edge too, the lowest of all: nothing may read it
    entries[TOY.group_key(("skip",), S1)] = {"median_ms": -100.0}
    meta = {"macro": dict(MACRO), "batch_size": 1, "image_size": IMAGE_SIZE, "num_classes": NUM_CLASSES}
    return v, fixed, T.LatencyTable(entries, meta)


BASE = {S0: "skip", S1: "conv1", S2: "skip"}


def hand_latency(v, fixed, ops):
    return fixed + sum(v[op, s] - v[BASE[s], s] for op, s in zip(ops, (S0, S1, S2)))


def test_required_keys_are_the_allowed_ops_on_each_shape():
    keys = T.required_keys(TOY, MACRO, CANDS, NUM_CLASSES, IMAGE_SIZE)
    want = [T.fixed_key(TOY, MACRO, NUM_CLASSES, IMAGE_SIZE)]
    for s in (S0, S1, S2):  # the shape's baseline first
        want += [TOY.group_key((op,), s) for op in [BASE[s]] + [o for o in CANDS if o != BASE[s] and TOY.allows(o, s)]]
    assert keys == want and len(keys) == 9
    assert TOY.group_key(("skip",), S1) not in keys
    assert T.group_shapes(TOY, MACRO, IMAGE_SIZE) == [(1, S0), (1, S1), (1, S2)]
    assert [g.decisions for g in TOY.latency_groups(MACRO, IMAGE_SIZE)] == [(0,), (1,), (2,)]


def test_predictions_and_expected_latency_are_the_hand_sums():
    v, fixed, table = hand_values()
    costs = T.group_costs(table, TOY, MACRO, CANDS, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES)
    assert costs.fixed == fixed
    archs = [a for a in itertools.product(range(3), repeat=3) if a[1] != SKIP]
    got = costs.predict(torch.tensor(archs))
    for a, ms in zip(archs, got.tolist()):
        assert ms == pytest.approx(hand_latency(v, fixed, [CANDS[i] for i in a]), rel=1e-12)
    assert math.isinf(float(costs.predict(torch.tensor([[0, SKIP, 0]]))[0]))  # a forbidden one: never affordable
    # the expectation under the supernet's (masked) distribution, differentiable in alpha
    net = supernet()
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([[0.3, -0.2, 1.0], [0.5, 0.1, 4.0], [-1.0, 0.2, 0.7]]))
    p = torch.softmax(net.masked_alpha(), 1)
    exp = costs.expected(p)
    hand = fixed + sum(float(p.detach()[d, i]) * (v[CANDS[i], s] - v[BASE[s], s])
                       for d, s in enumerate((S0, S1, S2)) for i in range(3) if TOY.allows(CANDS[i], s))
    assert float(exp.detach()) == pytest.approx(hand, rel=1e-6)
    exp.backward()
    grad = net.alpha.grad
    assert torch.isfinite(grad).all() and float(grad[1, SKIP]) == 0.0 and float(grad.abs().sum()) > 0
    # LatencyModel (the search's object) gives the same, and predict_indices the same sums
    model = O.LatencyModel(table, net)
    assert float(model.expected(net).detach()) == pytest.approx(hand, rel=1e-6)
    assert model.predict_indices([SKIP, 0, 1]) == pytest.approx(hand_latency(v, fixed, ["skip", "conv3", "conv1"]))


def test_cheapest_never_puts_skip_where_it_is_forbidden():
    v, fixed, table = hand_values()
    costs = T.group_costs(table, TOY, MACRO, CANDS, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES)
    assert costs.cheapest() == [SKIP, 1, SKIP]
    assert math.isinf(float(costs.costs[1][1, SKIP]))


def test_knapsack_returns_the_most_probable_allowed_architecture_within_the_budget():
    v, fixed, table = hand_values()
    net = supernet()
    favour_skip(net, by=3.0)
    with torch.no_grad():
        net.alpha[:, 0] = 1.0  # conv3 second: it is the expensive one
    model = O.LatencyModel(table, net)
    log_p = torch.log_softmax(net.masked_alpha().detach().double(), 1)
    allowed = [a for a in itertools.product(range(3), repeat=3) if a[1] != SKIP]
    lat = {a: hand_latency(v, fixed, [CANDS[i] for i in a]) for a in allowed}
    for target in sorted(lat.values())[::3] + [max(lat.values()) + 1]:
        got = model.most_probable_within(net, target)
        assert got[1] != SKIP and all(bool(net.mask[d, i]) for d, i in enumerate(got))
        assert lat[tuple(got)] <= target + 1e-9
        best = max(float(sum(log_p[d, a[d]] for d in range(3))) for a in allowed if lat[a] <= target)
        assert float(sum(log_p[d, got[d]] for d in range(3))) == pytest.approx(best, abs=1e-9)
    assert model.most_probable_within(net, 0.0) == [SKIP, 1, SKIP]  # none within: the fastest allowed
    # the knapsack function itself, with skip the most probable everywhere (the unmasked log-probabilities)
    # and costs +inf where the space forbids it: it never takes it
    costs = T.group_costs(table, TOY, MACRO, CANDS, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES)
    raw = torch.log_softmax(net.alpha.detach().double(), 1)
    rows = [costs.costs[1][d] for d in range(3)]
    for budget in (2.5, 3.0, 10.0):
        got = O.most_probable_within(list(raw), rows, budget)
        assert got is not None and got[1] != SKIP
        assert float(sum(rows[d][i] for d, i in enumerate(got))) <= budget
    assert O.most_probable_within(list(raw), rows, -0.1) is None  # below the cheapest allowed (0: the baselines)


def test_predict_genotype_of_a_toy_genotype():
    v, fixed, table = hand_values()
    ops = ("conv3", "conv1", "skip")
    assert T.predict_genotype(table, ToyGenotype(ops), macro=MACRO, space=TOY) == pytest.approx(hand_latency(v, fixed, ops))


def test_latency_model_of_a_table_that_names_the_toy_space():
    net = supernet()
    O.LatencyModel(hand_table(space_in_meta=True), net)


def test_a_table_built_for_the_toy_space_covers_what_a_prediction_reads():
    """utils.latency.build_table times the toy's baseline network, contexts and calibration networks through the
    interface only (a very short timing: only the keys and the assembly are checked)."""
    from utils.latency import build_table
    table = build_table(TOY, MACRO, CANDS, warmup=0, repeats=1, progress=False, num_classes=NUM_CLASSES,
                        image_size=IMAGE_SIZE, calibration=3)
    assert table.meta["space"] == TOY_NAME
    assert set(T.required_keys(TOY, MACRO, CANDS, NUM_CLASSES, IMAGE_SIZE)) <= set(table.entries)
    assert TOY.group_key(("skip",), S1) not in table.entries and not any(
        k.startswith("context:skip:toy-edge:c4-8") for k in table.entries)
    costs = T.group_costs(table, TOY, MACRO, CANDS, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES)
    assert costs.cheapest()[1] != SKIP and math.isfinite(float(costs.predict(torch.tensor([[0, 1, 2]]))[0]))


# ---------------------------------------------------------------- 5. swapped children run
def test_a_child_swapped_on_the_supernet_is_what_the_forward_runs():
    net = supernet()
    net.eval()
    x, _ = batch()
    net.fix(ToyGenotype(("conv3", "conv1", "skip")))
    ran = []
    new_stem = nn.Conv2d(3, 4, 1, bias=False)
    new_stem.register_forward_hook(lambda m, i, o: ran.append("stem"))
    net.stem = new_stem
    with torch.no_grad(), net.gate_mode("fixed"):
        net(x)
    assert ran == ["stem"] and net._body.stem is new_stem
    # a sync-BN conversion (what data-parallel training does) replaces every BN, the direct child's included
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert converted is net and isinstance(net._body.final_bn, nn.SyncBatchNorm)
    kinds = []
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(lambda m, i, o: kinds.append(type(m).__name__))
    with torch.no_grad(), net.gate_mode("fixed"):
        net(x)
    assert kinds and set(kinds) == {"SyncBatchNorm"}
    assert len(kinds) == 3  # edge0's conv3, edge1's conv1, final_bn


# ---------------------------------------------------------------- what the rest of the search reads
def test_architect_tensorboard_on_a_toy_genotype():
    class Writer:
        def __getattr__(self, name):
            return lambda *a, **k: None

    net = supernet()
    Architect(net, Amp(None, "cpu"), nn.CrossEntropyLoss()).tensorboard(Writer(), 0)
