"""The NAS-Bench-201 space: the benchmark's network (parameter counts), its cell strings, the supernet with
six decisions shared by every cell (fixed gates = derived network, gate gradient = formula, weight steps
touch only the sampled ops), the table as a judge, and the space through every script."""
import csv
import gzip
import io
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import genotypes
from models import SuperNet, build_net, count_parameters, multiply_adds
from models.nb201.arch import EDGES, NAMED, PRIMITIVES, CellGenotype, CellGenotypeError, all_cells, uniform_cell
from models.nb201.space import NB201
from models.mixed_op import MixedOp
from utils.errors import USER_ERRORS
from models.nb201.table import NB201Table
from tiny_runs import randomize

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "nb201_table" / "accuracy.csv.gz"
MIXED = CellGenotype.from_string(  # every op, 'none' and pooling included
    "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|")


# ------------------------------------------------------------------ the network
@pytest.mark.parametrize("cell,classes,params", [
    ("nb201_all_conv3x3", 10, 1_531_546),   # the benchmark's published maximum (C=16, N=5)
    ("nb201_all_conv3x3", 100, 1_537_396),  # its maximum with 100 classes
    ("nb201_all_skip", 10, 73_306),         # its minimum: no cell has weights
])
def test_parameter_counts_are_the_benchmarks(cell, classes, params):
    net = build_net(genotypes.get(cell), classes, macro={"C": 16, "N": 5})
    assert count_parameters(net) == params


def test_multiply_adds_of_the_largest_cell_are_the_benchmarks():
    # published: 220.12 M FLOPs (the benchmark counts multiply-adds) for the all-3x3 cell
    assert multiply_adds(NAMED["nb201_all_conv3x3"], macro={"C": 16, "N": 5}) / 1e6 == pytest.approx(220.12, abs=0.01)


def test_none_is_zeros_and_pooling_does_not_count_padding():
    net = build_net(uniform_cell("none"), macro={"C": 4, "N": 1}).eval()
    x = torch.randn(2, 4, 6, 6)
    cell = net.layers[0]
    assert torch.equal(cell(x), torch.zeros_like(x))
    pool = build_net(uniform_cell("avg_pool_3x3"), macro={"C": 4, "N": 1}).layers[0].edges[0]
    ones = torch.ones(1, 1, 5, 5)
    assert torch.equal(pool(ones), ones)  # corners average 4 ones, not 4 ones and 5 zeros


# ------------------------------------------------------------------ the genotype string
def test_every_cell_string_round_trips():
    cells = all_cells()
    strings = [c.to_string() for c in cells]
    assert len(set(strings)) == 5 ** 6 == 15_625
    assert all(CellGenotype.from_string(s) == c for s, c in zip(strings, cells))
    assert all(genotypes.get(s) == c for s, c in zip(strings[::97], cells[::97]))  # the command-line path too
    assert strings[0] == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    # JSON files name their space and round-trip too
    assert genotypes.genotype_from_dict(json.loads(MIXED.to_json())) == MIXED


def test_the_benchmarks_strings_parse_to_the_same_set():
    text = gzip.decompress(TABLE.read_bytes()).decode()
    archs = [row["arch"] for row in csv.DictReader(io.StringIO(text))]
    assert len(archs) == 15_625
    assert {CellGenotype.from_string(a).to_string() for a in archs} == {c.to_string() for c in all_cells()}
    assert all(CellGenotype.from_string(a).to_string() == a for a in archs)


@pytest.mark.parametrize("text,problem", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "2 '\\+'-separated node groups"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 incoming edge"),
    ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_9x9'"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "should read op~0"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2", "must be written"),
    ("none~0+none~0|none~1+none~0|none~1|none~2", "must be written"),
])
def test_malformed_strings_name_the_problem(text, problem):
    with pytest.raises(CellGenotypeError, match=problem) as e:
        CellGenotype.from_string(text)
    assert "\n" not in str(e.value)


def test_json_with_wrong_content_is_refused(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"space": "nb201", "arch": MIXED.to_string(), "C": 16}))
    with pytest.raises(USER_ERRORS, match="unknown key"):
        genotypes.get(str(bad))
    bad.write_text(json.dumps({"space": "nb201"}))
    with pytest.raises(USER_ERRORS, match="lacks the key 'arch'"):
        genotypes.get(str(bad))
    bad.write_text(json.dumps({"space": "nb999", "arch": MIXED.to_string()}))
    with pytest.raises(USER_ERRORS, match="names space 'nb999'"):
        genotypes.get(str(bad))


# ------------------------------------------------------------------ the supernet
def test_fixed_and_argmax_supernet_equal_the_derived_network():
    torch.manual_seed(0)
    supernet = SuperNet(NB201, {"C": 4, "N": 2})
    randomize(supernet)
    supernet.eval()
    x = torch.randn(3, 3, 32, 32)
    for genotype, mode in ((MIXED, "fixed"), (supernet.derive(), "argmax")):
        supernet.fix(genotype)
        with supernet.gate_mode(mode), torch.no_grad():
            y_super = supernet(x)
        net = build_net(genotype, macro={"C": 4, "N": 2}).eval()
        net.load_state_dict(supernet.derived_state_dict(genotype))  # strict: every key maps
        with torch.no_grad():
            torch.testing.assert_close(y_super, net(x), rtol=1e-5, atol=1e-5)
    other = CellGenotype.from_string("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|")
    supernet.fix(other)
    with supernet.gate_mode("fixed"), torch.no_grad():  # the comparison is sharp
        assert not torch.allclose(supernet(x), net(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("mode,seed", [("two", 0), ("two", 1), ("full", 2)])
def test_gate_gradient_of_a_shared_decision_is_the_formula_summed_over_cells(mode, seed):
    """dL/dalpha_d = sum over the edges that read decision d of  sum_j dL/dg_j p~_j (delta_ij - p~_i),
    dL/dg_j = <dL/dy, o_j(x)>: written out here from each edge's input and output gradient."""
    torch.manual_seed(seed)
    net = SuperNet(NB201, {"C": 3, "N": 2}).double().train()
    with torch.no_grad():
        net.alpha.normal_(0, 1)
    seen = []

    def keep(mod, inp, out):  # each edge's input, and its output's gradient after backward
        out.retain_grad()
        seen.append((mod, inp[0], out))

    hooks = [m.register_forward_hook(keep) for m in net.mixed_ops()]
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    w = torch.randn(2, 10, dtype=torch.float64)
    with net.gate_mode(mode):
        (net(x) * w).sum().backward()
    for h in hooks:
        h.remove()
    assert len(seen) == 6 * 3 * 2  # every edge of every cell ran
    expected = torch.zeros_like(net.alpha)
    with torch.no_grad():
        for m, inp, out in seen:
            S = list(m.sampled)
            p = torch.softmax(net.alpha[m.decision, S], 0)
            dg = torch.stack([(out.grad * m.ops[j](inp)).sum() for j in S])
            for a, i in enumerate(S):
                expected[m.decision, i] += sum(dg[b] * p[b] * (float(a == b) - p[a]) for b in range(len(S)))
    assert expected.abs().max() > 1e-4  # the check below can fail
    torch.testing.assert_close(net.alpha.grad, expected, rtol=1e-9, atol=1e-12)
    if mode == "two":  # only the sampled pair of each decision has a gradient
        for d, pair in enumerate(net.sampled):
            rest = [i for i in range(len(PRIMITIVES)) if i not in pair]
            assert (net.alpha.grad[d, rest] == 0).all()


def test_a_weight_step_touches_only_the_sampled_op_of_every_cell():
    torch.manual_seed(0)
    net = SuperNet(NB201, {"C": 4, "N": 2}).train()
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with net.gate_mode("uniform"):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
    cells = [m for m in net.modules() if isinstance(m, nn.Module) and hasattr(m, "edges")]
    assert len(cells) == 6
    for cell in cells:
        for e, m in enumerate(cell.edges):
            assert isinstance(m, MixedOp) and m.decision == e and m.active == net.active[e]  # one cell for all
            for i, op in enumerate(m.ops):
                for p in op.parameters():
                    assert (p.grad is not None) == (i == net.active[e]), (e, i)
    assert net.alpha.grad is None  # weight steps never reach alpha


@pytest.mark.parametrize("ops, drawn", [("all", set(PRIMITIVES)), ("weighted", {"nor_conv_1x1", "nor_conv_3x3"}),
                                         ("nor_conv_3x3, skip_connect", {"nor_conv_3x3", "skip_connect"})])
def test_the_warmup_draws_only_its_ops(ops, drawn):
    torch.manual_seed(0)
    net = SuperNet(NB201, {"C": 2, "N": 1}, warmup_ops=ops)
    seen = set()
    with net.gate_mode("uniform"):
        for _ in range(40):
            net.resample()
            seen |= {net.candidates[i] for i in net.active}
    assert seen == drawn  # 240 draws: every op of the pool shows up, no other does
    with net.gate_mode("sample"):  # the search's draws are not limited to the warm-up's ops
        net.alpha.data[:, PRIMITIVES.index("none")] = 5.0
        net.resample()
        assert PRIMITIVES.index("none") in net.active


@pytest.mark.parametrize("argv, lr", [(["--space", "nb201"], 0.003), (["--space", "tree"], 0.006),
                                      (["--space", "nb201", "--algo", "reinforce"], 0.01),
                                      (["--space", "nb201", "--arch-lr", "0.02"], 0.02)])
def test_the_arch_lr_default_is_the_spaces(argv, lr):
    import search_cifar
    args = search_cifar.get_args_parser().parse_args(argv)
    search_cifar.check_args(args)
    assert args.arch_lr == lr


@pytest.mark.parametrize("ops", ["skip", "nor_conv_3x3,nor_conv_3x3", "nor_conv_3x3,", "some"])
def test_bad_warmup_ops_are_one_error(ops):
    from models.common import SpaceError
    with pytest.raises(SpaceError, match="unknown warm-up ops"):
        SuperNet(NB201, {"C": 2, "N": 1}, warmup_ops=ops)


def test_expected_latency_of_a_one_hot_alpha_is_the_cells_prediction():
    from utils.latency import build_table
    from utils.objective import LatencyModel

    table = build_table(NB201, {"C": 4, "N": 1}, batch_size=1, device="cpu", threads=1, warmup=0, repeats=1,
                        progress=False)
    net = SuperNet(NB201, {"C": 4, "N": 1})
    model = LatencyModel(table, net)
    assert [tuple(model.costs.costs[k].shape) for k in (1, 2, 3)] == [(1, 5), (1, 25), (1, 125)]
    idx = [PRIMITIVES.index(op) for op in MIXED.ops]
    with torch.no_grad():
        net.alpha.fill_(-60.0)
        net.alpha[torch.arange(6), idx] = 60.0
    assert float(model.expected(net).detach()) == pytest.approx(model.predict(MIXED), rel=1e-6)
    # by hand: the fixed cost + each input group's ops less skips, for each of the 3 cells
    from utils.latency_table import fixed_key
    total = table.ms(fixed_key(NB201, {"C": 4, "N": 1}, 10, 32))
    for g in NB201.latency_groups({"C": 4, "N": 1}, 32):
        total += table.ms(NB201.group_key(tuple(MIXED.ops[d] for d in g.decisions), g.shape)) - \
            table.ms(NB201.group_key(("skip_connect",) * len(g.decisions), g.shape))
    assert model.predict(MIXED) == pytest.approx(total, rel=1e-9)


# ------------------------------------------------------------------ the table
def test_table_lookup_equals_the_csv():
    table = NB201Table.load(TABLE, need=("cifar10_test_200", "cifar100_test_200"))
    text = gzip.decompress(TABLE.read_bytes()).decode()
    rows = random.Random(0).sample(list(csv.DictReader(io.StringIO(text))), 50)
    for row in rows:
        assert table.lookup(row["arch"]) == float(row["cifar10_test_200"])
        assert table.lookup(row["arch"], "cifar100_test_200") == float(row["cifar100_test_200"])
    assert table.lookup(NAMED["nb201_best_cifar10"]) == 94.3733  # the published optimum, 94.37
    assert table.lookup(NAMED["nb201_all_skip"]) == 54.2967      # where DARTS collapses, 54.30
    values = [float(r["cifar10_test_200"]) for r in csv.DictReader(io.StringIO(text))]
    for v in (94.3733, 54.2967, values[123]):  # the share of cells strictly below
        assert table.percentile(v) == pytest.approx(100 * sum(x < v for x in values) / len(values))
    judged = table.judge(NAMED["nb201_best_cifar10"], "cifar100")
    assert judged["nb201_cifar100_test"] == table.lookup(NAMED["nb201_best_cifar10"], "cifar100_test_200")


def test_a_table_that_lacks_a_cell_or_a_column_is_one_error(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text("arch,cifar10_test_200\n" + f"{MIXED.to_string()},91.5\n")
    table = NB201Table.load(small)
    assert table.lookup(MIXED) == 91.5
    with pytest.raises(USER_ERRORS, match="no cifar10_test_200 value for") as e:
        table.lookup(NAMED["nb201_all_skip"])
    with pytest.raises(USER_ERRORS, match="lacks cifar10_test_200 for 15624 of the 15625 cells"):
        table.check_covers(PRIMITIVES, "cifar10_test_200")
    with pytest.raises(USER_ERRORS, match="lacks the column.*cifar100_test_200"):
        NB201Table.load(small, need=("cifar100_test_200",))
    (tmp_path / "bad.csv").write_text("arch,cifar10_test_200\n|none~0|,1\n")
    with pytest.raises(USER_ERRORS, match="line 2"):
        NB201Table.load(tmp_path / "bad.csv")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ the scripts (synthetic data)
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from utils.synthetic import write_synthetic_cifar
    root = tmp_path_factory.mktemp("nb201") / "data"
    write_synthetic_cifar(root, per_batch=32, n_test=32, seed=0)
    return root


def _search(data, out, *flags):
    import search_cifar
    argv = ["--data", str(data), "--no-download", "--space", "nb201", "--C", "4", "--N", "1", "--warmup-epochs", "1",
            "--epochs", "2", "--arch-split", "32", "--batch-size", "32", "--arch-batch-size", "32", "--output",
            str(out), "--no-progress", "--no-tensorboard", *map(str, flags)]
    return search_cifar.main(search_cifar.get_args_parser().parse_args(argv))


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_search_is_judged_by_the_table_every_epoch(data, tmp_path, capsys):
    result = _search(data, tmp_path / "s", "--nb201-table", TABLE, "--arch-every", "1")
    table = NB201Table.load(TABLE)
    final = genotypes.get(str(tmp_path / "s" / "genotype_final.json"))
    assert isinstance(final, CellGenotype) and final == result["genotype"]
    records = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for r in records:
        assert r["nb201_cifar10_test"] == table.lookup(r["nb201_arch"])
        assert r["nb201_arch"] == CellGenotype.from_dict(r["genotype"]).to_string()
        assert 0 <= r["nb201_percentile"] <= 100
    assert records[-1]["nb201_arch"] == final.to_string()
    out = capsys.readouterr().out
    assert f"nb201_cifar10_test={table.lookup(final):.4f}" in out and f"nb201_arch={final.to_string()}" in out


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
@pytest.mark.parametrize("flags", [["--algo", "reinforce", "--reinforce-samples", "2"], ["--arch-mode", "full"]])
def test_reinforce_and_full_mode_search_nb201(data, tmp_path, flags):
    result = _search(data, tmp_path / "s", "--arch-every", "1", *flags)
    assert result["alphas"].shape == (6, 5) and result["alphas"].abs().max() > 0


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_latency_aware_search_nb201(data, tmp_path):
    from utils.latency import build_table
    build_table(NB201, {"C": 4, "N": 1}, batch_size=1, device="cpu", threads=1, warmup=0, repeats=1,
                progress=False).save(tmp_path / "lat.json")
    from utils.latency_table import LatencyTable, predict_genotype
    table = LatencyTable.load(tmp_path / "lat.json")
    target = predict_genotype(table, NAMED["nb201_all_skip"]) * 1.001  # feasible: skip is the baseline (cost 0)
    result = _search(data, tmp_path / "s", "--latency-table", tmp_path / "lat.json", "--target-latency", f"{target:.6f}")
    last = json.loads((tmp_path / "s" / "log.jsonl").read_text().splitlines()[-1])
    assert last["expected_latency_ms"] > 0 and last["argmax_latency_ms"] > 0
    # --derive defaults to within-target: the final cell is the most probable one the table predicts in time
    final = genotypes.get(str(tmp_path / "s" / "genotype_final.json"))
    assert final == result["genotype"] and predict_genotype(table, final) <= target
    assert last["genotype"] == final.to_dict()
    with pytest.raises(USER_ERRORS, match="--derive within-target needs"):
        _search(data, tmp_path / "t", "--derive", "within-target")


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_train_the_largest_cell_in_the_benchmarks_network(data, tmp_path):
    import train_cifar
    argv = ["--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--space", "nb201", "--C", "16",
            "--N", "5", "--genotype", NAMED["nb201_all_conv3x3"].to_string(), "--epochs", "1", "--train-subset", "32",
            "--output", str(tmp_path / "t")]
    args = train_cifar.get_args_parser().parse_args(argv)
    train_cifar.main(args)
    results = json.loads((tmp_path / "t" / "results.json").read_text())
    assert results["params"] == 1_531_546 and results["space"] == "nb201" and (results["C"], results["N"]) == (16, 5)
    # the benchmark's recipe by default
    assert (args.batch_size, args.lr * args.batch_size / 64, args.weight_decay, args.cutout) == (256, 0.1, 5e-4, 0)
    assert args.epochs == 1 and args.decay_bn_bias and not args.drop_last


def test_export_and_pictures(tmp_path):
    import export_onnx
    import visualize_cifar
    result = export_onnx.main(export_onnx.get_args_parser().parse_args(
        ["--space", "nb201", "--C", "4", "--N", "1", "--genotype", MIXED.to_string(), "--output",
         str(tmp_path / "m.onnx"), "--latency-runs", "0", "--batch-sizes", "1", "3"]))
    assert max(result["max_abs_diff"].values()) <= 1e-4 and (tmp_path / "m.onnx").stat().st_size > 1000
    written = visualize_cifar.main(visualize_cifar.get_args_parser().parse_args(
        [str(tmp_path / "pic"), "--space", "nb201", "--genotype", MIXED.to_string()]))
    gv = (tmp_path / "pic_cell.gv").read_text()
    assert tmp_path / "pic_network.gv" in written
    for (k, j), op in zip(EDGES, MIXED.ops):  # every edge drawn, named, with its op
        assert f'"{j}->{k}: {op}"' in gv or f"{j}->{k}: {op}" in gv


def test_latency_cli_builds_and_predicts_a_cell(tmp_path):
    from utils import latency as L
    out = tmp_path / "T.json"
    L.main(L.get_args_parser().parse_args(["build", "--space", "nb201", "--C", "4", "--N", "1", "--device", "cpu",
                                           "--threads", "1", "--batch", "1", "--repeats", "2", "--warmup", "0",
                                           "--out", str(out), "--no-progress"]))
    ms = L.main(L.get_args_parser().parse_args(["predict", "--table", str(out), "--genotype", MIXED.to_string()]))
    table = L.LatencyTable.load(out)
    assert table.meta["space"] == "nb201" and table.macro == {"C": 4, "N": 1}
    assert ms == pytest.approx(L.predict_genotype(table, MIXED)) and ms > 0


@pytest.mark.parametrize("argv,needle", [
    (["search_cifar.py", "--space", "tree", "--C", "8"], "--C sizes the nb201 space"),
    (["search_cifar.py", "--space", "nb201", "--B", "2"], "--B sizes the tree space"),
    (["search_cifar.py", "--nb201-table", "x.csv"], "--nb201-table judges NAS-Bench-201 cells"),
    (["search_cifar.py", "--space", "nb201", "--candidates", "sep_3x3"], "unknown candidate op"),
    (["search_cifar.py", "--space", "nb201", "--warmup-ops", "nor_conv_3x3,skip"], "--warmup-ops: unknown warm-up ops"),
    (["search_cifar.py", "--space", "nb201", "--candidates", "none", "nor_conv_3x3", "--warmup-ops",
      "nor_conv_3x3,skip_connect"], "--warmup-ops: unknown warm-up ops"),
    (["train_cifar.py", "--space", "tree", "--genotype", "nb201_all_skip"], "does not agree"),
    (["train_cifar.py", "--genotype", "|nor_conv_3x3~0|+|none~0|"], "node groups"),
    (["train_cifar.py", "--genotype", "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "unknown op"),
    (["export_onnx.py", "--genotype", "nb201_all_skip", "--N", "0"], "N (cells per stage)"),
    (["visualize_cifar.py", "x", "--genotype", "nb201_all_skip", "--F", "64"], "--F sizes the tree space"),
])
def test_bad_space_input_is_one_line(tmp_path, argv, needle):
    proc = subprocess.run([sys.executable, *argv, "--output" if argv[0] != "visualize_cifar.py" else "--dpi",
                           str(tmp_path / "o") if argv[0] != "visualize_cifar.py" else "72"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "o").exists()


def test_plain_batchnorm_supernet_and_init_from(data, tmp_path):
    """--supernet-bn plain: no BN scale, shift or running statistics in the supernet (batch statistics in
    eval mode too); --init-from then takes the chosen ops' conv weights and keeps the network's own BN."""
    import train_cifar
    from utils.checkpoint import load_supernet
    net = SuperNet(NB201, {"C": 4, "N": 1}, bn="plain")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.affine and not m.track_running_stats for m in bns)
    assert all("running_" not in k and not k.endswith("bn.weight") for k in net.state_dict())
    _search(data, tmp_path / "s", "--supernet-bn", "plain", "--arch-every", "1")
    supernet, _ = load_supernet(tmp_path / "s")
    assert supernet.bn == "plain"
    train_cifar.main(train_cifar.get_args_parser().parse_args(
        ["--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--genotype",
         str(tmp_path / "s" / "genotype_final.json"), "--C", "4", "--N", "1", "--epochs", "1", "--lr", "1e-12",
         "--train-subset", "32", "--batch-size", "32", "--init-from", str(tmp_path / "s" / "checkpoint.pth"),
         "--output", str(tmp_path / "t"), "--no-augment"]))
    from utils.checkpoint import load_checkpoint
    trained = load_checkpoint(tmp_path / "t" / "last.pth")["model"]
    searched = supernet.derived_state_dict(genotypes.get(str(tmp_path / "s" / "genotype_final.json")))
    convs = [k for k in searched if k.endswith("weight") and searched[k].ndim == 4]
    assert convs and all(torch.allclose(trained[k], searched[k], atol=1e-6) for k in convs)


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_resume_continues_an_nb201_search_exactly(data, tmp_path):
    whole = _search(data, tmp_path / "whole", "--arch-every", "1")
    _search(data, tmp_path / "cut", "--arch-every", "1", "--stop-after", "1")
    resumed = _search(data, tmp_path / "cut", "--arch-every", "1", "--resume")
    assert torch.equal(whole["alphas"], resumed["alphas"]) and whole["alphas"].abs().max() > 0


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_bf16_reinforce_with_latency_rewards_nb201(data, tmp_path):
    """AMP (bf16 autocast on the CPU), REINFORCE and the latency reward through the NB201 space."""
    from utils.latency import build_table
    build_table(NB201, {"C": 4, "N": 1}, batch_size=1, device="cpu", threads=1, warmup=0, repeats=1,
                progress=False).save(tmp_path / "lat.json")
    _search(data, tmp_path / "s", "--amp", "bf16", "--algo", "reinforce", "--reinforce-samples", "2", "--arch-every",
            "1", "--latency-table", tmp_path / "lat.json", "--target-latency", "0.1")
    last = json.loads((tmp_path / "s" / "log.jsonl").read_text().splitlines()[-1])
    assert all(math.isfinite(last[k]) for k in ("train_loss", "arch_loss", "expected_latency_ms"))


def test_cifar100_is_judged_by_its_column_and_other_image_sizes_build(tmp_path):
    from utils.synthetic import write_synthetic_cifar100
    write_synthetic_cifar100(tmp_path / "c100", n_train=96, n_test=32)
    with pytest.warns(Warning):
        _search(tmp_path / "c100", tmp_path / "s", "--dataset", "cifar100", "--nb201-table", TABLE, "--arch-every", "1")
    last = json.loads((tmp_path / "s" / "log.jsonl").read_text().splitlines()[-1])
    table = NB201Table.load(TABLE, need=("cifar100_test_200",))
    assert last["nb201_cifar100_test"] == table.lookup(last["nb201_arch"], "cifar100_test_200")
    assert "nb201_cifar10_test" not in last
    net = build_net(MIXED, num_classes=3, image_size=48, macro={"C": 4, "N": 1})  # an image folder's network
    assert net(torch.randn(2, 3, 48, 48)).shape == (2, 3)


def test_a_small_supernet_searches_for_the_latency_of_the_benchmarks_network():
    """NAS-Bench-201's decisions are the cell's 6 whatever C and N: a C=4, N=1 proxy supernet takes its
    expected latency from a table of the C=8, N=2 network, cost by cost."""
    from utils.latency import build_table
    from utils.objective import LatencyModel
    table = build_table(NB201, {"C": 8, "N": 2}, batch_size=1, device="cpu", threads=1, warmup=0, repeats=1,
                        progress=False)
    proxy = SuperNet(NB201, {"C": 4, "N": 1})
    model = LatencyModel(table, proxy)
    assert model.macro == {"C": 8, "N": 2}
    with torch.no_grad():
        proxy.alpha.fill_(-60.0)
        proxy.alpha[torch.arange(6), [PRIMITIVES.index(op) for op in MIXED.ops]] = 60.0
    from utils.latency_table import predict_genotype
    assert float(model.expected(proxy).detach()) == pytest.approx(predict_genotype(table, MIXED), rel=1e-6)
    assert model.predict(MIXED) == pytest.approx(predict_genotype(table, MIXED), rel=1e-12)


@pytest.mark.parametrize("paths", ["alpha", "uniform"])
def test_search_paths_choose_how_weight_steps_draw(data, tmp_path, monkeypatch, paths):
    """--search-paths uniform: after the warm-up the weight steps keep drawing uniformly (from the warm-up's
    ops); alpha: they draw from alpha.  Counted at the one place every stochastic forward samples."""
    import models.supernet as supernet_module
    calls = []
    real = supernet_module.sample_paths
    monkeypatch.setattr(supernet_module, "sample_paths", lambda alpha, mode, *a: calls.append(mode) or real(alpha, mode, *a))
    _search(data, tmp_path / "s", "--arch-every", "1", "--search-paths", paths)
    log = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    warm_steps = sum(r["weight_steps"] for r in log if r["phase"] == "warmup")
    all_steps = sum(r["weight_steps"] for r in log)
    assert calls.count("uniform") == (warm_steps if paths == "alpha" else all_steps)
    assert calls.count("two") == sum(r["arch_steps"] for r in log) > 0  # alpha learns either way
