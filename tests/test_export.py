"""export_onnx.py: a tiny random network exports with a dynamic batch axis and matches PyTorch in
onnxruntime; checkpoints are loaded or refused with errors that name the problem."""
import sys

import onnx
import pytest
import torch

import export_onnx
import genotypes
from models import build_net
from utils.errors import USER_ERRORS, run_cli
from utils.checkpoint import save_checkpoint, save_genotype

TINY = genotypes.Genotype(1, 64, [["sep_3x3", "dil_sep_3x3", "avg_pool_3x3", "max_pool_3x3", "identity", "sep_5x5",
                                   "sep_7x7", "identity", "sep_3x3", "avg_pool_3x3", "dil_sep_3x3",
                                   "max_pool_3x3"]] * 3)


def _args(*argv):
    return export_onnx.get_args_parser().parse_args(list(argv))


@pytest.mark.parametrize("exporter", export_onnx.EXPORTERS)
def test_tiny_random_network_matches_onnxruntime(tmp_path, capsys, exporter):
    save_genotype(TINY, tmp_path / "tiny.json")
    out = tmp_path / "sub" / "tiny.onnx"
    result = export_onnx.main(_args("--genotype", str(tmp_path / "tiny.json"), "--output", str(out),
                                    "--batch-sizes", "1", "8", "3", "--latency-runs", "3", "--threads", "1",
                                    "--exporter", exporter))
    assert out.is_file()
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a symbolic (dynamic) batch axis
    assert set(result["max_abs_diff"]) == {1, 8, 3}
    assert all(d <= 1e-4 for d in result["max_abs_diff"].values())
    assert result["ort_ms"] > 0 and result["torch_ms"] > 0
    assert result["opset"] == next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert result["bytes"] == out.stat().st_size
    printed = capsys.readouterr().out
    assert "batch 8: max |onnxruntime - torch|" in printed and "latency at batch 1" in printed
    assert f"export ({exporter}) and check:" in printed


def test_default_exporter_is_the_fast_one_and_help_says_why(capsys):
    assert _args().exporter == "torchscript"
    with pytest.raises(SystemExit):
        _args("--help")
    assert "deprecated" in capsys.readouterr().out


def test_calibrated_random_network_has_sane_logits():
    torch.manual_seed(0)
    model = build_net(TINY)
    export_onnx.calibrate_bn(model)
    assert not model.training
    with torch.no_grad():
        logits = model(torch.randn(4, 3, 32, 32))
    assert torch.isfinite(logits).all() and logits.abs().max() < 100
    bn = model.blocks[0].final_bn
    assert bn.momentum == 0.1 and bn.num_batches_tracked > 0 and not torch.equal(bn.running_var, torch.ones_like(
        bn.running_var))


def test_checkpoint_loading(tmp_path):
    torch.manual_seed(1)
    trained = build_net(TINY)
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in trained.state_dict().items()}
    save_checkpoint({"kind": "train", "model": state, "genotype": TINY.to_dict(), "epoch": 3}, tmp_path / "t.pth")
    loaded = export_onnx.load_network(None, str(tmp_path / "t.pth"))  # genotype from the checkpoint
    assert loaded.genotype == TINY and not loaded.training
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    # a bare state_dict with a DDP prefix needs --genotype
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "bare.pth")
    save_genotype(TINY, tmp_path / "tiny.json")
    loaded = export_onnx.load_network(str(tmp_path / "tiny.json"), str(tmp_path / "bare.pth"))
    assert torch.equal(loaded.classifier.weight, state["classifier.weight"])


def test_checkpoint_that_does_not_fit(tmp_path):
    state = build_net(TINY).state_dict()
    torch.save(state, tmp_path / "bare.pth")
    # another F: shapes differ; the message names keys
    wider = genotypes.Genotype(1, 72, TINY.ops)
    save_genotype(wider, tmp_path / "wider.json")
    with pytest.raises(USER_ERRORS, match=r"does not fit.*shape mismatch: \S+weight"):
        export_onnx.load_network(str(tmp_path / "wider.json"), str(tmp_path / "bare.pth"))
    # sep_3x3 -> avg_pool on edge 0 of block 0: its weights are unexpected
    ops = [list(b) for b in TINY.ops]
    ops[0][0] = "avg_pool_3x3"
    save_genotype(genotypes.Genotype(1, 64, ops), tmp_path / "other.json")
    with pytest.raises(USER_ERRORS, match=r"unexpected: blocks\.0\.cell\.edges\.0\."):
        export_onnx.load_network(str(tmp_path / "other.json"), str(tmp_path / "bare.pth"))
    # a stored genotype that differs only in parameter-free ops is caught by the comparison
    ops = [list(b) for b in TINY.ops]
    ops[1][2] = "max_pool_3x3"
    save_checkpoint({"kind": "train", "model": state, "genotype": TINY.to_dict()}, tmp_path / "t.pth")
    save_genotype(genotypes.Genotype(1, 64, ops), tmp_path / "pool.json")
    with pytest.raises(USER_ERRORS, match=r"another genotype.*block 1 edge h0\.0\.1: max_pool_3x3 vs avg_pool_3x3"):
        export_onnx.load_network(str(tmp_path / "pool.json"), str(tmp_path / "t.pth"))
    save_checkpoint({"kind": "search", "model": state, "args": {}}, tmp_path / "s.pth")
    with pytest.raises(USER_ERRORS, match="search checkpoint"):
        export_onnx.load_network(None, str(tmp_path / "s.pth"))


def test_bad_genotype_path_is_one_line_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(USER_ERRORS, match="missing.json"):
        export_onnx.main(_args("--genotype", str(tmp_path / "missing.json"), "--output", str(tmp_path / "m.onnx")))
    monkeypatch.setattr(sys, "argv", ["export_onnx.py", "--genotype", str(tmp_path / "missing.json"),
                                      "--output", str(tmp_path / "m.onnx")])
    with pytest.raises(SystemExit) as e:
        run_cli(export_onnx.main, export_onnx.get_args_parser())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.json" in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("idle_share, cores, expected", [(1.0, 2, 2), (0.5, 2, 1), (0.1, 2, 1), (0.74, 4, 3), (0.0, 8, 1)])
def test_auto_threads_are_the_idle_cores(monkeypatch, idle_share, cores, expected):
    """export_onnx.py --threads auto: the cores times the idle share of CPU time, at least one."""
    from utils import device
    samples = iter([(0, 0), (int(1000 * idle_share), 1000)])
    monkeypatch.setattr(device, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert device.idle_cores(window=0) == expected


def test_latency_timing_stops_at_its_time_budget():
    import time
    calls = []
    ms, runs = export_onnx.median_ms(lambda: (calls.append(1), time.sleep(0.02)), runs=1000, seconds=0.2, warmup=1)
    assert 3 <= runs < 20 and len(calls) == runs + 1 and ms >= 20  # the budget, not the 1000 runs, ended it
    assert export_onnx.median_ms(lambda: None, runs=5, seconds=100)[1] == 5


@pytest.mark.parametrize("name,params", [("proxyless_gpu", 7_119_848), ("proxyless_cpu", 4_361_648),
                                         ("proxyless_mobile", 4_080_512)])
def test_released_imagenet_networks_export_and_match_onnxruntime(tmp_path, name, params):
    """The authors' three ImageNet networks (MBConv space) at their own input, 224 px and 1000 classes: exported,
    checked by onnx, and equal to torch in onnxruntime at batch 1 and 2."""
    out = tmp_path / f"{name}.onnx"
    result = export_onnx.main(_args("--genotype", name, "--output", str(out), "--batch-sizes", "1", "2",
                                    "--latency-runs", "0", "--threads", "1"))
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [3, 224, 224]
    from models import count_parameters
    assert count_parameters(export_onnx.load_network(name, None)) == params
    assert set(result["max_abs_diff"]) == {1, 2} and all(d <= 1e-4 for d in result["max_abs_diff"].values())
