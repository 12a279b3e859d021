"""Data-parallel search under torchrun (2 CPU processes, gloo) against one process with the same global
batches and seed, and the GPU features that torch can run on the CPU (bf16 autocast, inductor compile).

Why float64 (``--float64``) for the equivalence tests: the two runs are equal in exact arithmetic, but
sum in another order (BN statistics and gradients as two halves).  In float32 that rounding flips
ReLUs whose input sits within ~1e-7 of zero, which changes a gradient by ~1e-3 of its size (measured:
the stem's gradient after one step of a B=1 F=64 supernet with every edge sep_5x5 was 0.7 % off float64
in 2 processes, 0.03 % in one); Adam with beta1 = 0 turns the sign of a small alpha gradient into a
full step, so after 12 steps alpha differed by up to 1.7e-2 and the genotypes differed.  In float64
the same runs agree to 3.4e-15 (alpha) and 9.3e-17 (weights) with --sync-bn (measured), so we allow
1e-10; without --sync-bn (per-process BN statistics) alpha differs by 4.4e-2 and the test fails.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import search_cifar
import train_cifar
from utils.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ALPHA_TOL, WEIGHT_TOL = 1e-10, 1e-10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from utils.synthetic import write_synthetic_cifar
    root = tmp_path_factory.mktemp("ddp") / "data"
    write_synthetic_cifar(root, per_batch=16, n_test=16, seed=0)
    return root


def flags(data, out, *extra):
    # the tree space's smallest network, or NAS-Bench-201's C=4 N=1 when the caller names that space
    size = ["--C", "4", "--N", "1"] if "nb201" in map(str, extra) else ["--B", "1", "--F", "64"]
    return ["--data", str(data), "--no-download", "--arch-split", "16", *size,
            "--warmup-epochs", "1", "--epochs", "2", "--batch-size", "16", "--arch-batch-size", "16",
            "--arch-every", "2", "--output", str(out), "--no-progress", "--no-tensorboard", "--seed", "3",
            "--no-augment", "--float64", *map(str, extra)]


def one(data, out, *extra) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return search_cifar.main(search_cifar.get_args_parser().parse_args(flags(data, out, *extra)))
    finally:
        torch.set_num_threads(before)


def torchrun(data, out, *extra, script="search_cifar.py") -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
           *flags(data, out, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "processes=2" in proc.stdout
    return proc.stdout


def alphas(out) -> torch.Tensor:
    model = load_checkpoint(Path(out) / "checkpoint.pth")["model"]
    return model["alpha"]


def records(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def assert_same_search(a, b, alpha_tol=ALPHA_TOL):
    ca, cb = load_checkpoint(Path(a) / "checkpoint.pth"), load_checkpoint(Path(b) / "checkpoint.pth")
    assert ca["genotype"] == cb["genotype"]
    diff = (alphas(a) - alphas(b)).abs().max().item()
    assert diff <= alpha_tol, diff
    assert alphas(a).abs().max() > 1e-3  # alpha did move: the comparison means something
    for k, v in ca["model"].items():
        if v.is_floating_point() and "running" not in k:
            torch.testing.assert_close(v, cb["model"][k], rtol=0, atol=WEIGHT_TOL, msg=k)
    for ra, rb in zip(records(a), records(b)):
        for key in ("train_loss", "valid_loss", "valid_argmax_loss", "arch_loss"):
            assert (key in ra) == (key in rb) and abs(ra.get(key, 0) - rb.get(key, 0)) < 1e-9, (key, ra, rb)


@pytest.mark.long
def test_two_processes_match_one(data, tmp_path):
    """Gradient search, --sync-bn: the same genotype, alpha and weights; one flattened all-reduce per
    weight step and per architecture step; every process ran the same paths (checked every epoch by
    the search itself: it raises otherwise) and holds bitwise the same alpha."""
    torchrun(data, tmp_path / "two", "--sync-bn")
    one(data, tmp_path / "one")
    assert_same_search(tmp_path / "one", tmp_path / "two")
    for r in records(tmp_path / "two"):
        assert r["comm_weights_calls"] == r["weight_steps"]
        assert r.get("comm_arch_calls", 0) == r["arch_steps"]
    assert "comm_weights_calls" not in records(tmp_path / "one")[0]  # one process: no collectives


# The tests below check data-parallel mechanisms that do not depend on the space (BN statistics, REINFORCE's
# rewards, the latency term, resume); they run NAS-Bench-201's C=4 N=1 network, ~3x faster in float64 than
# the tree space's smallest (which test_two_processes_match_one covers).
NB201 = ("--space", "nb201")


def test_without_sync_bn_the_tolerance_fails(data, tmp_path):
    """Per-process BN statistics (the default) are another computation: the comparison above must see it."""
    torchrun(data, tmp_path / "two", *NB201)
    one(data, tmp_path / "one", *NB201)
    with pytest.raises(AssertionError):
        assert_same_search(tmp_path / "one", tmp_path / "two")
    assert (alphas(tmp_path / "one") - alphas(tmp_path / "two")).abs().max() > 1e4 * ALPHA_TOL


@pytest.fixture(scope="module")
def nb201_two(data, tmp_path_factory):
    """One 2-process NAS-Bench-201 search with --sync-bn, read by two tests (each torchrun costs seconds of
    start-up); they share an xdist group, so that one worker runs both and makes it once."""
    out = tmp_path_factory.mktemp("nb201_two") / "run"
    torchrun(data, out, "--space", "nb201", "--sync-bn")
    return out


@pytest.mark.long
@pytest.mark.xdist_group("nb201_two")
def test_nb201_two_processes_match_one(data, nb201_two, tmp_path):
    """The NAS-Bench-201 space through the same data-parallel code: 6 shared decisions, same result."""
    one(data, tmp_path / "one", "--space", "nb201")
    assert_same_search(tmp_path / "one", nb201_two)
    assert alphas(tmp_path / "one").shape == (6, 5)


@pytest.mark.long
def test_reinforce_two_processes_match_one(data, tmp_path):
    extra = [*NB201, "--algo", "reinforce", "--reinforce-samples", "2", "--sync-bn"]
    torchrun(data, tmp_path / "two", *extra)
    one(data, tmp_path / "one", *extra[:-1])
    assert_same_search(tmp_path / "one", tmp_path / "two")
    b1 = load_checkpoint(tmp_path / "one" / "checkpoint.pth")["architect"]["baseline"]
    b2 = load_checkpoint(tmp_path / "two" / "checkpoint.pth")["architect"]["baseline"]
    assert b1 == pytest.approx(b2, abs=1e-12)  # one baseline: the rewards were averaged over processes


@pytest.mark.long
def test_latency_aware_two_processes_match_one(data, tmp_path):
    from models import get_space
    from utils.latency import build_table
    table = build_table(get_space("nb201"), {"C": 4, "N": 1}, batch_size=1, device="cpu", threads=1, warmup=1, repeats=3,
                        progress=False)
    table.save(tmp_path / "lat.json")
    extra = [*NB201, "--latency-table", tmp_path / "lat.json", "--target-latency", "0.05", "--latency-lambda", "1.0"]
    torchrun(data, tmp_path / "two", *extra, "--sync-bn")
    one(data, tmp_path / "one", *extra)
    assert_same_search(tmp_path / "one", tmp_path / "two")
    assert records(tmp_path / "two")[-1]["argmax_latency_ms"] == pytest.approx(
        records(tmp_path / "one")[-1]["argmax_latency_ms"], rel=1e-12)


@pytest.mark.long
@pytest.mark.xdist_group("nb201_two")
def test_resume_under_torchrun_continues_exactly(data, nb201_two, tmp_path):
    full = nb201_two  # the uninterrupted run
    torchrun(data, tmp_path / "part", *NB201, "--sync-bn", "--stop-after", "1")
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pth")["epoch"] == 1
    torchrun(data, tmp_path / "part", *NB201, "--sync-bn", "--resume")
    assert torch.equal(alphas(full), alphas(tmp_path / "part"))
    assert (tmp_path / "part" / "genotype_final.json").read_text() == (full / "genotype_final.json").read_text()
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "epoch_time_s", "images_per_s")} for r in rs]
    assert strip(records(full)) == strip(records(tmp_path / "part"))


def _check_worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist
    from utils import distributed as ddp
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        sync = ddp.Sync(ddp.DistInfo(rank, rank, 2))
        same = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        sync.check_same("equal values", 12345, same.clone())
        other = same.clone()
        if rank == 1:
            other[1, 2] = torch.nextafter(other[1, 2], torch.tensor(10.0))  # one ulp
        try:
            sync.check_same("alpha", 12345, other)
            result = "no error"
        except RuntimeError as e:
            result = str(e)
        Path(out, f"rank{rank}.txt").write_text(result)
    finally:
        dist.destroy_process_group()


def test_rank_check_sees_one_ulp(tmp_path):
    """The per-epoch check (the sampled-path digest and alpha, bitwise) catches a one-ulp difference."""
    import torch.multiprocessing as mp
    mp.spawn(_check_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in range(2):
        assert "disagree on alpha" in (tmp_path / f"rank{rank}.txt").read_text()


def test_path_digest_follows_every_sample():
    from models import build_supernet
    torch.manual_seed(0)
    net = build_supernet(1, 64)
    x = torch.randn(2, 3, 32, 32)
    digests = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        net.path_digest = 0
        with net.gate_mode("sample"), torch.no_grad():
            net(x)
        digests.append(net.path_digest)
    assert digests[0] == digests[1] != digests[2]


# ------------------------------------------------------------------ GPU features on the CPU
def test_bf16_autocast_search_and_training_on_cpu(data, tmp_path):
    argv = [a for a in flags(data, tmp_path / "s", "--amp", "bf16", "--channels-last", "on") if a != "--float64"]
    res = search_cifar.main(search_cifar.get_args_parser().parse_args(argv))
    rec = records(tmp_path / "s")
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["valid_loss"]) for r in rec)
    assert math.isfinite(rec[-1]["arch_loss"]) and res["alphas"].abs().max() > 0
    out = train_cifar.main(train_cifar.get_args_parser().parse_args([
        "--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--epochs", "1", "--batch-size", "16",
        "--genotype", str(tmp_path / "s" / "genotype_final.json"), "--output", str(tmp_path / "t"), "--amp", "bf16"]))
    assert out["amp"] == "bf16" and math.isfinite(out["final_test_loss"]) and math.isfinite(records(tmp_path / "t")[0]["train_loss"])


@pytest.mark.long
def test_compiled_training_matches_eager_on_cpu(data, tmp_path):
    """torch.compile (inductor, CPU) vs eager, float64, same seed, one epoch: inductor fuses and reorders
    the arithmetic, which in float64 changes the loss by ~1e-15 (measured in float32: 6.5e-4 on the
    training loss, through ReLU flips); a wrong compiled graph would be off by far more.  We allow 1e-9."""
    # a NAS-Bench-201 C=4 N=1 network (convs, pooling, skip, none; 32 s cold) instead of the tree space's B=1 F=64
    # (60 s): what is checked -- capture, compiled backward, the recompile for eval, the numbers -- is the same
    cell = "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"
    common = ["--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--epochs", "1",
              "--batch-size", "16", "--genotype", cell, "--C", "4", "--N", "1", "--no-augment", "--float64"]
    eager = train_cifar.main(train_cifar.get_args_parser().parse_args([*common, "--output", str(tmp_path / "e")]))
    # scalar C++ kernels instead of SIMD ones: inductor's C++ compile (a cold cache, tree B=1 F=64) took 58 s instead of 102 s
    # here, and what the test checks -- graph capture, the compiled backward, the recompile for eval, the
    # numbers -- does not depend on it (a GPU runs Triton kernels, neither of these)
    import torch._inductor.config as inductor_config
    with inductor_config.patch({"cpp.vec_isa_ok": False}):
        compiled = train_cifar.main(train_cifar.get_args_parser().parse_args(
            [*common, "--output", str(tmp_path / "c"), "--compile"]))
    re_, rc = records(tmp_path / "e")[0], records(tmp_path / "c")[0]
    assert abs(re_["train_loss"] - rc["train_loss"]) < 1e-9, (re_, rc)
    assert abs(eager["final_test_loss"] - compiled["final_test_loss"]) < 1e-9
