"""train_cifar.py: learning, DDP equivalence, resume, drop regularizers, --init-from, --eval-only, errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import genotypes
import train_cifar
from models import build_net, build_supernet, count_parameters
from models.tree import cells as cells_mod
from models.tree.arch import EDGES_PER_CELL
from utils.errors import USER_ERRORS
from utils.checkpoint import load_checkpoint, load_search_weights, save_checkpoint, save_genotype
from tiny_runs import records

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
FAST = ["--no-download", "--no-progress", "--no-tensorboard", "--batch-size", "16"]


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: intra-op threads only add overhead (and stall on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mixed_genotype(ops=("sep_3x3", "avg_pool_3x3", "identity", "max_pool_3x3", "dil_sep_3x3"), seed=0):
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(ops), (3, EDGES_PER_CELL), generator=g).tolist()
    return genotypes.Genotype(1, 64, [[ops[i] for i in row] for row in pick])


def write_genotype(tmp_path, g, name="g.json") -> str:
    path = tmp_path / name
    save_genotype(g, path)
    return str(path)


def run(data, out, *flags):
    args = train_cifar.get_args_parser().parse_args(
        ["--data", str(data), "--output", str(out), *FAST, *map(str, flags)])
    return train_cifar.main(args)


# ------------------------------------------------------------------ learning + outputs
def test_training_lowers_loss_and_writes_results(synthetic_data, tmp_path):
    g = genotypes.uniform(1, 64, "sep_3x3")
    out = tmp_path / "run"
    res = run(synthetic_data, out, "--genotype", write_genotype(tmp_path, g), "--epochs", 3, "--train-subset", 96)
    log = records(out)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"] - 0.05
    assert log[-1]["lr"] < log[0]["lr"]  # cosine schedule
    saved = json.loads((out / "results.json").read_text())
    for key in ("final_test_acc", "best_test_acc", "params", "multiply_adds", "epochs", "wall_time_s", "device"):
        assert key in saved
    assert saved["params"] == count_parameters(build_net(g)) and saved["epochs"] == 3
    assert saved["best_test_acc"] == max(r["test_acc"] for r in log) == res["best_test_acc"]
    ckpt = load_checkpoint(out / "last.pth")
    assert ckpt["kind"] == "train" and ckpt["epoch"] == 3 and genotypes.Genotype.from_dict(ckpt["genotype"]) == g
    build_net(g).load_state_dict(ckpt["model"])  # plain keys: no DDP / compile prefixes
    assert (out / "best.pth").is_file()


def test_multiply_adds_match_a_hand_count():
    g = mixed_genotype()
    net = build_net(g).eval()
    total = []

    def conv(m, inp, out):
        total.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(lambda m, i, o: total.append(m.in_features * m.out_features))
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    assert train_cifar.multiply_adds(g) == sum(total)


# ------------------------------------------------------------------ DDP
def _bn_worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist
    from utils.distributed import convert_sync_batchnorm
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        x, w = torch.randn(8, 5, 6, 6) * 3 + 1, torch.randn(8, 5, 6, 6)
        bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(5)), torch.device("cpu"))
        part = slice(4 * rank, 4 * rank + 4)
        xs = x[part].clone().requires_grad_()
        y = bn(xs)
        (y * w[part]).sum().backward()
        grads = torch.cat([bn[0].weight.grad, bn[0].bias.grad])
        dist.all_reduce(grads)  # what DDP does (up to its averaging)
        torch.save({"y": y.detach(), "xgrad": xs.grad, "pgrad": grads, "state": bn[0].state_dict(),
                    "type": type(bn[0]).__name__}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_cpu_sync_batchnorm_matches_whole_batch(tmp_path):
    """GlobalBatchNorm2d on 2 gloo processes x 4 samples == BatchNorm2d on the 8 samples."""
    import torch.multiprocessing as mp
    mp.spawn(_bn_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    torch.manual_seed(0)
    x, w = torch.randn(8, 5, 6, 6) * 3 + 1, torch.randn(8, 5, 6, 6)
    ref = nn.BatchNorm2d(5)
    x.requires_grad_()
    y = ref(x)
    (y * w).sum().backward()
    for rank in range(2):
        r = torch.load(tmp_path / f"rank{rank}.pt")
        assert r["type"] == "GlobalBatchNorm2d"
        part = slice(4 * rank, 4 * rank + 4)
        torch.testing.assert_close(r["y"], y[part].detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(r["xgrad"], x.grad[part], rtol=0, atol=1e-5)
        torch.testing.assert_close(r["pgrad"], torch.cat([ref.weight.grad, ref.bias.grad]), rtol=1e-5, atol=1e-5)
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(r["state"][k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.long
def test_ddp_two_processes_match_one(synthetic_data, tmp_path):
    """torchrun, 2 CPU processes (gloo), --sync-bn, augmentation off, global batch 16 (8 per process)
    vs one process with batch 16.  Path- and cell-drop are on: every process draws the same drops
    from the same seeded RNG, and DDP must accept the parameters a dropped branch leaves unused.

    Tolerance: the runs are equal in exact arithmetic but sum in another order (BN statistics and
    gradients as two halves), so float32 rounding differs; a ReLU whose input sits within rounding
    of zero then flips, which changes gradients by more than the rounding itself (the small lr keeps
    that in check).  Measured for this setting: losses within 6e-6, weights within 1.4e-6; without
    --sync-bn the same comparison is off by 9e-2 (losses) and 1.5e-3 (weights).  We allow 2e-4 (losses),
    1e-4 (weights) and 1e-3 relative (BN running statistics)."""
    flags = ["--genotype", write_genotype(tmp_path, mixed_genotype()), "--epochs", 2, "--train-subset", 32,
             "--lr", 0.01, "--no-augment", "--path-drop", 0.1, "--cell-drop", 0.1]
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train_cifar.py",
           "--data", str(synthetic_data), "--output", str(two), *FAST, "--sync-bn", *map(str, flags)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "processes=2" in proc.stdout
    run(synthetic_data, one, *flags)

    a, b = records(one), records(two)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "test_loss"):
            assert abs(ra[key] - rb[key]) < 2e-4, (key, ra[key], rb[key])
        assert ra["lr"] == pytest.approx(rb["lr"], rel=1e-12)
    wa, wb = load_checkpoint(one / "last.pth")["model"], load_checkpoint(two / "last.pth")["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        if "running" in k:  # statistics are larger numbers: relative
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4, msg=k)
        else:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-4, msg=k)


# ------------------------------------------------------------------ resume
def test_resume_continues_exactly(synthetic_data, tmp_path):
    flags = ["--genotype", write_genotype(tmp_path, mixed_genotype()), "--epochs", 3, "--train-subset", 32,
             "--path-drop", 0.2, "--cell-drop", 0.2, "--label-smoothing", 0.1, "--warmup-epochs", 1]
    full, parts = tmp_path / "full", tmp_path / "parts"
    run(synthetic_data, full, *flags)
    first = run(synthetic_data, parts, *flags, "--stop-after", 1)
    assert first["finished"] is False and not (parts / "results.json").exists()
    # a record written after the checkpoint (a crash between the two) must not survive the resume
    with open(parts / "log.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "train_loss": -1.0}) + "\n")
    run(synthetic_data, parts, *flags, "--resume")

    a, b = load_checkpoint(full / "last.pth"), load_checkpoint(parts / "last.pth")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    drop = {"time", "images_per_s", "epoch_time_s"}
    ra = [{k: v for k, v in r.items() if k not in drop} for r in records(full)]
    rb = [{k: v for k, v in r.items() if k not in drop} for r in records(parts)]
    assert ra == rb and len(rb) == 3
    res_a, res_b = (json.loads((d / "results.json").read_text()) for d in (full, parts))
    assert res_a["final_test_acc"] == res_b["final_test_acc"] and res_a["best_test_acc"] == res_b["best_test_acc"]

    # the finished run evaluates to the same figure with --eval-only
    args = train_cifar.get_args_parser().parse_args(
        ["--eval-only", str(parts / "last.pth"), "--data", str(synthetic_data), "--no-download", "--no-progress"])
    ev = train_cifar.main(args)
    assert ev["test_acc"] == pytest.approx(res_b["final_test_acc"], abs=1e-9)


def test_resume_refuses_other_settings(synthetic_data, tmp_path):
    gfile = write_genotype(tmp_path, genotypes.uniform(1, 64, "sep_3x3"))
    out = tmp_path / "run"
    run(synthetic_data, out, "--genotype", gfile, "--epochs", 2, "--train-subset", 16, "--stop-after", 1)
    with pytest.raises(USER_ERRORS, match="--batch-size 16 \\(now 8\\)"):
        args = train_cifar.get_args_parser().parse_args(
            ["--data", str(synthetic_data), "--output", str(out), *FAST, "--batch-size", "8", "--genotype", gfile,
             "--epochs", "2", "--train-subset", "16", "--resume"])
        train_cifar.main(args)
    with pytest.raises(USER_ERRORS, match="--epochs 2 \\(now 3\\)"):
        run(synthetic_data, out, "--genotype", gfile, "--epochs", 3, "--train-subset", 16, "--resume")
    other = write_genotype(tmp_path, genotypes.uniform(1, 64, "identity"), "other.json")
    with pytest.raises(USER_ERRORS, match="is not the network in"):
        run(synthetic_data, out, "--genotype", other, "--epochs", 2, "--train-subset", 16, "--resume")
    with pytest.raises(USER_ERRORS, match="already holds a train run"):
        run(synthetic_data, out, "--genotype", gfile, "--epochs", 2, "--train-subset", 16)


# ------------------------------------------------------------------ path-drop / cell-drop
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_drops_train_and_eval(dtype):
    g = mixed_genotype()
    net = build_net(g, path_drop=0.5, cell_drop=0.5).to(dtype)
    x = torch.randn(4, 3, 32, 32, dtype=dtype)
    net.train()
    outs = []
    for seed in range(4):
        torch.manual_seed(seed)
        y = net(x)
        assert y.shape == (4, 10) and y.dtype == dtype and y.device == x.device and torch.isfinite(y).all()
        y.float().sum().backward()
        outs.append(y.detach())
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # the drops are random in training
    plain = build_net(g).to(dtype)
    plain.load_state_dict(net.state_dict())
    net.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))  # evaluation is the plain network


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropped_branches_are_zeros_of_the_right_kind(monkeypatch, dtype):
    """With every draw 'drop', a cell returns zeros shaped, typed and placed like its output, and a
    block returns its (pooled, zero-padded) shortcut."""
    net = build_net(mixed_genotype(), path_drop=0.3, cell_drop=0.3).to(dtype).train()
    block = net.blocks[1]  # first block of stage 2: stride 2, more output channels
    assert block.spec.stride == 2
    x = torch.randn(2, block.spec.in_channels, 32, 32, dtype=dtype)
    monkeypatch.setattr(cells_mod, "_keep", lambda rate, training: False)
    h = block.in_bottle(x)
    c = block.cell(h)
    assert c.shape == (2, block.spec.width, 16, 16) and c.dtype == dtype and c.device == x.device
    assert not c.any()
    y = block(x)
    short = nn.functional.avg_pool2d(x, 2)
    assert y.shape == (2, block.spec.out_channels, 16, 16) and y.dtype == dtype
    assert torch.equal(y[:, :block.spec.in_channels], short) and not y[:, block.spec.in_channels:].any()
    # and the whole network still runs and trains
    out = net(torch.randn(2, 3, 32, 32, dtype=dtype))
    assert out.shape == (2, 10) and out.dtype == dtype


# ------------------------------------------------------------------ --init-from
CANDS = ["sep_3x3", "dil_sep_3x3", "avg_pool_3x3", "identity"]


def search_checkpoint(path, B=1, F=64, candidates=CANDS):
    torch.manual_seed(1)
    sn = build_supernet(B, F, candidates)
    with torch.no_grad():  # every tensor distinct, so a wrong copy cannot pass by chance
        for t in sn.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    save_checkpoint({"kind": "search", "model": sn.state_dict(), "epoch": 1, "genotype": sn.derive().to_dict(),
                     "args": {"B": B, "F": F, "candidates": list(candidates)}}, path)
    return sn.state_dict()


def expected_key(key: str, g, candidates=CANDS) -> str:
    """Derived-net key -> the supernet key of the chosen op (or the same key for fixed layers)."""
    parts = key.split(".")
    if len(parts) > 5 and parts[2:4] == ["cell", "edges"]:
        b, e = int(parts[1]), int(parts[4])
        return ".".join(parts[:5] + ["ops", str(candidates.index(g.ops[b][e]))] + parts[5:])
    return key


def test_init_from_copies_exactly_the_chosen_ops(tmp_path):
    g = mixed_genotype(ops=CANDS, seed=3)
    sup = search_checkpoint(tmp_path / "search.pth")
    net = build_net(g)
    load_search_weights(net, g, str(tmp_path / "search.pth"))
    mine = net.state_dict()
    for k, v in mine.items():
        assert torch.equal(v, sup[expected_key(k, g)]), k
    chosen_edge_keys = {expected_key(k, g) for k in mine if ".edges." in k}
    # every tensor of a chosen op came across; no tensor of an unchosen op did
    for k in sup:
        if ".ops." in k:
            b, e, i = int(k.split(".")[1]), int(k.split(".")[4]), int(k.split(".")[6])
            assert (k in chosen_edge_keys) == (CANDS[i] == g.ops[b][e]), k


def test_init_from_is_used_by_main(synthetic_data, tmp_path):
    g = mixed_genotype(ops=CANDS, seed=3)
    sup = search_checkpoint(tmp_path / "search.pth")
    out = tmp_path / "run"
    run(synthetic_data, out, "--genotype", write_genotype(tmp_path, g), "--epochs", 1, "--train-subset", 16,
        "--init-from", tmp_path / "search.pth", "--lr", 1e-9, "--no-augment")
    model = load_checkpoint(out / "last.pth")["model"]
    for k, v in model.items():
        if v.is_floating_point() and "running" not in k:  # one step at lr ~1e-9 leaves the weights
            torch.testing.assert_close(v, sup[expected_key(k, g)], rtol=0, atol=1e-6, msg=k)


def test_init_from_mismatch_is_a_clear_error(synthetic_data, tmp_path):
    gfile = write_genotype(tmp_path, mixed_genotype(ops=CANDS))
    search_checkpoint(tmp_path / "wide.pth", F=72)
    with pytest.raises(USER_ERRORS, match="the supernet is B=1 F=72 but the network being trained is B=1 F=64"):
        run(synthetic_data, tmp_path / "a", "--genotype", gfile, "--epochs", 1, "--init-from", tmp_path / "wide.pth")
    search_checkpoint(tmp_path / "few.pth", candidates=["sep_3x3", "identity"])
    with pytest.raises(USER_ERRORS, match="lacks"):
        run(synthetic_data, tmp_path / "b", "--genotype", gfile, "--epochs", 1, "--init-from", tmp_path / "few.pth")


# ------------------------------------------------------------------ --eval-only and the command line
def test_eval_only_refuses_a_mismatched_genotype_or_checkpoint(synthetic_data, tmp_path):
    g = genotypes.uniform(1, 64, "sep_3x3")
    out = tmp_path / "run"
    run(synthetic_data, out, "--genotype", write_genotype(tmp_path, g), "--epochs", 1, "--train-subset", 16)

    def eval_only(*flags):
        args = train_cifar.get_args_parser().parse_args(
            ["--data", str(synthetic_data), "--no-download", "--no-progress", *map(str, flags)])
        return train_cifar.main(args)

    with pytest.raises(USER_ERRORS, match="is not the network in"):
        eval_only("--eval-only", out / "last.pth", "--genotype", "proxyless_cifar")
    search_checkpoint(tmp_path / "search.pth")
    with pytest.raises(USER_ERRORS, match="not a train checkpoint"):
        eval_only("--eval-only", tmp_path / "search.pth")
    bad = load_checkpoint(out / "last.pth")
    bad["genotype"] = genotypes.uniform(1, 64, "identity").to_dict()  # weights of another network
    save_checkpoint(bad, tmp_path / "bad.pth")
    with pytest.raises(USER_ERRORS, match="does not fit the network"):
        eval_only("--eval-only", tmp_path / "bad.pth")


def test_cli_reports_user_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "train_cifar.py", "--genotype", str(tmp_path / "nope.json"),
                           "--output", str(tmp_path / "run"), "--no-download", "--data", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown genotype") and "Traceback" not in proc.stderr
