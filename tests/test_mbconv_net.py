"""models/mbconv: the paper's ImageNet MBConv chain.  The released networks rebuilt from their genotypes have
the authors' parameter and multiply-add counts; the plan's shapes are what the tensors have; genotypes are
checked and round-trip; one builder serves a derived network and a supernet-like network."""
import json

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from models.mbconv import (DEFAULT_MACRO, NAMED, PRIMITIVES, MBConvGenotype, MBConvNet, Skip, Zero, block_plan,
                           build_derived, check_image_size, expand_of, fixed_layers, kernel_of, make_op)
from models.search_space import EdgeShape
from models.common import SpaceError

# Facts: parameters at 1000 classes counted from the authors' configs (their logs print the same), and
# multiply-adds at 224 px as published (M, one decimal).
RELEASED = {"proxyless_gpu": (7_119_848, 465.3), "proxyless_cpu": (4_361_648, 439.2),
            "proxyless_mobile": (4_080_512, 320.4)}


def multiply_adds(net: nn.Module, size: int) -> int:
    """torch's FLOP counter over one image, halved (it counts 2 FLOPs per multiply-add).  It counts the
    convolutions and the classifier's matmul (weights only: no bias, BN, ReLU6, pooling or residual adds) --
    the authors' convention: their count is conv multiply-adds plus the linear layer's weight count, and this
    reproduces all three published figures to the 0.1 M they print."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_networks_have_the_authors_counts(name):
    params, madds = RELEASED[name]
    net = build_derived(NAMED[name])
    assert n_params(net) == params
    measured = multiply_adds(net, 224)
    assert round(measured / 1e6, 1) == madds
    # our exact counts (regression guard): 465,260,160 / 439,243,864 / 320,427,584
    assert measured == {"proxyless_gpu": 465_260_160, "proxyless_cpu": 439_243_864,
                        "proxyless_mobile": 320_427_584}[name]


def test_shapes_at_imagenet_and_cifar_sizes():
    torch.manual_seed(0)
    g = NAMED["proxyless_gpu"]
    net = build_derived(g).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert net.features(x).shape == (2, g.head, 7, 7)
        assert net(x).shape == (2, 1000)
    small = build_derived(g, num_classes=10, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert small.features(x).shape == (2, g.head, 4, 4)  # CIFAR variant: total stride 8
        out = small(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert small.stem.conv.stride == (1, 1) and net.stem.conv.stride == (2, 2)
    assert fixed_layers(g.stem, g.first, g.widths, g.head, 224) == {
        "stem": EdgeShape(3, 40, 2, 224), "first": EdgeShape(40, 24, 1, 112), "head": EdgeShape(432, 1728, 1, 7)}


def _expected_gpu_plan(size_after_stem, first_stride):
    """Hand-written (in, out, stride, in_size) of the GPU network's 21 searchable blocks."""
    rows, cin, size = [], 24, size_after_stem
    for width, depth, stride in zip((32, 56, 112, 128, 256, 432), (4, 4, 4, 4, 4, 1),
                                    (first_stride, 2, 2, 1, 2, 1)):
        rows.append((cin, width, stride, size))
        size //= stride
        rows += [(width, width, 1, size)] * (depth - 1)
        cin = width
    return rows


@pytest.mark.parametrize("size, after_stem, first_stride", [(224, 112, 2), (32, 32, 1)])
def test_make_block_sees_every_block_once_with_its_shape(size, after_stem, first_stride):
    g = NAMED["proxyless_gpu"]
    calls = []

    def make_block(decision, shape):
        calls.append((decision, shape))
        return nn.Identity() if shape.keeps_shape else nn.Conv2d(shape.in_channels, shape.out_channels, 1, shape.stride)

    MBConvNet(g.stem, g.first, g.widths, g.depths, g.head, make_block, 1000, size)
    assert [d for d, _ in calls] == list(range(sum(g.depths)))
    assert [(s.in_channels, s.out_channels, s.stride, s.in_size) for _, s in calls] == \
        _expected_gpu_plan(after_stem, first_stride)
    assert [s for _, s in calls] == [b.shape for b in block_plan(g.stem, g.first, g.widths, g.depths, size)]


class MeanOfCandidates(nn.Module):
    """A supernet's block, roughly: every candidate allowed on the shape, outputs averaged."""

    def __init__(self, shape):
        super().__init__()
        names = [n for n in PRIMITIVES if n != "zero" or shape.keeps_shape]
        self.candidates = nn.ModuleList(make_op(n, shape) for n in names)

    def forward(self, x):
        return sum(c(x) for c in self.candidates) / len(self.candidates)


def test_one_builder_makes_a_supernet_and_the_tensors_have_the_planned_shapes():
    m = dict(DEFAULT_MACRO)
    seen = {}
    net = MBConvNet(m["stem"], m["first"], m["widths"], m["depths"], m["head"],
                    lambda d, shape: MeanOfCandidates(shape), 10, 32)
    for i, block in enumerate(net.blocks):
        block.op.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, (inp[0].shape, out.shape)))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert len(net.blocks) == 21
    for b in net.plan:
        s = b.shape
        assert seen[b.index] == ((1, s.in_channels, s.in_size, s.in_size), (1, s.out_channels, s.out_size, s.out_size))
        assert len(net.blocks[b.index].op.candidates) == (7 if b.position else 6)
        assert net.blocks[b.index].residual == s.keeps_shape == (b.position > 0)


def test_a_derived_zero_block_is_its_input_and_names_are_stable():
    g = NAMED["proxyless_gpu"]
    derived = build_derived(g, num_classes=10, image_size=32).eval()
    assert isinstance(derived.blocks[1], Skip) and not isinstance(derived.blocks[0], Skip)
    # the same network with Zero + residual in the skipped blocks (as a supernet's chosen path)
    literal = MBConvNet(g.stem, g.first, g.widths, g.depths, g.head, lambda d, s: make_op(g.ops[d], s), 10, 32).eval()
    assert isinstance(literal.blocks[1].op, Zero)
    assert literal.state_dict().keys() == derived.state_dict().keys()
    literal.load_state_dict(derived.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(literal(x), derived(x))
    keys = derived.state_dict().keys()
    for key in ("stem.conv.weight", "stem.bn.running_mean", "first.depthwise.conv.weight", "first.project.bn.bias",
                "blocks.0.op.expand.conv.weight", "blocks.0.op.depthwise.conv.weight", "blocks.20.op.project.bn.weight",
                "head.conv.weight", "classifier.weight", "classifier.bias"):
        assert key in keys
    assert not any(k.startswith("first.expand") for k in keys)  # MBConv1: no expansion layer
    bn = derived.stem.bn
    assert (bn.momentum, bn.eps) == (0.1, 1e-3)
    assert derived.blocks[0].op.depthwise.conv.padding == (2, 2) and derived.blocks[0].op.depthwise.conv.groups == 72


def test_genotype_errors_name_the_problem():
    ops = list(NAMED["proxyless_mobile"].ops)
    with pytest.raises(SpaceError, match="'zero' on the first block of stage 1"):
        MBConvGenotype(tuple(ops[:4] + ["zero"] + ops[5:]))
    with pytest.raises(SpaceError, match="needs 21 ops .* got 20"):
        MBConvGenotype(tuple(ops[:-1]))
    with pytest.raises(SpaceError, match="block 3 .*unknown op '3x3_MBConv4'"):
        MBConvGenotype(tuple(ops[:3] + ["3x3_MBConv4"] + ops[4:]))
    with pytest.raises(SpaceError, match="6 stages"):
        MBConvGenotype(tuple(ops[:17]), widths=(24, 40, 80, 96, 192), depths=(4, 4, 4, 4, 1))
    with pytest.raises(SpaceError, match="stage 2's width must be an integer >= 1"):
        MBConvGenotype(tuple(ops), widths=(24, 40, 0, 96, 192, 320))
    with pytest.raises(SpaceError, match="stage 5's depth"):
        MBConvGenotype(tuple(ops[:-1]), depths=(4, 4, 4, 4, 4, 0))


def test_genotype_json_round_trip_and_strictness():
    for g in NAMED.values():
        d = json.loads(g.to_json())
        assert d["space"] == "mbconv" and isinstance(d["widths"], list)
        back = MBConvGenotype.from_dict(d)
        assert back == g and hash(back) == hash(g)
    d = NAMED["proxyless_cpu"].to_dict()
    with pytest.raises(SpaceError, match="lacks the key.*head"):
        MBConvGenotype.from_dict({k: v for k, v in d.items() if k != "head"})
    with pytest.raises(SpaceError, match="unknown key.*extra"):
        MBConvGenotype.from_dict({**d, "extra": 1})
    with pytest.raises(SpaceError, match="space 'nb201'"):
        MBConvGenotype.from_dict({**d, "space": "nb201"})
    default = MBConvGenotype(("3x3_MBConv6",) * 21)
    assert default.macro == DEFAULT_MACRO and default.space == "mbconv"


def test_ops_and_sizes_refused():
    assert [(kernel_of(o), expand_of(o)) for o in PRIMITIVES[:-1]] == [(3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6)]
    with pytest.raises(SpaceError, match="'zero' needs a block that keeps its shape"):
        make_op("zero", EdgeShape(16, 24, 2, 112))
    with pytest.raises(SpaceError, match="unknown MBConv op"):
        make_op("sep_3x3", EdgeShape(16, 16, 1, 8))
    for ok in (224, 64, 96, 32, 8, 48):
        check_image_size(ok)
    for bad in (4, 36, 100, 80, 0, 224.0):
        with pytest.raises(SpaceError, match="image size"):
            check_image_size(bad)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notices (export_onnx's default)
def test_exports_to_onnx_with_a_dynamic_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    g = MBConvGenotype(("5x5_MBConv3", "zero", "7x7_MBConv6", "3x3_MBConv3", "5x5_MBConv6", "zero", "7x7_MBConv3",
                        "3x3_MBConv6"),
                       stem=8, first=8, widths=(12, 16, 20, 24, 28, 32), depths=(2, 1, 1, 2, 1, 1), head=32)
    torch.manual_seed(0)
    net = build_derived(g, num_classes=10, image_size=32).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(net, (torch.randn(2, 3, 32, 32),), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            want = net(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        assert got.shape == (batch, 10) and abs(got - want).max() < 1e-4


def test_released_genotypes_match_the_configs(reference_dir):
    for name, g in NAMED.items():
        cfg = json.loads((reference_dir / f"{name}.config").read_text())
        assert cfg["first_conv"]["out_channels"] == g.stem and cfg["first_conv"]["stride"] == 2
        assert cfg["feature_mix_layer"]["out_channels"] == g.head
        assert cfg["bn"] == {"momentum": 0.1, "eps": 0.001}
        first, blocks = cfg["blocks"][0], cfg["blocks"][1:]
        assert (first["mobile_inverted_conv"]["out_channels"], first["mobile_inverted_conv"]["expand_ratio"]) == \
            (g.first, 1)
        plan = block_plan(g.stem, g.first, g.widths, g.depths, 224)
        assert len(blocks) == len(plan) == len(g.ops)
        for spec, op, block in zip(plan, g.ops, blocks):
            conv = block["mobile_inverted_conv"]
            assert (block["shortcut"] is not None) == spec.shape.keeps_shape
            if conv["name"] == "ZeroLayer":
                assert op == "zero" and conv["stride"] == spec.shape.stride
                continue
            assert (conv["in_channels"], conv["out_channels"], conv["stride"]) == \
                (spec.shape.in_channels, spec.shape.out_channels, spec.shape.stride)
            assert (conv["kernel_size"], conv["expand_ratio"]) == (kernel_of(op), expand_of(op))


def test_each_stage_must_change_the_width():
    """A stage starts where the width changes, so the genotype's rule (no zero on a stage's first block) and the
    space's rule by shape (zero only where the block keeps its shape) agree at every image size."""
    with pytest.raises(SpaceError, match="stage 0 has the width of the layer before it"):
        MBConvGenotype(("3x3_MBConv3",) * 6, first=16, widths=(16, 40, 80, 96, 192, 320), depths=(1,) * 6)
    with pytest.raises(SpaceError, match="stage 3 has the width"):
        MBConvGenotype(("3x3_MBConv3",) * 6, widths=(24, 40, 80, 80, 192, 320), depths=(1,) * 6)
