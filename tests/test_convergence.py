"""Convergence the user can see: how concentrated alpha is, the argmax network's accuracy with BN
statistics recalibrated on its own paths, and the warning for a search that ends near uniform."""
import json

import pytest
import torch
import torch.nn as nn

from bench.profiling import genotype_ops, pin_alphas, random_genotype
from models import build_net, build_supernet
from utils.architect import Architect
from utils.data import BatchLoader, Split
from utils.train import evaluate, make_amp, recalibrate_bn


def loaders(n=64, seed=0):  # (fixed-order loader, its inputs)
    g = torch.Generator().manual_seed(seed)
    split = Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                  torch.randint(0, 10, (n,), generator=g))
    return BatchLoader(split, 16, train=False), [x for x, _ in BatchLoader(split, 16, train=False)]


def test_recalibrated_argmax_supernet_equals_the_recalibrated_derived_network():
    torch.manual_seed(0)
    net = build_supernet(1, 64)
    g = random_genotype(1, 64, seed=2)
    pin_alphas(net, genotype_ops(g))
    loader, inputs = loaders()
    with net.gate_mode("sample"), torch.no_grad():  # running statistics of other paths, as in a search
        net.train()
        for x in inputs:
            net(x)
    amp = make_amp(torch.device("cpu"), "off")
    with net.gate_mode("argmax"):
        stale = evaluate(net, loader, criterion=nn.CrossEntropyLoss(), amp=amp, progress=False)
        recalibrate_bn(net, inputs)
        fresh = evaluate(net, loader, criterion=nn.CrossEntropyLoss(), amp=amp, progress=False)
    derived = build_net(g)
    derived.load_state_dict(net.derived_state_dict(g))
    recalibrate_bn(derived, inputs)
    same = evaluate(derived, loader, criterion=nn.CrossEntropyLoss(), amp=amp, progress=False)
    assert fresh["loss"] == pytest.approx(same["loss"], rel=1e-5) and fresh["acc"] == same["acc"]
    assert abs(stale["loss"] - fresh["loss"]) > 1e-3  # the stale statistics did give another figure


def test_architect_evaluate_restores_the_search_statistics_and_rng():
    """The recalibrated measurement must not change the search: BN statistics and the RNG stream are
    as they would be without it."""
    torch.manual_seed(0)
    net = build_supernet(1, 64)
    g = torch.Generator().manual_seed(1)
    split = Split(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (64,), generator=g))
    loader, calibration = BatchLoader(split, 16, train=False), BatchLoader(split, 16, train=True)
    arch = Architect(net, make_amp(torch.device("cpu"), "off"), nn.CrossEntropyLoss())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(5)
    plain = arch.evaluate(loader, arch.amp)
    rng_plain = torch.get_rng_state()
    torch.manual_seed(5)
    out = arch.evaluate(loader, arch.amp, calibration=calibration, calibration_batches=2)
    assert torch.equal(rng_plain, torch.get_rng_state())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert out["valid_argmax_acc"] == plain["valid_argmax_acc"] and "valid_argmax_recal_acc" in out
    assert out["argmax_prob_mean"] == pytest.approx(1 / 7) and out["argmax_share_over_half"] == 0.0


def test_convergence_note_fires_on_a_search_that_did_not_move_and_not_on_a_pinned_one():
    net = build_supernet(1, 64)
    arch = Architect(net, make_amp(torch.device("cpu"), "off"), nn.CrossEntropyLoss())
    note = arch.convergence_note()
    assert note and "close to uniform" in note and "1.946" in note
    pin_alphas(net, "sep_3x3")
    assert arch.convergence_note() is None
    assert float(net.probs().max(1).values.mean()) > 0.99


def test_search_logs_convergence_and_warns(tmp_path, capsys):
    import search_cifar
    from utils.synthetic import write_synthetic_cifar
    write_synthetic_cifar(tmp_path / "data", per_batch=16, n_test=16)
    search_cifar.main(search_cifar.get_args_parser().parse_args([
        "--data", str(tmp_path / "data"), "--no-download", "--arch-split", "16", "--B", "1", "--F", "64",
        "--warmup-epochs", "1", "--epochs", "1", "--batch-size", "16", "--arch-batch-size", "16", "--output",
        str(tmp_path / "run"), "--no-progress", "--no-tensorboard"]))
    rec = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for key in ("argmax_prob_mean", "argmax_share_over_half", "valid_argmax_recal_acc"):
        assert all(key in r for r in rec), key
    out = capsys.readouterr().out
    assert "warning: the architecture distribution is still close to uniform" in out  # 1 epoch: alpha barely moved
