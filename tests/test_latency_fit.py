"""Latency tables fit from networks timed on another device (utils/latency_fit.py; python -m utils.latency sample
/ fit), the search's margin under a fitted table, and searches started from another run's warm-up."""
import csv
import itertools
import json

import numpy as np
import pytest
import torch

import genotypes
import search_cifar
from models.nb201.arch import PRIMITIVES, CellGenotype
from models.nb201.space import NB201
from utils import latency as cli
from utils import latency_fit as LF
from utils.errors import USER_ERRORS
from utils.latency_table import LatencyTable, group_costs, predict_genotype

COST = {"none": 0.0, "skip_connect": 0.1, "nor_conv_1x1": 1.0, "nor_conv_3x3": 3.0, "avg_pool_3x3": 0.5}


def op_type_ms(ops) -> float:
    """A device whose latency is one cost per op type: what 10 rows can pin down."""
    return 2.0 + sum(COST[o] for o in ops)


def group_ms(ops) -> float:
    """A device whose latency is a sum over NAS-Bench-201's input groups ((0,1,3), (2,4), (5)) with ops that
    interact inside a group: per-edge costs, two convolutions of one tensor 0.4 ms under their sum, and one
    triple."""
    edge = [1.0, 1.2, 0.8, 1.1, 0.9, 1.3]
    total = 2.0 + sum(COST[o] * w for o, w in zip(ops, edge))
    for g in ((0, 1, 3), (2, 4)):
        convs = [e for e in g if ops[e].startswith("nor_conv")]
        total -= 0.4 * len(list(itertools.combinations(convs, 2)))
        if len(g) == 3 and all(ops[e] == "avg_pool_3x3" for e in g):
            total -= 0.3
    return total


def all_cells():
    return [CellGenotype(ops) for ops in itertools.product(PRIMITIVES, repeat=6)]


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def measurements(cells, fn):
    return LF.Measurements(cells, np.array([fn(c.ops) for c in cells]), list(range(2, len(cells) + 2)), "test", "ms")


def predict_every_cell(table):
    idx = torch.tensor(list(itertools.product(range(5), repeat=6)))
    return group_costs(table, NB201, table.macro, PRIMITIVES).predict(idx).numpy()


def test_a_group_latency_is_recovered_and_its_prediction_is_the_fit():
    cells = all_cells()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(cells), 400, replace=False)
    table = LF.fit_table(measurements([cells[i] for i in pick], group_ms), NB201, {"C": 16, "N": 5})
    truth = np.array([group_ms(c.ops) for c in cells])
    pred = predict_every_cell(table)
    err = np.abs(pred / truth - 1)  # every cell, 400 of them seen
    assert err.mean() < 0.005 and np.quantile(err, 0.99) < 0.01  # (the all-pool triple is in ~3 of the rows)
    fit = table.meta["fit"]
    assert fit["level"] >= 2 and fit["cv"]["mape"] < 1.0 and fit["cv"]["spearman"] > 0.999
    # the table is the project's format: predict and the search's GroupCosts read the same sums
    assert predict_genotype(table, cells[123]) == pytest.approx(pred[123], rel=1e-9)
    assert LatencyTable.from_dict(json.loads(json.dumps(table.to_dict()))).entries == table.entries


def test_ten_rows_fit_one_cost_per_op_type():
    cells = all_cells()
    pick = np.random.default_rng(1).choice(len(cells), 10, replace=False)
    table = LF.fit_table(measurements([cells[i] for i in pick], op_type_ms), NB201, {"C": 16, "N": 5})
    truth = np.array([op_type_ms(c.ops) for c in cells])
    assert np.max(np.abs(predict_every_cell(table) / truth - 1)) < 0.02
    assert table.meta["fit"]["cv"]["mape"] < 1.0


def test_a_forced_coarse_model_misses_the_interactions():
    cells = all_cells()
    pick = np.random.default_rng(2).choice(len(cells), 300, replace=False)
    m = measurements([cells[i] for i in pick], group_ms)
    coarse = LF.fit_table(m, NB201, {"C": 16, "N": 5}, model="edge")
    fine = LF.fit_table(m, NB201, {"C": 16, "N": 5})
    assert coarse.meta["fit"]["level"] == 1
    assert coarse.meta["fit"]["cv"]["mape"] > 5 * fine.meta["fit"]["cv"]["mape"]


@pytest.mark.parametrize("header,rows,match", [
    (["arch", "ms"], [["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "1"]], "has no column 'latency_ms'"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), "1"], ["|bogus~0|", "1"]],
     r"line 3: arch '\|bogus~0\|' is not an architecture"),
    (["arch", "latency_ms"], [["proxyless_cifar", "1"]], "line 2: 'proxyless_cifar' is an architecture of the tree space"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), "fast"]], "line 2: latency_ms 'fast' is not a number"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), "0"]], "line 2: latency_ms must be a positive"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), "-3"]], "line 2: latency_ms must be a positive"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), "nan"]], "line 2: latency_ms must be a positive"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), ""]], "line 2: latency_ms is empty"),
    (["arch", "latency_ms"], [[CellGenotype(("none",) * 6).to_string(), "2"], [CellGenotype(("skip_connect",) * 6).to_string(), "3"],
                              [CellGenotype(("none",) * 6).to_string(), "2.5"]], "line 4: .* measured at 2 ms on line 2"),
    (["arch", "latency_ms"], [[c.to_string(), str(i + 1)] for i, c in enumerate(all_cells()[:6])], "6 rows, the fit needs at least 7"),
    (["arch", "latency_ms"], [], "has no rows"),
])
def test_bad_measurements_are_one_error_naming_the_line_or_column(tmp_path, header, rows, match):
    path = write(tmp_path / "m.csv", header, rows)
    args = cli.get_args_parser().parse_args(["fit", "--space", "nb201", "--measurements", str(path),
                                             "--out", str(tmp_path / "t.json")])
    with pytest.raises(USER_ERRORS, match=match) as e:
        cli.main(args)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "t.json").exists()


def test_identical_repeats_are_kept_once(tmp_path):
    cells = all_cells()[::1000][:12]
    rows = [[c.to_string(), str(op_type_ms(c.ops))] for c in cells] + [[cells[0].to_string(), str(op_type_ms(cells[0].ops))]]
    m = LF.read_measurements(write(tmp_path / "m.csv", ["arch", "latency_ms"], rows), NB201, "latency_ms", genotypes.get)
    assert len(m.archs) == 12 and m.rows == list(range(2, 14))


def test_sample_fill_fit_predict_nb201(tmp_path, capsys):
    out = tmp_path / "s"
    archs = cli.main(cli.get_args_parser().parse_args(
        ["sample", "--space", "nb201", "--C", "4", "--N", "1", "--samples", "9", "--seed", "3", "--out", str(out),
         "--no-progress"]))
    lines = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["arch"] for r in lines] == [g.to_string() for g in archs] and len(set(r["arch"] for r in lines)) == 9
    assert all(r["latency_ms"] == "" for r in lines)
    for d in range(6):  # every op on every edge in the first five (then random)
        assert {archs[i].ops[d] for i in range(5)} == set(PRIMITIVES)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out / lines[0]["file"]), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 32, 32]  # the deployed batch, every shape static
    assert sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)
    for r in lines:  # "time them on the device"
        r["latency_ms"] = f"{op_type_ms(CellGenotype.from_string(r['arch']).ops):.6f}"
    write(out / "manifest.csv", ["arch", "file", "latency_ms"], [[r["arch"], r["file"], r["latency_ms"]] for r in lines])
    table = cli.main(cli.get_args_parser().parse_args(
        ["fit", "--space", "nb201", "--C", "4", "--N", "1", "--measurements", str(out / "manifest.csv"),
         "--out", str(tmp_path / "t.json")]))
    printed = capsys.readouterr().out
    assert "cross-validated (leave-one-out): MAPE" in printed and "Spearman" in printed and "Kendall" in printed
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    ms = cli.main(cli.get_args_parser().parse_args(["predict", "--table", str(tmp_path / "t.json"), "--genotype", cell]))
    assert ms == pytest.approx(op_type_ms(CellGenotype.from_string(cell).ops), rel=0.02)
    assert table.meta["fit"]["rows"] == 9 and table.meta["backend"] == "measured"


def test_sample_and_fit_the_tree_space(tmp_path):
    """Any space where the fit is well posed: the tree space's genotypes go to JSON files beside the manifest."""
    from models.tree.space import TREE
    out = tmp_path / "s"
    archs = cli.main(cli.get_args_parser().parse_args(
        ["sample", "--space", "tree", "--B", "1", "--F", "64", "--samples", "40", "--no-onnx", "--out", str(out)]))
    cost = {op: i * 0.3 for i, op in enumerate(TREE.primitives)}
    lines = list(csv.DictReader(open(out / "manifest.csv")))
    write(out / "manifest.csv", ["arch", "file", "latency_ms"],
          [[r["arch"], r["file"], 1 + sum(cost[o] for o in TREE.ops_of(g))] for r, g in zip(lines, archs)])
    table = cli.main(cli.get_args_parser().parse_args(
        ["fit", "--space", "tree", "--B", "1", "--F", "64", "--measurements", str(out / "manifest.csv"),
         "--out", str(tmp_path / "t.json")]))
    g = TREE.genotype_from_ops(TREE.ops_of(archs[7])[::-1], {"B": 1, "F": 64})
    assert predict_genotype(table, g) == pytest.approx(1 + sum(cost[o] for o in TREE.ops_of(g)), rel=0.02)


def test_the_margin_comes_from_the_rows_near_the_target():
    cells = all_cells()[:40]
    table = LF.fit_table(measurements(cells, op_type_ms), NB201, {"C": 16, "N": 5})
    table.meta["fit"]["loo"] = [[10.0, 11.0], [12.0, 12.0], [30.0, 45.0], [9.0, 8.0]] + [[10.0, 10.5]] * 8
    assert LF.margin(table, 10.0) == pytest.approx(0.1)  # 30 ms (50 % under) is more than a factor 2 away
    assert LF.margin(table, 40.0) == pytest.approx(0.5)  # too few rows near 40: the 10 nearest, 30 among them
    table.meta.pop("fit")
    assert LF.margin(table, 10.0) == 0.0  # a table timed here


@pytest.fixture
def fitted_table(tmp_path):
    cells = all_cells()
    pick = np.random.default_rng(0).choice(len(cells), 60, replace=False)
    rng = np.random.default_rng(1)
    m = LF.Measurements([cells[i] for i in pick],
                        np.array([op_type_ms(cells[i].ops) * rng.uniform(0.85, 1.15) for i in pick]),
                        list(range(2, 62)), "noisy", "ms")
    LF.fit_table(m, NB201, {"C": 16, "N": 5}).save(tmp_path / "fitted.json")
    return tmp_path / "fitted.json"


def nb201_argv(data, out, *flags):
    return ["--space", "nb201", "--C", "2", "--N", "1", "--data", str(data), "--no-download", "--arch-split", "40",
            "--train-subset", "120", "--warmup-epochs", "1", "--epochs", "1", "--batch-size", "40",
            "--arch-batch-size", "40", "--arch-every", "1", "--arch-lr", "0.3", "--output", str(out), "--no-progress", "--no-tensorboard",
            "--seed", "2", *map(str, flags)]


def run(argv):
    return search_cifar.main(search_cifar.get_args_parser().parse_args(argv))


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_the_search_derives_below_the_target_by_the_margin(synthetic_data, tmp_path, fitted_table, capsys):
    table = LatencyTable.load(fitted_table)
    target = 12.0
    m = LF.margin(table, target)
    assert 0.02 < m < 0.5
    got = run(nb201_argv(synthetic_data, tmp_path / "a", "--latency-table", fitted_table, "--target-latency", target))
    assert f"less a {m:.1%} margin" in capsys.readouterr().out
    assert predict_genotype(table, got["genotype"]) <= target / (1 + m) + 1e-9
    got = run(nb201_argv(synthetic_data, tmp_path / "b", "--latency-table", fitted_table, "--target-latency", target,
                         "--latency-margin", "0.4"))
    assert predict_genotype(table, got["genotype"]) <= target / 1.4 + 1e-9
    with pytest.raises(SystemExit):
        search_cifar.get_args_parser().parse_args(["--latency-margin", "-0.1"])


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_a_search_from_a_warmup_continues_as_the_whole_run_would(synthetic_data, tmp_path, fitted_table):
    target = ["--latency-table", fitted_table, "--target-latency", "11", "--latency-loss", "hinge"]
    whole = run(nb201_argv(synthetic_data, tmp_path / "whole", *target))
    run(nb201_argv(synthetic_data, tmp_path / "warm", "--stop-after", "1"))  # the warm-up alone, no target
    warm = tmp_path / "warm" / "checkpoint.pth"
    started = run(nb201_argv(synthetic_data, tmp_path / "from", *target, "--from-warmup", warm))
    assert torch.equal(started["alphas"], whole["alphas"]) and started["genotype"] == whole["genotype"]
    assert not torch.equal(whole["alphas"], torch.zeros_like(whole["alphas"]))  # alpha did move after the warm-up
    with pytest.raises(USER_ERRORS, match=r"warmed up with other settings: --train-subset 120 \(now 100\)"):
        run(nb201_argv(synthetic_data, tmp_path / "x", "--from-warmup", warm, "--train-subset", "100"))
    with pytest.raises(USER_ERRORS, match="holds epoch 2 of a run with --warmup-epochs 1"):
        run(nb201_argv(synthetic_data, tmp_path / "y", "--from-warmup", tmp_path / "whole" / "checkpoint.pth"))
    with pytest.raises(USER_ERRORS, match="is for space=nb201 C=2 N=1"):
        run(nb201_argv(synthetic_data, tmp_path / "z", "--from-warmup", warm, "--C", "4"))

