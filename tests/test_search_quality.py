"""bench/search_quality.py's bookkeeping: random genotypes (valid, seeded, at equal latency), the report,
and resumability (a finished stage is not redone)."""
import argparse
import json

import pytest

from bench import search_quality as sq
from models import PRIMITIVES, Genotype
from models.tree.space import TREE


def args_for(tmp_path, data, **over):
    a = sq.get_args_parser().parse_args([
        "--data", str(data), "--output", str(tmp_path / "bench"), "--seeds", "0", "--random", "2",
        "--train-subset", "80", "--arch-split", "16", "--warmup-epochs", "1", "--search-epochs", "1",
        "--train-epochs", "1", "--search-flags", "--batch-size", "16", "--arch-batch-size", "16"])
    return argparse.Namespace(**{**vars(a), **over})


def test_random_genotypes_are_valid_seeded_and_uniform():
    a = argparse.Namespace(random=50, random_seed=3, B=1, F=64, latency_table=None)
    first, again = sq.random_genotypes(a, None), sq.random_genotypes(a, None)
    assert first == again and all(isinstance(g, Genotype) for g in first)
    other = sq.random_genotypes(argparse.Namespace(**{**vars(a), "random_seed": 4}), None)
    assert other != first
    ops = [op for g in first for block in g.ops for op in block]
    share = {op: ops.count(op) / len(ops) for op in PRIMITIVES}
    assert all(abs(v - 1 / 7) < 0.03 for v in share.values()), share  # 1800 draws: uniform within 3 points


def test_equal_latency_draws_are_within_five_percent(tmp_path):
    from utils.latency import build_table
    from utils.latency_table import predict_genotype
    table = build_table(TREE, {"B": 1, "F": 64}, batch_size=1, device="cpu", threads=1, warmup=1, repeats=3, progress=False)
    table.save(tmp_path / "lat.json")
    reference = sq.uniform_genotype(1, 64, PRIMITIVES, __import__("random").Random(0))
    a = argparse.Namespace(random=4, random_seed=3, B=1, F=64, latency_table=str(tmp_path / "lat.json"))
    target = predict_genotype(table, reference)
    for g in sq.random_genotypes(a, reference):
        assert abs(predict_genotype(table, g) / target - 1) <= 0.05


def test_bench_writes_its_report_and_resumes_without_redoing_stages(synthetic_data, tmp_path, monkeypatch):
    a = args_for(tmp_path, synthetic_data)
    figures = sq.main(a)
    out = tmp_path / "bench"
    saved = json.loads((out / "results.json").read_text())
    assert [r["kind"] for r in saved["rows"]] == ["searched", "random", "random"]
    assert (out / "results.md").read_text().splitlines()[1] == "|" + "---|" * 7  # a valid markdown table
    assert (out / "results.md").read_text().count("| random |") == 2 and (out / "accuracy_vs_params.png").is_file()
    assert set(figures) == {"searched_mean", "random_mean", "random_std", "gap_in_std"}
    assert figures["random_mean"] == pytest.approx(sum(r["test_acc"] for r in saved["rows"][1:]) / 2)

    def fail(args):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(sq.search_cifar, "main", fail)
    monkeypatch.setattr(sq.train_cifar, "main", fail)
    assert sq.main(a) == figures  # everything read back, nothing recomputed


def test_more_retraining_seeds_reuse_the_first_and_average(synthetic_data, tmp_path, monkeypatch):
    """--train-seeds 0 1 after a one-seed bench: only the seed-1 retrainings run; accuracy is the mean."""
    single = sq.main(args_for(tmp_path, synthetic_data))
    calls = []
    real = sq.train_cifar.main
    monkeypatch.setattr(sq.search_cifar, "main", lambda args: (_ for _ in ()).throw(AssertionError("search ran")))
    monkeypatch.setattr(sq.train_cifar, "main", lambda args: calls.append(args.seed) or real(args))
    two = sq.main(args_for(tmp_path, synthetic_data, train_seeds=[0, 1]))
    assert calls == [1, 1, 1]  # one new retraining per genotype, with seed 1
    out = tmp_path / "bench"
    rows = json.loads((out / "results.json").read_text())["rows"]
    for r in rows:
        seed0 = json.loads((out / f"train_{r['name']}" / "results.json").read_text())["final_test_acc"]
        seed1 = json.loads((out / f"train_{r['name']}_seed1" / "results.json").read_text())["final_test_acc"]
        assert r["test_accs"] == [seed0, seed1] and r["test_acc"] == pytest.approx((seed0 + seed1) / 2)
    assert two["random_mean"] == pytest.approx(sum(r["test_acc"] for r in rows[1:]) / 2)
    pooled = (sum((r["test_accs"][0] - r["test_accs"][1]) ** 2 / 2 for r in rows) / len(rows)) ** 0.5
    assert "seed_std" not in single and two["seed_std"] == pytest.approx(pooled)
    assert single["searched_mean"] == rows[0]["test_accs"][0]
    with pytest.raises(sq.UserError, match="repeated seed"):
        sq.main(args_for(tmp_path, synthetic_data, train_seeds=[0, 0]))
