"""Latency tables, the expected latency of the supernet, latency losses and rewards (utils/latency.py)."""
import itertools
import json
import math

import pytest
import torch

import genotypes
from models import build_supernet
from models.tree.arch import PRIMITIVES
from utils import latency as L
from utils.checkpoint import save_genotype
from utils import latency_table as T
from utils import objective as O
from utils.errors import USER_ERRORS
from models.tree.space import TREE
from models.search_space import EdgeShape

B, F = 1, 64  # the smallest network
MACRO = {"B": B, "F": F}


def hand_table(B=B, F=F, candidates=PRIMITIVES, batch_size=1, seed=0) -> T.LatencyTable:
    """A table with made-up latencies for every key the space needs (identity included)."""
    g = torch.Generator().manual_seed(seed)
    keys = T.required_keys(TREE, {"B": B, "F": F}, candidates)
    entries = {k: {"median_ms": float(torch.rand((), generator=g)) * 2 + 0.1, "spread_ms": 0.0, "runs": 1}
               for k in keys}
    meta = {"B": B, "F": F, "candidates": list(candidates), "batch_size": batch_size, "backend": "hand",
            "device_name": "test"}
    return T.LatencyTable(entries, meta)


def random_alphas(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.alpha.copy_(torch.randn(net.alpha.shape, generator=g) * 2)


def formula(net, table, pairs=None):
    """E[LAT] written out group by group: fixed + sum over the input groups (two edges that read one tensor)
    sum_(i, j) p_a(i) p_b(j) (LUT(op_i + op_j) - LUT(identity + identity))."""
    total = torch.tensor(table.ms(T.fixed_key(TREE, net.macro, 10, 32)), dtype=torch.float64)
    groups = TREE.latency_groups(net.macro, 32)
    assert len(groups) == len(net.mixed_ops()) // 2 and all(len(g.decisions) == 2 for g in groups)
    for g in groups:
        idx = [list(range(len(net.candidates))) if pairs is None else list(pairs[d]) for d in g.decisions]
        p = [torch.softmax(net.alpha[d, ix].double(), 0) for d, ix in zip(g.decisions, idx)]
        base = table.ms(TREE.group_key(("identity", "identity"), g.shape))
        for a, i in enumerate(idx[0]):
            for b, j in enumerate(idx[1]):
                ops = (net.candidates[i], net.candidates[j])
                total = total + p[0][a] * p[1][b] * (table.ms(TREE.group_key(ops, g.shape)) - base)
    return total


def test_expected_equals_hand_sum_and_gradient_matches_autograd():
    net = build_supernet(B, F)
    table = hand_table()
    random_alphas(net)
    model = O.LatencyModel(table, net)
    exp = model.expected(net)
    ref = formula(net, table)
    assert float(exp.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    got = torch.autograd.grad(exp, net.arch_parameters())
    want = torch.autograd.grad(ref, net.arch_parameters())
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w.double(), rtol=1e-4, atol=1e-6)
    assert sum(float(g.abs().sum()) for g in got) > 0


def test_two_mode_only_sampled_alphas_move():
    net = build_supernet(B, F)
    table = hand_table()
    random_alphas(net)
    model = O.LatencyModel(table, net)
    torch.manual_seed(0)
    with net.gate_mode("two"):
        net(torch.randn(2, 3, 32, 32))
        exp = model.expected(net)
        pairs = list(net.sampled)
    assert all(len(p) == 2 for p in pairs)
    ref = formula(net, table, pairs)
    assert float(exp.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    exp.backward()
    for d, pair in enumerate(pairs):
        others = [i for i in range(len(net.candidates)) if i not in pair]
        assert torch.all(net.alpha.grad[d, others] == 0)
        assert net.alpha.grad[d, list(pair)].abs().sum() > 0
    # outside the gate_mode block the edges are back in their own mode: the full distribution
    assert float(model.expected(net).detach()) == pytest.approx(float(formula(net, table).detach()), rel=1e-5)
    assert float(model.expected(net, sampled=True).detach()) == pytest.approx(float(ref.detach()), rel=1e-5)


def test_latency_loss_moves_probability_to_cheapest_op():
    net = build_supernet(B, F)
    table = hand_table()
    # make sep_3x3 the cheapest op on every edge, by a clear margin
    for g in TREE.latency_groups(MACRO, 32):
        for ops in itertools.product(PRIMITIVES, repeat=2):
            table.entries[TREE.group_key(ops, g.shape)]["median_ms"] = sum(op != "sep_3x3" for op in ops)
    model = O.LatencyModel(table, net)
    cheapest = net.candidates.index("sep_3x3")
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.05, betas=(0.0, 0.999))
    ce = torch.tensor(2.3)  # a constant task loss: only the latency term has a gradient
    before = float(net.probs()[:, cheapest].mean())
    torch.manual_seed(0)
    with net.gate_mode("two"):
        for _ in range(60):
            net.resample()
            loss = O.latency_loss(ce, model.expected(net), target_ms=1.0, kind="add", lam=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.rescale_sampled()
    after = net.probs()[:, cheapest]
    assert float(after.mean()) > before + 0.2
    assert float((net.probs().argmax(1) == cheapest).float().mean()) > 0.9


def test_predict_matches_expected_of_a_one_hot_supernet_and_indices():
    net = build_supernet(B, F)
    table = hand_table()
    model = O.LatencyModel(table, net)
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(len(PRIMITIVES), (len(net.mixed_ops()),), generator=g)
    with torch.no_grad():
        net.alpha.fill_(-50.0)
        net.alpha[torch.arange(len(idx)), idx] = 50.0
    geno = net.derive()
    assert model.predict(geno) == pytest.approx(float(model.expected(net).detach()), rel=1e-5)
    assert model.predict_indices(idx.tolist()) == pytest.approx(model.predict(geno), rel=1e-9)
    many = model.predict_batch(torch.stack([idx, torch.full_like(idx, PRIMITIVES.index("identity"))]))
    assert many.tolist() == pytest.approx([model.predict(geno), model.fixed], rel=1e-9)
    with pytest.raises(USER_ERRORS, match="one index per decision"):
        model.predict_indices(idx[:-1])
    assert model.predict(genotypes.uniform(B, F, "identity")) == pytest.approx(model.fixed, rel=1e-9)
    torch.manual_seed(0)
    with net.gate_mode("uniform"):  # REINFORCE-style: one sampled path per edge
        net(torch.randn(1, 3, 32, 32))
    assert model.predict_active(net) == pytest.approx(model.predict(net.active_genotype()), rel=1e-9)


def test_table_for_another_configuration_is_refused_naming_the_key():
    table = hand_table(candidates=("sep_3x3", "identity"))
    with pytest.raises(USER_ERRORS, match=r"lacks entry 'group:sep_3x3\+sep_5x5:c16:32x32'.*built for the tree space, B=1 F=64"):
        O.LatencyModel(table, build_supernet(B, F))  # all 7 candidates
    with pytest.raises(USER_ERRORS, match=r"lacks entry 'fixed:tree:B2-F64:.*built for the tree space, B=1 F=64"):
        table.check(TREE, {"B": 2, "F": 64}, ("sep_3x3",))
    with pytest.raises(USER_ERRORS, match=r"lacks entry 'fixed:tree:B1-F80:identity:32x32:n10'"):
        table.check(TREE, {"B": 1, "F": 80}, ("sep_3x3",))
    with pytest.raises(USER_ERRORS, match=r"lacks entry 'fixed:tree:B1-F64:identity:48x48:n10'"):
        table.check(TREE, {"B": 1, "F": 64}, ("sep_3x3",), image_size=48)
    with pytest.raises(USER_ERRORS, match="batch size 1, not 32"):
        table.check(TREE, {"B": 1, "F": 64}, ("sep_3x3",), batch_size=32)
    table.check(TREE, {"B": 1, "F": 64}, ("sep_3x3",), batch_size=1)  # the configuration it was built for
    with pytest.raises(USER_ERRORS, match="no entry 'group:sep_7x7\\+sep_7x7"):
        T.predict_genotype(table, genotypes.uniform(B, F, "sep_7x7"))


def test_save_load_round_trip_and_clear_errors(tmp_path):
    table = hand_table()
    path = tmp_path / "t.json"
    table.save(path)
    back = T.LatencyTable.load(path)
    assert back.meta == table.meta and back.entries == table.entries
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed
    with pytest.raises(USER_ERRORS, match="cannot read latency table"):
        T.LatencyTable.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(USER_ERRORS, match="not valid JSON"):
        T.LatencyTable.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"B": 1}))
    with pytest.raises(USER_ERRORS, match="is not a latency table"):
        T.LatencyTable.load(tmp_path / "other.json")
    d = table.to_dict()
    d["entries"][T.fixed_key(TREE, MACRO, 10, 32)] = {"median_ms": "fast"}
    (tmp_path / "entry.json").write_text(json.dumps(d))
    with pytest.raises(USER_ERRORS, match="'fixed:tree.*needs a number"):
        T.LatencyTable.load(tmp_path / "entry.json")
    d["entries"][T.fixed_key(TREE, MACRO, 10, 32)] = {"median_ms": float("nan")}
    (tmp_path / "nan.json").write_text(json.dumps(d))
    with pytest.raises(USER_ERRORS, match="needs a number"):
        T.LatencyTable.load(tmp_path / "nan.json")
    for old in (1, 2):  # tables of older models: rebuild, said in one line
        d["format"] = f"proxylessnas-latency-table/{old}"
        (tmp_path / "old.json").write_text(json.dumps(d))
        with pytest.raises(USER_ERRORS, match=f"older version.*format {old}.*python -m utils.latency build"):
            T.LatencyTable.load(tmp_path / "old.json")


def test_latency_loss_and_reward_formulas():
    ce, e = torch.tensor(1.5), torch.tensor(12.0, requires_grad=True)
    assert float(O.latency_loss(ce, e, 10.0, "add", lam=0.2).detach()) == pytest.approx(1.5 + 0.2 * 0.2)
    assert float(O.latency_loss(ce, e, 10.0, "mul", beta=0.6).detach()) == pytest.approx(1.5 * 1.2 ** 0.6)
    O.latency_loss(ce, e, 10.0, "mul").backward()
    assert float(e.grad) > 0  # slower costs more
    assert float(O.latency_loss(ce, e, 10.0, "hinge", lam=0.5).detach()) == pytest.approx(1.5 + 0.5 * 0.2)
    fast = torch.tensor(8.0, requires_grad=True)  # within the budget: no latency term, no gradient
    hinge = O.latency_loss(ce, fast, 10.0, "hinge", lam=0.5)
    assert float(hinge.detach()) == 1.5 and torch.autograd.grad(hinge, fast)[0] == 0
    with pytest.raises(USER_ERRORS, match="add, mul or hinge"):
        O.latency_loss(ce, e, 10.0, "pow")
    with pytest.raises(USER_ERRORS, match="> 0"):
        O.latency_loss(ce, e, 0.0)
    assert O.reinforce_reward(0.8, 20.0, 10.0, -0.5) == pytest.approx(0.8 * 2 ** -0.5)
    assert O.reinforce_reward(0.8, 5.0, 10.0, 0.0) == pytest.approx(0.8)
    with pytest.raises(USER_ERRORS, match="w must be <= 0"):
        O.reinforce_reward(0.8, 5.0, 10.0, 0.1)


def test_build_table_on_cpu_and_command(tmp_path, capsys):
    cands = ("sep_3x3", "max_pool_3x3")
    table = L.build_table(TREE, MACRO, cands, batch_size=2, device="cpu", threads=1, warmup=1, repeats=3,
                          progress=False, calibration=2)
    timed = T.timed_keys(TREE, MACRO, cands, calibration=2)
    assert set(table.entries) == set(timed) | set(T.required_keys(TREE, MACRO, cands))  # identity: the baseline
    assert len(TREE.latency_contexts(MACRO, 32)) == 3  # B=1: one block, one edge shape, per stage
    assert len(timed) == 1 + 3 * 3 ** 2 + 2  # the network, the contexts x (identity + 2 ops) ** 2, 2 calibration nets
    assert all(table.entries[k]["median_ms"] > 0 and table.entries[k]["spread_ms"] >= 0
               and table.entries[k]["runs"] == 3 for k in timed)
    assert table.entries[TREE.group_key(("identity", "identity"), EdgeShape(16, 16, 1, 32))]["median_ms"] == 0.0
    m = table.meta
    assert (m["B"], m["F"], m["candidates"], m["batch_size"], m["threads"], m["backend"]) == \
        (B, F, list(cands), 2, 1, "cpu")
    assert m["torch_version"] == torch.__version__ and m["date"] and m["spread"] == "iqr"
    table.check(TREE, MACRO, cands, batch_size=2)
    out = tmp_path / "lat.json"
    args = L.get_args_parser().parse_args(
        ["build", "--device", "cpu", "--threads", "1", "--B", "1", "--F", "64", "--candidates", *cands,
         "--batch", "1", "--warmup", "0", "--repeats", "2", "--out", str(out), "--no-progress"])
    L.main(args)
    saved = T.LatencyTable.load(out)
    assert saved.meta["batch_size"] == 1 and set(T.required_keys(TREE, MACRO, cands)) <= set(saved.entries)
    geno = tmp_path / "g.json"
    save_genotype(genotypes.uniform(B, F, "max_pool_3x3"), geno)
    ms = L.main(L.get_args_parser().parse_args(["predict", "--table", str(out), "--genotype", str(geno)]))
    assert ms == pytest.approx(T.predict_genotype(saved, genotypes.uniform(B, F, "max_pool_3x3")))
    assert "predicted latency" in capsys.readouterr().out


def test_build_table_onnxruntime():
    pytest.importorskip("onnxruntime")
    cands = ("avg_pool_3x3",)
    table = L.build_table(TREE, MACRO, cands, batch_size=1, device="onnxruntime", threads=1, warmup=1, repeats=2,
                          progress=False, calibration=1)
    assert set(table.entries) == set(T.required_keys(TREE, MACRO, cands)) | set(T.timed_keys(TREE, MACRO, cands, calibration=1))
    assert table.meta["onnxruntime_version"]
    pred = T.predict_genotype(table, genotypes.uniform(B, F, "avg_pool_3x3"))
    assert math.isfinite(pred)


def test_onnx_session_writes_the_graph_onnxruntime_runs(tmp_path):
    """onnx_session(optimized_path=...): the graph onnxruntime runs is written, with what it fused (the ReLU
    into the convolution before it; the export has a Relu node)."""
    pytest.importorskip("onnxruntime")
    import onnx

    m = L.as_trained(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU()))
    sess = L.onnx_session(m, torch.randn(1, 3, 8, 8), 1, optimized_path=str(tmp_path / "opt.onnx"))
    assert sess.get_outputs()[0].shape == [1, 8, 8, 8]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops and "Relu" not in ops and "BatchNormalization" not in ops


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_refused_cleanly_without_a_gpu():
    with pytest.raises(USER_ERRORS, match="no CUDA device"):
        L.build_table(TREE, MACRO, ("identity",), device="cuda", progress=False)


def test_bad_arguments_are_user_errors():
    with pytest.raises(USER_ERRORS, match="unknown latency device"):
        L.build_table(TREE, MACRO, ("identity",), device="tpu", progress=False)
    with pytest.raises(USER_ERRORS, match="unknown candidate"):
        L.build_table(TREE, MACRO, ("conv_9x9",), progress=False)
    with pytest.raises(USER_ERRORS, match="thread count must be >= 1"):
        L.build_table(TREE, MACRO, ("identity",), threads=0, progress=False)
    with pytest.raises(USER_ERRORS, match="multiple of|F"):
        T.required_keys(TREE, {"B": 1, "F": 4})


def test_most_probable_within_matches_brute_force():
    """The knapsack DP of --derive within-target: on random small problems, an architecture within the
    budget whose log-probability is the brute-force optimum's (to the rounding of D/bins of the budget),
    and None when even the cheapest is over."""
    import itertools
    g = torch.Generator().manual_seed(0)
    solved = 0
    for _ in range(200):
        D, N = (int(v) for v in torch.randint(1, 5, (2,), generator=g))
        log_p = torch.log_softmax(torch.randn(D, N, generator=g), 1)
        costs, budget = torch.randn(D, N, generator=g), float(torch.randn(1, generator=g))
        feasible = [(float(sum(log_p[d, x[d]] for d in range(D))), x) for x in itertools.product(range(N), repeat=D)
                    if float(sum(costs[d, x[d]] for d in range(D))) <= budget]
        got = O.most_probable_within(log_p, costs, budget, bins=100_000)
        if not feasible:
            assert got is None
            continue
        solved += 1
        assert float(sum(costs[d, got[d]] for d in range(D))) <= budget + 1e-9
        assert float(sum(log_p[d, got[d]] for d in range(D))) == pytest.approx(max(feasible)[0], abs=1e-9)
    assert solved > 50


def test_group_entries_and_calibration_from_timings():
    """A group entry is (context with the ops on every group of their size - context with the baseline) /
    those groups; the calibration fits measured = a + s * (baseline network + groups) on the calibration
    networks and folds a and s into the fixed cost and the groups, so that a prediction stays a sum and
    reproduces networks that follow the fit.  The costs are not additive in the ops of a group, as measured."""
    cands = ("sep_3x3", "max_pool_3x3")
    ops3 = ("identity",) + cands
    contexts = TREE.latency_contexts(MACRO, 32)
    n = T.groups_of_size(TREE, 2)
    assert n == 6 and T.group_sizes(TREE) == [2]  # a block's 6 input groups, of two edges each
    g = torch.Generator().manual_seed(0)
    cost = {(c, ctx.key): (0.0 if c == ("identity", "identity") else float(torch.rand((), generator=g)))
            for ctx in contexts for c in itertools.product(ops3, repeat=2)}  # a pair is not the sum of its ops
    timed = {T.context_key(TREE, c, ctx.key, ctx.shape): {"median_ms": 1.0 + n * cost[c, ctx.key],
                                               "min_ms": 0.5 + n * cost[c, ctx.key], "runs": 5}
             for ctx in contexts for c in itertools.product(ops3, repeat=2)}
    assert len(timed) == len(contexts) * 9  # the baseline pair's key is the baseline context's
    timed[TREE.network_key(MACRO, 10, 32)] = {"median_ms": 10.0, "min_ms": 9.0, "runs": 5}
    groups = T.group_entries(TREE, MACRO, cands, timed)
    for ctx in contexts:
        for c in itertools.product(ops3, repeat=2):
            e = groups[TREE.group_key(c, ctx.shape)]
            assert e["median_ms"] == pytest.approx(cost[c, ctx.key]) and e["min_ms"] == pytest.approx(cost[c, ctx.key])
    archs = T.calibration_architectures(TREE, MACRO, cands, 4)
    shape_key = {c.shape: c.key for c in contexts}

    def by_groups(arch):
        ops = TREE.ops_of(arch)
        return sum(cost[tuple(ops[d] for d in grp.decisions), shape_key[grp.shape]]
                   for grp in TREE.latency_groups(MACRO, 32))

    for k, arch in enumerate(archs):  # the networks run 0.5 ms + 1.1 x what the contexts add up to
        timed[T.calibration_key(k)] = {"median_ms": 0.5 + 1.1 * (10.0 + by_groups(arch)),
                                       "min_ms": 9.0 + by_groups(arch), "runs": 5}
    fixed, scaled = T.calibrate(TREE, MACRO, cands, timed, groups, 4, 10, 32)
    assert fixed["scale"] == pytest.approx(1.1) and fixed["median_ms"] == pytest.approx(0.5 + 11.0)
    assert fixed["min_ms"] == pytest.approx(9.0)  # min_ms followed the model: nothing to correct
    assert max(abs(r) for r in fixed["calibration_residuals_ms"]) < 1e-9
    table = T.LatencyTable({**scaled, T.fixed_key(TREE, MACRO, 10, 32): fixed},
                           {"space": "tree", "macro": MACRO, "candidates": list(cands)})
    other = T.random_architectures(TREE, MACRO, 3, 0.3, seed=5, ops=ops3)
    for arch in other:  # a network that was not among the calibration ones, predicted as the fit says
        assert T.predict_genotype(table, arch) == pytest.approx(0.5 + 1.1 * (10.0 + by_groups(arch)))
    # the search's view of the same table: GroupCosts.predict and the expectation of a one-hot distribution
    costs = T.group_costs(table, TREE, MACRO, ops3)
    idx = torch.tensor([[ops3.index(op) for op in TREE.ops_of(a)] for a in other])
    assert costs.predict(idx).tolist() == pytest.approx([T.predict_genotype(table, a) for a in other])
    onehot = torch.nn.functional.one_hot(idx[0], 3).double()
    assert float(costs.expected(onehot)) == pytest.approx(T.predict_genotype(table, other[0]))
    # fewer than 3 networks: the mean residual only; none: the baseline network
    fixed2, scaled2 = T.calibrate(TREE, MACRO, cands, timed, groups, 2, 10, 32)
    assert fixed2["scale"] == 1.0 and scaled2 == groups
    assert fixed2["median_ms"] == pytest.approx(10.0 + sum(0.5 + 0.1 * (10.0 + by_groups(a)) for a in archs[:2]) / 2)
    assert T.calibrate(TREE, MACRO, cands, timed, groups, 0, 10, 32)[0]["median_ms"] == 10.0
    # the calibration networks span mixtures: not all alike, and only the candidates (and the baseline) appear
    assert len({TREE.ops_of(a) for a in archs}) == 4
    assert {op for a in archs for op in TREE.ops_of(a)} <= set(ops3)


def test_nb201_groups_of_three_two_and_one_edge():
    """NAS-Bench-201's cell: node 0 feeds edges (0, 1, 3), node 1 (2, 4), node 2 edge 5; a context puts an
    assignment on the group of its size, and the expected latency of the shared decisions is exact."""
    from models.nb201.space import NB201
    macro = NB201.macro({"C": 4, "N": 1})
    S4 = EdgeShape(4, 4, 1, 32)
    assert T.group_sizes(NB201) == [3, 2, 1]
    assert T.context_ops(NB201, ("avg_pool_3x3", "none", "nor_conv_1x1"), S4) == \
        ["avg_pool_3x3", "none", "skip_connect", "nor_conv_1x1", "skip_connect", "skip_connect"]
    assert T.context_ops(NB201, ("none",), S4) == ["skip_connect"] * 5 + ["none"]
    cands = ("none", "avg_pool_3x3")
    keys = T.required_keys(NB201, macro, cands)
    assert len(keys) == 1 + 3 * (27 + 9 + 3)  # fixed; 3 shapes x 3 ops ** (3, 2, 1)
    g = torch.Generator().manual_seed(1)
    table = T.LatencyTable({k: {"median_ms": float(torch.rand((), generator=g))} for k in keys},
                           {"space": "nb201", "macro": macro})
    costs = T.group_costs(table, NB201, macro, cands)
    p = torch.softmax(torch.randn(6, 2, generator=g, dtype=torch.float64), 1)
    brute = 0.0
    for x in itertools.product(range(2), repeat=6):
        cell = NB201.genotype_from_ops([cands[i] for i in x], macro)
        brute += float(torch.prod(p[torch.arange(6), torch.tensor(x)])) * T.predict_genotype(table, cell)
    assert float(costs.expected(p)) == pytest.approx(brute, rel=1e-9)


@pytest.mark.parametrize("space_name", ["tree", "nb201"])
def test_input_groups_are_the_edges_that_read_one_tensor(space_name):
    """The table times an op on one edge per group because the edges of a group read the same tensor (a
    graph compiler computes an identical parameter-free op on it once): checked on the real modules."""
    from models.spaces import get_space
    space = get_space(space_name)
    macro = space.macro({"B": 1, "F": 64} if space_name == "tree" else {"C": 4, "N": 1})
    ctx = space.latency_contexts(macro, 32)[0]
    edges_per_cell = sum(len(grp) for grp in space.input_groups)
    assert sorted(e for grp in space.input_groups for e in grp) == list(range(edges_per_cell))
    conv = next(op for op in space.primitives if op not in space.parameter_free)  # each edge a new tensor
    module = ctx.build([conv] * edges_per_cell).eval()
    seen = {}
    for i, edge in enumerate(module.cell.edges if space_name == "tree" else module.edges):
        edge.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0]))
    with torch.no_grad():
        module(torch.randn(1, *ctx.in_shape))
    group_of = {e: k for k, grp in enumerate(space.input_groups) for e in grp}
    for a in range(edges_per_cell):
        for b in range(a + 1, edges_per_cell):
            same = seen[a].data_ptr() == seen[b].data_ptr() and torch.equal(seen[a], seen[b])
            assert same == (group_of[a] == group_of[b]), (a, b)


def test_contexts_put_the_ops_on_every_group_and_cover_every_shape():
    for macro in ({"B": 2, "F": 96}, {"B": 1, "F": 64}):
        contexts = TREE.latency_contexts(macro, 32)
        assert [(2, c.shape) for c in contexts] == T.group_shapes(TREE, macro, 32)
    block = contexts[0].build(T.context_ops(TREE, ("max_pool_3x3", "sep_3x3"), contexts[0].shape))
    kinds = [type(e).__name__ for e in block.cell.edges]
    pools = [i for i, e in enumerate(block.cell.edges) if isinstance(e, torch.nn.MaxPool2d)]
    assert pools == [grp[0] for grp in TREE.input_groups] == [0, 1, 4, 6, 7, 10]
    assert {kinds[grp[1]] for grp in TREE.input_groups} == {kinds[3]} and kinds[3] not in ("MaxPool2d", "Identity")
    assert T.configs(TREE, ("sep_3x3",), 2, contexts[0].shape) == [("identity", "identity"), ("sep_3x3", "sep_3x3"),
                                                ("sep_3x3", "identity"), ("identity", "sep_3x3")]


def test_as_trained_gives_every_batchnorm_its_own_values():
    net = L.as_trained(TREE.baseline_network(MACRO, 10, 32), seed=1)
    assert not net.training
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    rows = [torch.cat([m.weight[:4], m.bias[:4], m.running_mean[:4], m.running_var[:4]]) for m in bns]
    assert len(bns) > 5 and all(not torch.equal(rows[i], rows[j]) for i in range(len(rows)) for j in range(i))
    assert all(float(m.running_var.min()) > 0 for m in bns)


def test_within_target_is_the_most_probable_architecture_under_the_budget_with_group_costs():
    """--derive within-target with costs that are not additive within a group: the knapsack over groups
    (NAS-Bench-201: groups of 3, 2, 1 decisions) finds the brute-force answer among all 3**6 cells."""
    from models.nb201.space import NB201
    from models.supernet import SuperNet
    macro, cands = {"C": 4, "N": 1}, ("nor_conv_3x3", "avg_pool_3x3", "skip_connect")
    g = torch.Generator().manual_seed(4)
    keys = T.required_keys(NB201, macro, cands)
    table = T.LatencyTable({k: {"median_ms": float(torch.rand((), generator=g)) * 3} for k in keys},
                           {"space": "nb201", "macro": macro, "batch_size": 1})
    net = SuperNet(NB201, macro, cands)
    with torch.no_grad():
        net.alpha.copy_(torch.randn(net.alpha.shape, generator=g))
    model = O.LatencyModel(table, net)
    log_p = torch.log_softmax(net.alpha.detach().double(), 1)
    cells = list(itertools.product(range(3), repeat=6))
    lat = model.predict_batch(torch.tensor(cells))
    for i, cell in enumerate(cells):
        if i % 97 == 0:  # the batch prediction is the table's sum over groups
            geno = NB201.genotype_from_ops([cands[j] for j in cell], macro)
            assert float(lat[i]) == pytest.approx(T.predict_genotype(table, geno), rel=1e-9)
    for q in (0.1, 0.5, 0.9):
        target = float(torch.quantile(lat, q))
        got = model.most_probable_within(net, target)
        best = max(float(sum(log_p[d, x[d]] for d in range(6))) for x, ms in zip(cells, lat.tolist()) if ms <= target)
        assert model.predict_indices(got) <= target + 1e-9
        assert float(sum(log_p[d, got[d]] for d in range(6))) == pytest.approx(best, abs=1e-9)
    fastest = model.most_probable_within(net, float(lat.min()) - 1.0)  # none within: the fastest cell
    assert model.predict_indices(fastest) == pytest.approx(float(lat.min()))


def test_group_interactions_bench_runs_and_labels_fused_convolutions():
    """bench/group_interactions.py: one ratio per non-baseline op of the part (here a tiny NB201 cell on the
    cpu), and the labels of what onnxruntime fused into a convolution."""
    import onnx.helper

    from bench import group_interactions as GI
    from models.nb201.arch import PRIMITIVES as NB201_OPS

    args = GI.get_args_parser().parse_args(["--space", "nb201", "--C", "8", "--N", "1", "--device", "cpu",
                                            "--repeats", "2", "--warmup", "0", "--no-progress"])
    res = GI.main(args)
    assert set(res) == {f"sum_over_all_{op}" for op in NB201_OPS if op != "skip_connect"}
    assert all(math.isfinite(v) and v > 0 for v in res.values()), res
    fused = onnx.helper.make_node("Conv", ["x", "w", "b", "z"], ["y"], domain="com.microsoft.nchwc", activation="Relu")
    assert GI.node_label(fused) == "Conv+sum+Relu"
    assert GI.node_label(onnx.helper.make_node("Conv", ["x", "w"], ["y"])) == "Conv"
    assert GI.node_label(onnx.helper.make_node("Add", ["a", "b"], ["c"])) == "Add"
