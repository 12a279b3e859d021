"""MixedOp binary gates: the alpha gradient, the rescaled update, weight steps that leave unsampled
paths alone, and the supernet <-> derived network equivalence."""
import pytest
import torch
import torch.nn as nn

from models import OPS, MixedOp, PRIMITIVES, build_net, build_supernet
from models.mixed_op import sample_paths
from utils import train as train_utils
from bench.profiling import random_genotype  # seeded, every op at least once
from tiny_runs import randomize


def _mixed_op(seed: int) -> MixedOp:
    """One tree-space edge (3 channels) and, as ``op.alpha``, the alpha row it reads (a supernet would own it)."""
    torch.manual_seed(seed)
    op = MixedOp([OPS[name](3, 1) for name in PRIMITIVES], decision=0).double().train()
    op.alpha = nn.Parameter(torch.randn(len(PRIMITIVES), dtype=torch.float64))
    return op


def _gates(op: MixedOp, mode: str) -> None:
    """What the supernet does before a forward: sample the decision's paths and hand them to the edge."""
    sampled, active = sample_paths(op.alpha[None], mode)
    op.set_paths(mode, sampled[0], active[0], op.alpha if mode in ("two", "full") else None)


def _expected_alpha_grad(op: MixedOp, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The docs/design.md formula, computed here from scratch: with S the sampled set,
    p~ = softmax(alpha_S), dL/dg_j = <dL/dy, o_j(x)>, dL/dalpha_i = sum_j dL/dg_j p~_j (delta_ij - p~_i)."""
    S = list(op.sampled)
    with torch.no_grad():
        outs = [op.ops[j](x.clone()) for j in S]  # train-mode BN: batch statistics, as in the forward
        dL_dg = torch.stack([(w * o).sum() for o in outs])
        p = torch.softmax(op.alpha.detach()[S], 0)
    expected = torch.zeros_like(op.alpha)
    for a, i in enumerate(S):
        expected[i] = sum(dL_dg[b] * p[b] * (float(a == b) - p[a]) for b in range(len(S)))
    return expected


@pytest.mark.parametrize("mode,seed", [("two", 0), ("two", 1), ("two", 2), ("full", 0), ("full", 3)])
def test_alpha_gradient_matches_formula(mode, seed):
    op = _mixed_op(seed)
    _gates(op, mode)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    w = torch.randn(2, 3, 5, 5, dtype=torch.float64)  # L = <y, w>, so dL/dy = w
    y = op(x)
    assert len(op.sampled) == (2 if mode == "two" else len(PRIMITIVES))
    assert op.active in op.sampled
    with torch.no_grad():
        torch.testing.assert_close(y, op.ops[op.active](x.clone()))  # the output is the active path's
    (y * w).sum().backward()
    expected = _expected_alpha_grad(op, x, w)
    assert expected.abs().max() > 1e-3  # the check below can fail
    # float64 end to end (the gate's backward accumulates in alpha's dtype): far inside the 1e-6 asked
    torch.testing.assert_close(op.alpha.grad, expected, rtol=1e-9, atol=1e-9)
    unsampled = [i for i in range(len(PRIMITIVES)) if i not in op.sampled]
    assert (op.alpha.grad[unsampled] == 0).all()
    assert len(set(op.sampled)) == len(op.sampled)
    for j, path in enumerate(op.ops):
        if mode == "two":  # only the active path ran with autograd
            assert all((p.grad is not None) == (j == op.active) for p in path.parameters())
        elif j != op.active:  # "full" keeps every path in the graph; their gate value 0 stops the gradient
            assert all(p.grad is not None and not p.grad.any() for p in path.parameters())


@pytest.mark.parametrize("seed", range(3))
def test_two_mode_update_keeps_unsampled_probabilities(seed):
    """The "two"-mode rescale (SuperNet.rescale_sampled, the only one: it is batched over all edges),
    in float64 on every edge of a B=1 supernet, after several Adam steps."""
    torch.manual_seed(seed)
    net = build_supernet(1, 64).double().train()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 1)
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.006, betas=(0.0, 0.999))
    for _ in range(3):  # several steps, so Adam's second moment is not fresh
        alpha_before = net.alphas()
        p_before = torch.softmax(alpha_before, 1)
        opt.zero_grad(set_to_none=True)
        with net.gate_mode("two"):
            x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
            (net(x) * torch.randn(2, 10, dtype=torch.float64)).sum().backward()
        opt.step()
        pairs = [list(p) for p in net.sampled]
        stepped = net.alphas()
        net.rescale_sampled()
        after = net.alphas()
        p_after = torch.softmax(after, 1)
        moved = 0
        for e, S in enumerate(pairs):
            shift = after[e, S] - stepped[e, S]  # a common offset: the pair's own softmax is Adam's
            torch.testing.assert_close(shift[0], shift[1], rtol=0, atol=1e-12)
            rest = [i for i in range(len(PRIMITIVES)) if i not in S]
            torch.testing.assert_close(p_after[e, rest], p_before[e, rest], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(p_after[e, S].sum(), p_before[e, S].sum(), rtol=1e-12, atol=1e-12)
            moved += int(not torch.allclose(p_after[e, S], p_before[e, S], rtol=0, atol=1e-6))
            assert torch.equal(after[e, rest], alpha_before[e, rest])
        assert moved > len(pairs) // 2  # the sampled pairs moved


@pytest.mark.parametrize("mode", ["uniform", "sample"])
def test_weight_modes_give_alpha_no_gradient(mode):
    op = _mixed_op(0)
    _gates(op, mode)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    op(x).sum().backward()
    assert op.alpha.grad is None
    assert x.grad is not None  # the path itself is differentiable


def test_weight_step_touches_only_sampled_paths():
    torch.manual_seed(0)
    net = build_supernet(1, 64)
    opt = torch.optim.SGD(train_utils.param_groups(net, 1e-4, params=net.weight_parameters()),
                          lr=0.1, momentum=0.9, nesterov=True)
    amp = train_utils.make_amp(torch.device("cpu"), "off")
    crit = nn.CrossEntropyLoss()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    net.train()
    with net.gate_mode("uniform"):
        for _ in range(3):  # momentum buffers exist for the paths sampled so far
            train_utils.weight_step(net, x, y, crit, opt, amp)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        momentum = {id(p): opt.state[p]["momentum_buffer"].clone() for p in opt.state if "momentum_buffer" in opt.state[p]}
        train_utils.weight_step(net, x, y, crit, opt, amp)
    after = net.state_dict()

    idle_with_momentum = 0
    for b, block in enumerate(net.blocks):
        for e, m in enumerate(block.cell.edges):
            for i, path in enumerate(m.ops):
                prefix = f"blocks.{b}.cell.edges.{e}.ops.{i}."
                keys = [k for k in before if k.startswith(prefix)]
                params = list(path.parameters())
                if i == m.active:
                    assert all(p.grad is not None for p in params)
                    if params:
                        assert any(not torch.equal(before[k], after[k]) for k in keys)
                    continue
                assert all(p.grad is None for p in params)
                for k in keys:  # weights, BN running stats, everything bitwise as it was
                    assert torch.equal(before[k], after[k]), k
                for p in params:
                    if id(p) in momentum:
                        idle_with_momentum += 1
                        assert torch.equal(opt.state[p]["momentum_buffer"], momentum[id(p)])
    assert idle_with_momentum > 0  # some unsampled paths had momentum and still did not move


@pytest.fixture(scope="module")
def random_supernet():
    torch.manual_seed(0)
    net = build_supernet(1, 64)
    randomize(net)
    return net.eval()


def _derived_output(supernet, genotype, x):
    net = build_net(genotype).eval()
    net.load_state_dict(supernet.derived_state_dict(genotype))  # strict: every key maps
    with torch.no_grad():
        return net(x)


def test_fixed_supernet_equals_derived_net(random_supernet):
    g = random_genotype(1, 64, seed=0)
    assert set(op for block in g.ops for op in block) == set(PRIMITIVES)
    x = torch.randn(4, 3, 32, 32)
    random_supernet.fix(g)
    with random_supernet.gate_mode("fixed"), torch.no_grad():
        y_super = random_supernet(x)
    y_derived = _derived_output(random_supernet, g, x)
    torch.testing.assert_close(y_super, y_derived, rtol=1e-5, atol=1e-5)
    # the comparison is sharp: another genotype gives another output
    other = random_genotype(1, 64, seed=1)
    random_supernet.fix(other)
    with random_supernet.gate_mode("fixed"), torch.no_grad():
        assert not torch.allclose(random_supernet(x), y_derived, rtol=1e-3, atol=1e-3)


def test_argmax_supernet_equals_derived_net(random_supernet):
    g = random_supernet.derive()
    assert len(set(op for block in g.ops for op in block)) > 1
    x = torch.randn(4, 3, 32, 32)
    with random_supernet.gate_mode("argmax"), torch.no_grad():
        y_super = random_supernet(x)
    torch.testing.assert_close(y_super, _derived_output(random_supernet, g, x), rtol=1e-5, atol=1e-5)


def test_supernet_batched_rescale_keeps_unsampled_probabilities():
    """SuperNet.rescale_sampled (batched over all edges) keeps every edge's unsampled probabilities."""
    torch.manual_seed(0)
    net = build_supernet(1, 64)
    for a in net.arch_parameters():
        a.data.normal_()
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.006, betas=(0.0, 0.999))
    before = net.probs()
    with net.gate_mode("two"):
        net(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
    pairs = net.sampled
    opt.step()
    net.rescale_sampled()
    after = net.probs()
    moved = 0
    for e, pair in enumerate(pairs):
        rest = [i for i in range(after.shape[1]) if i not in pair]
        torch.testing.assert_close(after[e, rest], before[e, rest], rtol=0, atol=1e-6)
        torch.testing.assert_close(after[e, list(pair)].sum(), before[e, list(pair)].sum(), rtol=0, atol=1e-6)
        moved += int(not torch.allclose(after[e, list(pair)], before[e, list(pair)]))
    assert moved > len(pairs) // 2  # the step did move the sampled pairs
