"""End-to-end search on a tiny synthetic CIFAR folder: outputs, exact resume, bad input."""
import json
import subprocess
import sys

import pytest
import torch

import genotypes
from models import build_supernet
import search_cifar
from utils.architect import Reinforce
from utils.errors import USER_ERRORS
from utils.latency_table import LatencyTable, predict_genotype
from utils.objective import LatencyModel
from utils.train import make_amp
from models.tree.space import TREE



@pytest.fixture
def synthetic_data(tmp_path):
    """Smaller than the shared fixture: 80 training images (64 for weights, 16 for alpha)."""
    from utils.synthetic import write_synthetic_cifar
    write_synthetic_cifar(tmp_path / "data", per_batch=16, n_test=16, seed=0)
    return tmp_path / "data"


def run(data, out, *extra):
    argv = ["--data", str(data), "--no-download", "--arch-split", "16", "--B", "1", "--F", "64",
            "--warmup-epochs", "1", "--epochs", "2", "--batch-size", "16", "--arch-batch-size", "16",
            "--arch-every", "2", "--output", str(out), "--no-progress", "--no-tensorboard", "--seed", "3", *extra]
    return search_cifar.main(search_cifar.get_args_parser().parse_args(argv))


def test_search_end_to_end_writes_a_loadable_genotype(synthetic_data, tmp_path):
    res = run(synthetic_data, tmp_path / "run")
    g = genotypes.get(str(tmp_path / "run" / "genotype.json"))
    assert (g.B, g.F) == (1, 64)
    assert g == res["genotype"] == genotypes.get(str(tmp_path / "run" / "genotype_final.json"))
    records = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["phase"] for r in records] == ["warmup", "search", "search"]
    for key in ("train_loss", "train_acc", "valid_loss", "valid_acc", "valid_argmax_acc", "entropy"):
        assert all(key in r for r in records), key
    assert "arch_loss" in records[-1] and "arch_loss" not in records[0]
    # the warm-up leaves alpha alone; the search moves it
    assert records[0]["entropy"] == pytest.approx(torch.log(torch.tensor(7.0)).item(), abs=1e-6)
    assert records[-1]["entropy"] < records[0]["entropy"]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=False)
    assert ckpt["epoch"] == 3 and ckpt["kind"] == "search"


def test_resume_continues_exactly(synthetic_data, tmp_path):
    full = run(synthetic_data, tmp_path / "full")
    run(synthetic_data, tmp_path / "part", "--stop-after", "1")
    assert not (tmp_path / "part" / "genotype_final.json").exists()
    resumed = run(synthetic_data, tmp_path / "part", "--resume")
    assert torch.equal(full["alphas"], resumed["alphas"])
    assert full["genotype"] == resumed["genotype"]
    a = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    b = (tmp_path / "part" / "log.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(l).items() if k not in ("time", "epoch_time_s", "images_per_s")}
                           for l in lines]
    assert strip(a) == strip(b)


def test_reinforce_runs_and_moves_alpha(synthetic_data, tmp_path):
    res = run(synthetic_data, tmp_path / "r", "--algo", "reinforce", "--reinforce-samples", "2")
    assert not torch.allclose(res["alphas"], torch.zeros_like(res["alphas"]))
    ckpt = torch.load(tmp_path / "r" / "checkpoint.pth", weights_only=False)
    assert ckpt["architect"]["baseline"] is not None


def test_candidate_subset(synthetic_data, tmp_path):
    res = run(synthetic_data, tmp_path / "c", "--candidates", "sep_3x3", "identity", "--epochs", "1")
    assert res["alphas"].shape == (36, 2)
    assert set(res["genotype"].op_counts()) >= {"sep_3x3", "identity"}
    used = {op for block in res["genotype"].ops for op in block}
    assert used <= {"sep_3x3", "identity"}


def test_unknown_candidate_lists_valid_ones(synthetic_data, tmp_path):
    with pytest.raises(USER_ERRORS, match=r"unknown candidate op\(s\) conv_9x9 for the tree space; valid ops: sep_3x3, .*identity"):
        run(synthetic_data, tmp_path / "x", "--candidates", "sep_3x3", "conv_9x9")


def test_missing_data_without_download(tmp_path):
    with pytest.raises(USER_ERRORS, match=r"CIFAR-10 not found: .*nowhere.* downloading is off.*--data .*nowhere"):
        run(tmp_path / "nowhere", tmp_path / "x")


def test_resume_with_other_B_F_is_refused(synthetic_data, tmp_path):
    run(synthetic_data, tmp_path / "run", "--stop-after", "1")
    argv_f = ["--F", "72"]
    with pytest.raises(USER_ERRORS, match=r"checkpoint .* is for space=tree B=1 F=64 .*this run asks for space=tree B=1 F=72"):
        run(synthetic_data, tmp_path / "run", "--resume", *argv_f)


def test_cli_prints_one_line_error(tmp_path):
    p = subprocess.run([sys.executable, "search_cifar.py", "--candidates", "nope", "--output", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --candidates: unknown candidate op(s) nope")


def _table(tmp_path):
    from utils.latency import build_table
    table = build_table(TREE, {"B": 1, "F": 64}, batch_size=1, device="cpu", threads=1, warmup=1, repeats=3, progress=False)
    table.save(tmp_path / "lat.json")
    return LatencyModel(table, build_supernet(1, 64)), tmp_path / "lat.json"


@pytest.mark.long
def test_tight_latency_target_gives_a_faster_genotype(synthetic_data, tmp_path):
    model, path = _table(tmp_path)
    tight = model.predict(genotypes.uniform(1, 64, "identity"))  # the fastest network of the space
    plain = run(synthetic_data, tmp_path / "plain", "--arch-every", "1")
    fast = run(synthetic_data, tmp_path / "fast", "--arch-every", "1", "--latency-table", str(path),
               "--target-latency", f"{tight:.4f}", "--latency-lambda", "1.0", "--derive", "argmax")
    assert model.predict(fast["genotype"]) < model.predict(plain["genotype"])
    rec = json.loads((tmp_path / "fast" / "log.jsonl").read_text().splitlines()[-1])
    assert rec["argmax_latency_ms"] == pytest.approx(model.predict(fast["genotype"]), rel=1e-6)
    assert rec["expected_latency_ms"] > 0


def test_reinforce_with_latency_reward_runs(synthetic_data, tmp_path):
    _, path = _table(tmp_path)
    res = run(synthetic_data, tmp_path / "r", "--algo", "reinforce", "--reinforce-samples", "2",
              "--latency-table", str(path), "--target-latency", "1.0", "--epochs", "1")
    assert not torch.allclose(res["alphas"], torch.zeros_like(res["alphas"]))


def test_latency_table_of_another_network_is_refused_unless_its_decisions_agree(synthetic_data, tmp_path):
    _, path = _table(tmp_path)  # B=1 F=64
    with pytest.raises(USER_ERRORS, match=r"latency table's network \(B=1 F=64\) has 36 decisions, the supernet "
                                          r"\(B=2 F=64\) 72"):
        run(synthetic_data, tmp_path / "x", "--B", "2", "--latency-table", str(path), "--target-latency", "1")
    # a narrower or wider supernet with the same decisions is a proxy: it searches for the table's network
    run(synthetic_data, tmp_path / "y", "--F", "72", "--latency-table", str(path), "--target-latency", "1",
        "--derive", "argmax")
    table = LatencyTable.load(path)
    final = genotypes.get(str(tmp_path / "y" / "genotype_final.json"))
    last = json.loads((tmp_path / "y" / "log.jsonl").read_text().splitlines()[-1])
    as_f64 = genotypes.Genotype(1, 64, final.ops)
    assert last["argmax_latency_ms"] == pytest.approx(predict_genotype(table, as_f64), rel=1e-9)


def test_reinforce_moves_probability_to_the_clearly_better_op():
    """Toy problem: the reward is the fraction of edges running sep_3x3; REINFORCE must learn it."""
    torch.manual_seed(0)
    net = build_supernet(1, 64, ["sep_3x3", "max_pool_3x3", "identity"])
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.1, betas=(0.0, 0.999))
    algo = Reinforce(samples=4, decay=0.9)
    good = net.candidates.index("sep_3x3")
    reward = lambda logits, y, sn: float((sn.active_indices() == good).float().mean())
    x, y = torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    start = net.probs()[:, good].mean().item()
    net.train()
    for _ in range(60):
        algo.step(net, x, y, torch.nn.CrossEntropyLoss(), opt, make_amp(torch.device("cpu"), "off"), reward)
    end = net.probs()[:, good]
    assert start == pytest.approx(1 / 3)
    assert end.mean() > 0.6 and (end > 1 / 3).float().mean() > 0.8


def test_a_second_run_into_the_same_folder_is_refused(synthetic_data, tmp_path):
    run(synthetic_data, tmp_path / "run", "--stop-after", "1")
    with pytest.raises(USER_ERRORS, match=r"already holds a search .*--resume"):
        run(synthetic_data, tmp_path / "run")


def test_tensorboard_gets_scalars_and_alpha_histograms(synthetic_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    search_cifar.main(search_cifar.get_args_parser().parse_args([
        "--data", str(synthetic_data), "--no-download", "--arch-split", "16", "--B", "1", "--F", "64",
        "--warmup-epochs", "0", "--batch-size", "16", "--arch-batch-size", "16", "--arch-every", "2",
        "--epochs", "1", "--output", str(tmp_path / "run"), "--no-progress"]))
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train_loss", "valid_acc", "valid_argmax_acc", "entropy", "arch_loss", "alpha_mean_prob/identity"):
        assert tag in tags["scalars"], tag
    assert {"alpha/probs", "alpha/logits"} <= set(tags["histograms"])
    assert [e.step for e in acc.Scalars("entropy")] == [1]
