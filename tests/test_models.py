"""Search space, candidate ops, supernet/derived builders (CPU, B=1 F=64 except the full-size count)."""
import pytest
import torch

import genotypes
from models import OPS, PRIMITIVES, build_net, build_supernet, count_parameters
from models.mixed_op import GATE_MODES
from models.tree.arch import EDGES_PER_CELL, IMAGE_SIZE, STEM_CHANNELS, block_plan, check_macro


def test_proxyless_cifar_size_and_shape():
    # The authors' released network, counted independently from their JSON: 5,731,530 parameters.
    net = build_net(genotypes.PROXYLESS_CIFAR).eval()
    assert count_parameters(net) == 5_731_530
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_ops_registry_is_the_space():
    assert tuple(OPS) == PRIMITIVES


@pytest.mark.parametrize("name", PRIMITIVES)
def test_every_op_keeps_shape(name):
    op = OPS[name](6, 1)
    x = torch.randn(2, 6, 9, 7)
    for mode in (op.train, op.eval):
        mode()
        assert op(x.clone()).shape == x.shape


def test_block_plan_full_size():
    plan = block_plan(18, 400)
    assert len(plan) == 54
    widths = [s.width for s in plan]
    assert widths[0] == 18 and widths[-1] == 100  # the released network's first and last widths
    assert widths == sorted(widths) and all(w % 2 == 0 for w in widths)
    assert plan[0].in_channels == STEM_CHANNELS
    for prev, cur in zip(plan, plan[1:]):
        assert cur.in_channels == prev.out_channels and cur.in_size == prev.out_size
    for s in plan:
        assert s.out_channels == 4 * s.width
        assert s.stride == (2 if s.index in (18, 36) else 1)
        assert s.stage == s.index // 18
    assert plan[-1].out_channels == 400 and plan[-1].out_size == IMAGE_SIZE // 4


@pytest.mark.parametrize("B,F", [(1, 64), (2, 128), (3, 200), (18, 400)])
def test_final_channels_is_F(B, F):
    assert block_plan(B, F)[-1].out_channels == F


@pytest.mark.parametrize("B,F,what", [
    (1, 100, "multiple of 8"),  # 100/4 = 25 is odd: the last block would output 96 channels
    (1, 60, ">= 64"),
    (1, 56, ">= 64"),
    (0, 64, "B"),
    (-1, 64, "B"),
    (1.5, 64, "B"),
    (1, 64.0, "F"),
])
def test_check_macro_errors(B, F, what):
    with pytest.raises(ValueError, match="must be") as e:
        check_macro(B, F)
    assert what in str(e.value)


def test_bad_macro_refused_by_builders():
    with pytest.raises(ValueError, match="multiple of 8"):
        build_supernet(1, 100)
    with pytest.raises(genotypes.GenotypeError, match="multiple of 8"):
        genotypes.uniform(1, 100, "identity")


def test_unknown_candidate_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        build_supernet(1, 64, ["sep_3x3", "conv_9x9"])
    msg = str(e.value)
    assert "conv_9x9" in msg and all(name in msg for name in PRIMITIVES)
    with pytest.raises(ValueError, match="duplicates"):
        build_supernet(1, 64, ["sep_3x3", "sep_3x3"])


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return build_supernet(1, 64)


def test_parameter_split_is_exact(supernet):
    arch = supernet.arch_parameters()
    weights = supernet.weight_parameters()
    ids_a, ids_w = {id(p) for p in arch}, {id(p) for p in weights}
    assert len(ids_a) == len(arch) == 1  # one alpha: a row per searchable edge (the tree space's decisions)
    assert ids_a.isdisjoint(ids_w)
    assert ids_a | ids_w == {id(p) for p in supernet.parameters()}
    assert arch[0].shape == (3 * EDGES_PER_CELL, len(PRIMITIVES))


def test_supernet_forward_every_gate_mode(supernet):
    x = torch.randn(2, 3, 32, 32)
    supernet.fix(genotypes.uniform(1, 64, "max_pool_3x3"))
    assert set(GATE_MODES) == {"uniform", "sample", "two", "full", "argmax", "fixed"}
    supernet.train()
    for mode in GATE_MODES:
        with supernet.gate_mode(mode), torch.no_grad():
            y = supernet(x)
        assert y.shape == (2, 10) and torch.isfinite(y).all(), mode
    assert supernet.mode == "sample"  # the context manager restored the mode


def test_gate_mode_rejects_unknown(supernet):
    with pytest.raises(ValueError, match="unknown gate mode"):
        with supernet.gate_mode("sometimes"):
            pass
