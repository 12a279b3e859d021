"""bench/nb201_devices.py on a small file of made-up device columns: the predictor's figures, constrained and
specialized searches from one shared warm-up, their bookkeeping against the file and the accuracy table."""
import csv
import itertools
import json

import numpy as np
import pytest

from bench import nb201_devices as bench
from models.nb201.arch import CellGenotype
from utils.errors import USER_ERRORS

CANDS = ["none", "skip_connect", "nor_conv_3x3"]  # 3^6 = 729 cells: every cell a search can return is in the file
COST = {"none": 0.0, "skip_connect": 0.2, "nor_conv_3x3": 2.0}


@pytest.fixture
def setup(tmp_path):
    from utils.synthetic import write_synthetic_cifar
    write_synthetic_cifar(tmp_path / "data", per_batch=16, n_test=16, seed=0)
    rng = np.random.default_rng(0)
    cells = [CellGenotype(ops) for ops in itertools.product(CANDS, repeat=6)]
    with open(tmp_path / "dev.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "phone", "gpu"])
        for i, c in enumerate(cells):
            additive = 3 + sum(COST[o] * (1 + 0.1 * e) for e, o in enumerate(c.ops))
            w.writerow([i, c.to_string(), f"{additive:.5f}", f"{additive * rng.uniform(0.9, 1.1) + 1:.5f}"])
    return tmp_path


def args_for(tmp_path, *flags):
    return bench.get_args_parser().parse_args(
        ["--data", str(tmp_path / "data"), "--measurements", str(tmp_path / "dev.csv"), "--output", str(tmp_path / "b"),
         "--C", "2", "--N", "1", "--train-subset", "48", "--arch-split", "16", "--warmup-epochs", "1", "--epochs", "1",
         "--batch-size", "16", "--arch-batch-size", "16", *flags,
         "--search-flags", "--candidates", *CANDS, "--arch-lr", "0.5"])


def test_predictor_figures(setup):
    figures = bench.main(args_for(setup, "--part", "predictor", "--samples", "10", "30", "--draws", "2",
                                  "--all-cells", "phone"))
    assert figures["spearman_all_phone"] == pytest.approx(1.0, abs=1e-4)  # an additive device, every cell as data
    assert figures["spearman_k30_phone"] > 0.99 and figures["mape_k30_phone"] < 1.0
    for d in ("phone", "gpu"):
        for k in (10, 30):
            assert -1 <= figures[f"spearman_k{k}_{d}"] <= 1 and figures[f"mape_k{k}_{d}"] >= 0
        assert -1 <= figures[f"spearman_flops_{d}"] <= 1
    assert "spearman_k10_mean" not in figures  # HELP's six devices are not in this file
    md = (setup / "b" / "results.md").read_text()
    assert "| phone |" in md and f"spearman_k30_phone={figures['spearman_k30_phone']:.4f}" in md


@pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
def test_searches_hold_their_constraints_and_share_one_warmup(setup, monkeypatch):
    import search_cifar
    calls = []
    real = search_cifar.main

    def counting(args):
        calls.append(args)
        return real(args)

    monkeypatch.setattr(search_cifar, "main", counting)
    figures = bench.main(args_for(setup, "--part", "search", "specialize", "--constraints", "phone:p40", "gpu:9.5",
                                  "--fit-samples", "40", "--specialize", "phone", "gpu", "--specialize-pct", "50"))
    warmups = [a for a in calls if a.stop_after is not None]
    assert len(warmups) == 1 and len(calls) == 5  # one warm-up, then 2 + 2 searches from it
    assert all(a.from_warmup for a in calls if a.stop_after is None)
    report = json.loads((setup / "b" / "results.json").read_text())
    rows = {r["device"]: r for r in report["searches"]}
    lat = {d: {} for d in ("phone", "gpu")}
    with open(setup / "dev.csv") as f:
        for r in csv.DictReader(f):
            lat["phone"][r["arch"]], lat["gpu"][r["arch"]] = float(r["phone"]), float(r["gpu"])
    for d, r in rows.items():
        assert r["measured_ms"] == lat[d][r["arch"]] and r["within"] == (r["measured_ms"] <= r["constraint_ms"])
        assert r["regret"] == pytest.approx(r["oracle_cifar10"] - r["cifar10"]) and r["regret"] >= 0 or not r["within"]
        found = CellGenotype.from_dict(json.loads((setup / "b" / f"search_{d}_{r['constraint']}_s0" /
                                                   "genotype_final.json").read_text()))
        assert found.to_string() == r["arch"]
    assert rows["gpu"]["constraint_ms"] == 9.5
    assert rows["phone"]["constraint_ms"] == pytest.approx(np.percentile(list(lat["phone"].values()), 40))
    assert figures["violations"] == sum(not r["within"] for r in rows.values())
    assert len(report["specialization"]) == 2 and 0 <= figures["specialized_best"] <= 2
    assert (setup / "b" / "nb201_devices.png").read_bytes()[:4] == b"\x89PNG"
    # a finished bench only reads its stages again
    monkeypatch.setattr(search_cifar, "main", lambda args: pytest.fail("a finished stage ran again"))
    assert bench.main(args_for(setup, "--part", "search", "--constraints", "phone:p40", "gpu:9.5",
                               "--fit-samples", "40"))["violations"] == figures["violations"]


def test_bad_flags_are_one_error(setup):
    with pytest.raises(USER_ERRORS, match="no column 'watch'"):
        bench.main(args_for(setup, "--part", "predictor", "--devices", "watch"))
    with pytest.raises(USER_ERRORS, match="expected DEVICE:MS"):
        bench.main(args_for(setup, "--part", "search", "--constraints", "watch:3"))
    with pytest.raises(USER_ERRORS, match="positive number of ms or p1..p99"):
        bench.main(args_for(setup, "--part", "search", "--constraints", "phone:p200"))
    (setup / "bad.csv").write_text("arch,phone\n|bogus~0|,3\n")
    with pytest.raises(USER_ERRORS, match="line 2"):
        bench.main(bench.get_args_parser().parse_args(["--measurements", str(setup / "bad.csv")]))


def test_the_shipped_device_file_is_the_published_one():
    """nb201_table/device_latency.csv.gz: every cell once, joined to the accuracy table by index and arch, and
    HW-NAS-Bench's own example figures for cell 0 (nb201_table/NOTICE.md)."""
    import gzip
    rows = list(csv.DictReader(gzip.open(bench.MEASUREMENTS, "rt")))
    acc = list(csv.DictReader(gzip.open(bench.ROOT / "nb201_table" / "accuracy.csv.gz", "rt")))
    assert len(rows) == 15625 and [r["arch"] for r in rows] == [r["arch"] for r in acc]
    assert [int(r["index"]) for r in rows] == [int(r["index"]) for r in acc]
    assert [float(rows[0][d]) for d in ("pixel3", "raspi4", "fpga", "eyeriss")] == [3.60585, 10.482, 2.57296, 3.64562]
    assert len(rows[0]) == 2 + 18
