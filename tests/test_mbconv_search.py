"""The MBConv space through the whole method: the authors' mobile table as the project's latency table, a search
at 224 px on an image folder with that table as its target, and one at 32 px with a table built here.

The authors' table is not bundled (it carries no licence): the tests write a table in its exact layout for a tiny
network (keys as the authors' estimator builds them, made-up milliseconds); with PNAS_REFERENCE set, the real
table is checked too."""
import random
from pathlib import Path

import pytest
import torch

import search_cifar
from models.mbconv.space import MBCONV
from utils import latency as L
from utils.errors import USER_ERRORS
from utils.latency_table import LatencyTable, predict_genotype
from utils.mobile_latency import (SEARCH_OPS, MobileTable, MobileTableError, conv_key, feature_mix_key, logits_key,
                                  to_latency_table)
from utils.synthetic import write_synthetic_cifar

TINY = {"stem": 8, "first": 8, "widths": (12, 16, 20, 24, 28, 32), "depths": (1, 2, 1, 2, 1, 1), "head": 32}
TINY_FLAGS = ["--space", "mbconv", "--stem", "8", "--first", "8", "--widths", "12,16,20,24,28,32",
              "--depths", "1,2,1,2,1,1", "--head", "32"]


def fake_mobile_yaml(path: Path, macro: dict, num_classes: int, image_size: int = 224, drop: str | None = None) -> Path:
    """A table in the authors' layout with every layer the network of ``macro`` can have: a block costs
    kernel * expand * out_channels / 100 ms (so ops and blocks differ), the fixed layers 1-3 ms."""
    t = MobileTable({})
    size = image_size // 2
    keys = {conv_key(image_size, 3, size, macro["stem"]): 3.0,
            t.block_key_for(macro["stem"], macro["first"], 1, size, "3x3_MBConv1", idskip=0): 2.0}
    for e in MBCONV.latency_edges(MBCONV.macro(macro), image_size):
        s = e.shape
        for op, (kernel, expand) in SEARCH_OPS.items():
            keys[t.block_key_for(s.in_channels, s.out_channels, s.stride, s.in_size, op)] = \
                kernel * expand * s.out_channels / 100
        size = s.out_size
    keys[feature_mix_key(size, macro["widths"][-1], macro["head"])] = 1.5
    keys[logits_key(size, macro["head"], num_classes)] = 1.0
    keys.pop(drop, None)
    path.write_text("".join(f"{k}:\n  count: 10\n  mean: {v}\n  var: 0.01\n" for k, v in keys.items()))
    return path


def hand_sum(mobile: MobileTable, genotype, num_classes: int = 1000, image_size: int = 224) -> float:
    """The authors' sum for a network, written out: first conv + first block + every block + feature mix + logits."""
    m = MBCONV.genotype_macro(genotype)
    size = image_size // 2
    total = mobile.ms(conv_key(image_size, 3, size, m["stem"]))
    total += mobile.ms(mobile.block_key_for(m["stem"], m["first"], 1, size, "3x3_MBConv1", idskip=0))
    for e, op in zip(MBCONV.latency_edges(MBCONV.macro(m), image_size), genotype.ops):
        s = e.shape
        if op != "zero":
            kernel, expand = SEARCH_OPS[op]
            total += mobile.entries[f"expanded_conv-input:{s.in_size}x{s.in_size}x{s.in_channels}-output:"
                                    f"{s.out_size}x{s.out_size}x{s.out_channels}-expand:{expand}-kernel:{kernel}-"
                                    f"stride:{s.stride}-idskip:{int(s.keeps_shape)}"]["mean"]
        size = s.out_size
    total += mobile.ms(feature_mix_key(size, m["widths"][-1], m["head"]))
    return total + mobile.ms(logits_key(size, m["head"], num_classes))


def random_genotypes(macro: dict, n: int, seed: int = 0):
    rng = random.Random(seed)
    allowed = MBCONV.allowed(MBCONV.macro(macro), MBCONV.primitives, 224)
    return [MBCONV.genotype_from_ops([MBCONV.primitives[rng.choice(a)] for a in allowed], MBCONV.macro(macro))
            for _ in range(n)]


def test_mobile_table_as_a_latency_table_predicts_the_authors_sum(tmp_path):
    mobile = MobileTable.from_file(fake_mobile_yaml(tmp_path / "m.yaml", TINY, 1000))
    table = to_latency_table(mobile, TINY)
    zeros = MBCONV.genotype_from_ops([MBCONV.baseline_for(e.shape) for e in MBCONV.latency_edges(
        MBCONV.macro(TINY), 224)], MBCONV.macro(TINY))
    for g in random_genotypes(TINY, 10) + [zeros]:
        assert predict_genotype(table, g) == pytest.approx(hand_sum(mobile, g), rel=1e-12)
    # the table goes through its own JSON and the CLI's predict
    table.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json").macro == MBCONV.macro(TINY)


def test_a_missing_entry_is_one_error_naming_it(tmp_path):
    t = MobileTable({})
    gone = t.block_key_for(16, 16, 1, 28, "5x5_MBConv6")  # stage 1's second block
    mobile = MobileTable.from_file(fake_mobile_yaml(tmp_path / "m.yaml", TINY, 1000, drop=gone))
    with pytest.raises(MobileTableError, match="5x5_MBConv6|expand:6-kernel:5") as e:
        to_latency_table(mobile, TINY)
    assert e.value.missing == [gone]
    with pytest.raises(USER_ERRORS, match="expand:6-kernel:5"):  # the CLI: one error line
        L.main(L.get_args_parser().parse_args(["import-mobile", "--yaml", str(tmp_path / "m.yaml"), *TINY_FLAGS[2:],
                                               "--out", str(tmp_path / "t.json")]))


def test_real_mobile_table_prediction_equals_hand_summed_entries(reference_dir, tmp_path):
    mobile = MobileTable.from_file(reference_dir / "mobile_trim.yaml")
    L.main(L.get_args_parser().parse_args(["import-mobile", "--yaml", str(reference_dir / "mobile_trim.yaml"),
                                           "--out", str(tmp_path / "t.json")]))
    table = LatencyTable.load(tmp_path / "t.json")
    for g in random_genotypes(MBCONV.macro_defaults, 20, seed=1):
        assert predict_genotype(table, g) == pytest.approx(hand_sum(mobile, g), rel=1e-12)
    # ProxylessNAS-Mobile is wider than the space the table was measured for (its 32-channel stage)
    import genotypes
    g = genotypes.get("proxyless_mobile")
    blocks = [(e.shape.in_channels, e.shape.out_channels, e.shape.stride, e.shape.in_size, op)
              for e, op in zip(MBCONV.latency_edges(MBCONV.macro(MBCONV.genotype_macro(g)), 224), g.ops)]
    with pytest.raises(MobileTableError) as e:
        mobile.network_ms(g.stem, g.first, blocks, g.head, 1000)
    assert len(e.value.missing) == 3 and all("x32" in k for k in e.value.missing)


def search(data, out, *extra):
    return search_cifar.main(search_cifar.get_args_parser().parse_args([
        "--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--seed", "1", *TINY_FLAGS,
        "--warmup-epochs", "1", "--epochs", "2", "--batch-size", "8", "--arch-batch-size", "8", "--arch-every", "1",
        "--output", str(out), *map(str, extra)]))


@pytest.mark.long
def test_search_at_224px_with_the_mobile_table_as_target(tmp_path):
    from tests.test_own_data import make_folder
    data = make_folder(tmp_path / "images", per_class=(12, 4))
    mobile = MobileTable.from_file(fake_mobile_yaml(tmp_path / "m.yaml", TINY, 3))
    to_latency_table(mobile, TINY, num_classes=3).save(tmp_path / "t.json")
    table = LatencyTable.load(tmp_path / "t.json")
    zeros = MBCONV.genotype_from_ops([MBCONV.baseline_for(e.shape) for e in MBCONV.latency_edges(
        MBCONV.macro(TINY), 224)], MBCONV.macro(TINY))
    floor = predict_genotype(table, zeros)  # the fastest network: zero wherever allowed
    got = {}
    for name, target in (("tight", floor * 1.1), ("loose", floor * 10)):
        res = search(data, tmp_path / name, "--dataset", "folder", "--image-size", "224", "--arch-split", "0.34",
                     "--latency-table", tmp_path / "t.json", "--target-latency", target, "--latency-loss", "hinge",
                     "--latency-lambda", "5", "--arch-lr", "0.05", "--derive", "within-target")
        got[name] = predict_genotype(table, res["genotype"])
        assert res["genotype"].widths == TINY["widths"]
    assert got["tight"] <= floor * 1.1 < got["loose"], got


@pytest.mark.long
def test_search_at_32px_with_a_table_built_here(tmp_path):
    data = tmp_path / "data"
    write_synthetic_cifar(data, per_batch=16, n_test=16, seed=0)
    table = L.main(L.get_args_parser().parse_args([
        "build", *TINY_FLAGS, "--image-size", "32", "--num-classes", "10", "--threads", "1", "--warmup", "1",
        "--repeats", "3", "--calibration", "0", "--no-progress", "--out", str(tmp_path / "t.json")]))
    # a stage's first block has no zero entry, the others do; the baseline's entries are 0
    first = [e.shape for e in MBCONV.latency_edges(MBCONV.macro(TINY), 32) if not e.shape.keeps_shape]
    assert all(MBCONV.group_key(("zero",), s) not in table.entries for s in first)
    assert all(table.entries[MBCONV.group_key(("3x3_MBConv3",), s)]["median_ms"] == 0.0 for s in first)
    cheapest = min(predict_genotype(table, g) for g in random_genotypes(TINY, 30, seed=2))
    res = search(data, tmp_path / "s", "--arch-split", "16", "--latency-table", tmp_path / "t.json",
                 "--target-latency", cheapest, "--derive", "within-target")
    assert predict_genotype(table, res["genotype"]) <= cheapest
    assert torch.isfinite(res["alphas"]).sum() > 0


@pytest.mark.parametrize("extra", [("--arch-mode", "full"), ("--algo", "reinforce")])
def test_full_mode_and_reinforce_never_choose_a_forbidden_zero(tmp_path, extra):
    """Proxyless-G with all N paths and Proxyless-R on the chain: alpha moves, and no stage's first block is ever
    sampled or derived as zero (the mask), even when its zero logit is made the largest."""
    data = tmp_path / "data"
    write_synthetic_cifar(data, per_batch=16, n_test=16, seed=0)
    res = search(data, tmp_path / "s", "--arch-split", "16", "--epochs", "1", *extra)
    alphas = res["alphas"]
    first = [e.decision for e in MBCONV.latency_edges(MBCONV.macro(TINY), 32) if not e.shape.keeps_shape]
    zero = MBCONV.primitives.index("zero")
    moved = alphas.clone()
    moved[:, zero] = 0.0
    assert moved.abs().max() > 0  # the architecture steps ran
    from utils.checkpoint import load_supernet
    net, _ = load_supernet(tmp_path / "s" / "checkpoint.pth")
    with torch.no_grad():
        net.alpha[:, zero] = 100.0
    assert [net.derive().ops[d] for d in first] != ["zero"] * len(first)
    assert all(net.derive().ops[d] != "zero" for d in first)
    for mode in ("uniform", "sample", "two", "full"):
        with net.gate_mode(mode), torch.no_grad():
            net(torch.zeros(2, 3, 32, 32))
        assert all(zero not in net.sampled[d] for d in first), mode


def test_a_table_fit_to_timed_mbconv_networks_predicts_them(tmp_path):
    """`python -m utils.latency sample` + `fit` on the chain: the samples are legal (no zero on a stage's first
    block), the fit has no term for a forbidden op, and on latencies that are a sum of per-block costs (the
    baseline of a stage's first block being 3x3_MBConv3) it predicts held-out networks within 1 %."""
    import numpy as np
    from utils import latency_fit as LF
    macro = MBCONV.macro(TINY)
    archs = L.sample_architectures(MBCONV, macro, list(MBCONV.primitives), 120, seed=0)
    edges = MBCONV.latency_edges(macro, 32)
    assert all(g.ops[e.decision] != "zero" for g in archs for e in edges if not e.shape.keeps_shape)
    rng = np.random.default_rng(0)
    cost = {(e.shape, op): float(rng.uniform(0.1, 1.0)) * (op != "zero") for e in edges for op in MBCONV.primitives}
    truth = lambda g: 5.0 + sum(cost[e.shape, g.ops[e.decision]] for e in edges)  # noqa: E731
    m = LF.Measurements(archs[:100], np.array([truth(g) for g in archs[:100]]), list(range(100)), "test", "ms")
    table = LF.fit_table(m, MBCONV, macro, image_size=32, num_classes=10)
    first = [e.shape for e in edges if not e.shape.keeps_shape]
    assert all(MBCONV.group_key(("zero",), s) not in table.entries for s in first)
    for g in archs[100:]:
        assert predict_genotype(table, g) == pytest.approx(truth(g), rel=0.01)


def test_retrain_visualize_and_init_from_a_search(tmp_path):
    """The searched MBConv genotype retrains (the space's recipe flags, the supernet's weights with --init-from),
    and its pictures and the search's alpha heat map are drawn."""
    import train_cifar
    import visualize_cifar
    data = tmp_path / "data"
    write_synthetic_cifar(data, per_batch=16, n_test=16, seed=0)
    search(data, tmp_path / "s", "--arch-split", "16", "--epochs", "1")
    out = train_cifar.main(train_cifar.get_args_parser().parse_args([
        "--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--epochs", "1", "--batch-size", "16",
        "--genotype", str(tmp_path / "s" / "genotype_final.json"), "--init-from", str(tmp_path / "s" / "checkpoint.pth"),
        "--output", str(tmp_path / "t")]))
    assert out["finished"] and out["space"] == "mbconv" and out["lr"] == pytest.approx(MBCONV.train_recipe["lr"] * 16 / 64)
    written = visualize_cifar.main(visualize_cifar.get_args_parser().parse_args(
        [str(tmp_path / "pic" / "p"), "--checkpoint", str(tmp_path / "s" / "checkpoint.pth")]))
    names = {p.name for p in written}
    assert {"p_network.gv", "p_alpha.gv"} <= names
    alpha = (tmp_path / "pic" / "p_alpha.gv").read_text()
    assert alpha.count("block 0: ") == len(MBCONV.primitives) - 1  # no cell for zero on a stage's first block
    assert "block 1: zero" not in alpha and "3 × 32 × 32" in (tmp_path / "pic" / "p_network.gv").read_text()


def test_the_spaces_default_genotype_is_sized_as_itself():
    """`--space mbconv` without a genotype: train, export and pictures fall back on ProxylessNAS-Mobile, in its own
    widths (32 in stage 0), not the space's default widths (24: a clash the scripts once reported)."""
    import export_onnx
    import genotypes
    import train_cifar
    import visualize_cifar
    mobile = genotypes.get("proxyless_mobile")
    args = train_cifar.get_args_parser().parse_args(["--space", "mbconv"])
    genotype, space, macro = train_cifar.resolve_recipe(args)
    assert genotype == mobile and macro["widths"] == mobile.widths and args.widths == mobile.widths
    net = export_onnx.load_network(None, None, export_onnx.get_args_parser().parse_args(["--space", "mbconv"]))
    assert net.genotype == mobile and net.image_size == 224
    graphs = visualize_cifar.graphs_for(visualize_cifar.get_args_parser().parse_args(["x", "--space", "mbconv"]))
    assert "proxyless_mobile" in graphs["network"].source and "3 × 224 × 224" in graphs["network"].source
