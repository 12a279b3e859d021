"""bench/nb201_search.py's bookkeeping on synthetic data and a small table: every seed's final cell and
per-epoch curve read back from the table, the summary figures, the report, and resumable stages."""
import csv
import itertools
import json
import random
import statistics

import pytest

from bench import nb201_search as bench
from models.nb201.arch import CellGenotype
from utils.errors import USER_ERRORS

CANDS = ["none", "skip_connect"]  # 2^6 = 64 cells: a small table covers every cell the search can find


@pytest.fixture
def setup(tmp_path):
    from utils.synthetic import write_synthetic_cifar
    write_synthetic_cifar(tmp_path / "data", per_batch=16, n_test=16, seed=0)
    rng = random.Random(0)
    rows = [(CellGenotype(ops).to_string(), round(rng.uniform(50, 95), 4), round(rng.uniform(20, 70), 4))
            for ops in itertools.product(CANDS, repeat=6)]
    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "cifar10_test_200", "cifar100_test_200"])
        w.writerows(rows)
    return tmp_path, {a: (c10, c100) for a, c10, c100 in rows}


def _args(tmp_path, seeds=("0", "1"), *search_flags):
    return bench.get_args_parser().parse_args(
        ["--data", str(tmp_path / "data"), "--table", str(tmp_path / "t.csv"), "--output", str(tmp_path / "b"),
         "--seeds", *seeds, "--C", "2", "--N", "1", "--train-subset", "48", "--arch-split", "16",
         "--warmup-epochs", "1", "--epochs", "1", "--batch-size", "16", "--arch-batch-size", "16",
         "--search-flags", "--candidates", *CANDS, "--arch-lr", "0.5", *search_flags])


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_report_reads_every_seed_from_the_table_and_stages_resume(setup, monkeypatch):
    tmp_path, table = setup
    with pytest.raises(USER_ERRORS, match="stopped before its last epoch"):  # a stage cut short ...
        bench.main(_args(tmp_path, ("0",), "--stop-after", "1"))
    first = json.loads((tmp_path / "b" / "search_s0" / "bench_time.json").read_text())["seconds"]
    figures = bench.main(_args(tmp_path))  # ... is resumed, seed 1 runs from scratch
    report = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["seed"] for r in report["seeds"]] == [0, 1]
    for r in report["seeds"]:
        c10, c100 = table[r["arch"]]
        assert (r["cifar10"], r["cifar100"]) == (c10, c100) and "imagenet16" not in r
        assert len(r["per_epoch"]) == 2  # warm-up + search epoch, one record each (resume kept the log)
        final = CellGenotype.from_dict(json.loads((tmp_path / "b" / f"search_s{r['seed']}" / "genotype_final.json")
                                                  .read_text()))
        assert r["arch"] == final.to_string() and r["per_epoch"][-1] == c10
        assert r["cifar10_percentile"] == pytest.approx(100 * sum(v[0] < c10 for v in table.values()) / 64)
    accs = [r["cifar10"] for r in report["seeds"]]
    assert figures["nb201_mean"] == pytest.approx(statistics.mean(accs))
    assert figures["nb201_min"] == min(accs) and figures["nb201_std"] == pytest.approx(statistics.stdev(accs))
    assert figures["random_mean"] == pytest.approx(statistics.mean(v[0] for v in table.values()))
    assert figures["optimum"] == max(v[0] for v in table.values())
    assert report["seeds"][0]["search_minutes"] > first / 60  # both invocations counted
    md = (tmp_path / "b" / "results.md").read_text()
    assert f"nb201_mean={figures['nb201_mean']:.4f}" in md and md.count("| 0 |") + md.count("| 1 |") == 2
    assert (tmp_path / "b" / "nb201_search.png").read_bytes()[:4] == b"\x89PNG"
    # a finished bench is only read again: no search runs
    monkeypatch.setattr(bench.search_cifar, "main", lambda args: pytest.fail("a finished stage ran again"))
    assert bench.main(_args(tmp_path)) == figures


def test_bad_flags_are_one_error(setup):
    tmp_path, _ = setup
    with pytest.raises(USER_ERRORS, match="repeats"):
        bench.main(bench.get_args_parser().parse_args(["--seeds", "1", "1"]))
    (tmp_path / "bad.csv").write_text("arch,acc\n")
    with pytest.raises(USER_ERRORS, match="lacks the column"):
        bench.main(bench.get_args_parser().parse_args(["--table", str(tmp_path / "bad.csv")]))


def test_kendall_tau():
    from bench.nb201_ranking import kendall_tau
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    # tau-b with a tie: (C - D) / sqrt((C + D + T_a) (C + D + T_b)), C=5 D=0 T_a=1 T_b=0
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / (6 * 5) ** 0.5)


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_ranking_keeps_the_warmup_checkpoint_and_ranks_both(setup):
    tmp_path, table = setup
    args = _args(tmp_path, ("0",))
    args.ranking_cells, args.warmup_epochs = 8, 1
    figures = bench.main(args)
    stage = tmp_path / "b" / "search_s0"
    assert (stage / "warmup.pth").is_file()
    from utils.checkpoint import load_checkpoint
    assert load_checkpoint(stage / "warmup.pth")["epoch"] == 1 and load_checkpoint(stage)["epoch"] == 2
    row = json.loads((tmp_path / "b" / "results.json").read_text())["seeds"][0]
    for name in ("warmup", "final"):
        assert -1 <= row[f"kendall_tau_{name}"] <= 1 and row[f"top_cell_{name}"] in [v[0] for v in table.values()]
    assert figures["kendall_tau_final_mean"] == row["kendall_tau_final"]


def test_latency_targets_bookkeeping(tmp_path):
    """bench/nb201_latency_targets.py: every cell's latency is the table's prediction, and a target row's
    ratio, regret (best within the target - the searched cell) and equal-latency mean are what they say."""
    import numpy as np
    from bench import nb201_latency_targets as lt
    from models.nb201.arch import PRIMITIVES
    from models.nb201.space import NB201
    from utils import latency_table as T
    macro = {"C": 16, "N": 5}
    rng = random.Random(1)
    entries = {k: {"median_ms": rng.uniform(0.1, 1.0), "cpu_median_ms": rng.uniform(0.1, 1.0), "runs": 1}
               for k in T.required_keys(NB201, macro)}
    table = T.LatencyTable(entries, {"space": "nb201", "macro": macro, "candidates": list(PRIMITIVES)})
    cells, lat = lt.cell_latencies(table)
    assert len(cells) == 5 ** 6 == len(set(c.to_string() for c in cells))
    for i in (0, 77, 15624):
        assert lat[i] == pytest.approx(T.predict_genotype(table, cells[i], stat=lt.STAT))
    accs = np.array([rng.uniform(10, 95) for _ in cells])
    index = {c.to_string(): i for i, c in enumerate(cells)}
    target = float(np.percentile(lat, 25))
    pick = int(np.argmin(np.abs(lat - 0.9 * target)))
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "genotype_final.json").write_text(json.dumps(cells[pick].to_dict()))
    row = lt.target_row(accs, index, lat, 25.0, target, tmp_path / "stage", 0)
    within = lat <= target
    assert row["arch"] == cells[pick].to_string() and row["latency_ratio"] == pytest.approx(lat[pick] / target)
    assert row["best_within"] == accs[within].max() and row["regret"] == pytest.approx(accs[within].max() - accs[pick])
    assert row["cells_within"] == int(within.sum()) and 0.2 * len(cells) < row["cells_within"] < 0.3 * len(cells)
    near = np.abs(lat / lat[pick] - 1) <= 0.05
    assert row["random_equal_latency"] == pytest.approx(accs[near].mean())


def test_edge_bias_variants_and_figures():
    """bench/nb201_edge_bias.py: each context's cells differ on the chosen edge only, every candidate once;
    the figures count first places (ties shared) and the agreement of supernet and table."""
    from bench import nb201_edge_bias as eb
    cands = ("none", "skip_connect", "nor_conv_3x3")
    groups = eb.variants(cands, 3, 7, seed=1, context_ops=("nor_conv_3x3",))
    assert len(groups) == 7
    for g in groups:
        assert [c.ops[3] for c in g] == list(cands)
        assert all(c.ops[:3] + c.ops[4:] == ("nor_conv_3x3",) * 5 for c in g)
    free = eb.variants(cands, 0, 50, seed=1)
    assert {c.ops[5] for g in free for c in g} == set(cands)  # the other edges draw from every candidate
    assert eb.variants(cands, 0, 5, seed=2) == eb.variants(cands, 0, 5, seed=2) != eb.variants(cands, 0, 5, seed=3)
    sup = [[1.0, 3.0, 2.0], [5.0, 5.0, 0.0]]
    tab = [[1.0, 2.0, 3.0], [9.0, 0.0, 0.0]]
    r = eb.edge_bias(sup, tab, cands)
    assert r["first_supernet"] == {"none": 0.25, "skip_connect": 0.75, "nor_conv_3x3": 0.0}
    assert r["first_table"] == {"none": 0.5, "skip_connect": 0.0, "nor_conv_3x3": 0.5}
    assert r["first_agree"] == 0.5  # context 0: skip vs 3x3 (no); context 1: the tie's first, none (yes)
    assert r["mean_supernet"]["none"] == 3.0 and r["mean_table"]["nor_conv_3x3"] == 1.5


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_edge_bias_reads_a_search_checkpoint(setup, capsys):
    tmp_path, table = setup
    bench.main(_args(tmp_path, ("0",)))
    from bench import nb201_edge_bias as eb
    stage = tmp_path / "b" / "search_s0"
    args = eb.get_args_parser().parse_args([str(stage), "--data", str(tmp_path / "data"), "--table",
                                            str(tmp_path / "t.csv"), "--contexts", "3", "--eval-images", "16",
                                            "--calib-batches", "1", "--threads", "1", "--edge", "1->2"])
    (r,) = eb.main(args)
    groups = eb.variants(tuple(CANDS), 2, 3, 0)
    expect = eb.edge_bias([[0.0] * 2] * 3, [[table[c.to_string()][0] for c in g] for g in groups], tuple(CANDS))
    assert r["first_table"] == expect["first_table"] and r["mean_table"] == expect["mean_table"]
    assert 0 <= r["first_agree"] <= 1 and sum(r["first_supernet"].values()) == pytest.approx(1)
    assert "first_agree=" in capsys.readouterr().out
    args.context_ops = ["nor_conv_3x3"]
    with pytest.raises(USER_ERRORS, match="not a candidate"):
        eb.main(args)
