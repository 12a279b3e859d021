"""Every command-line entry point reports bad input as exactly one `error: ...` line on stderr, exits
non-zero, prints no traceback and writes nothing.  Each bad value passes argparse (whose own errors
print a usage line too) and is caught by the script's own checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import genotypes
from utils.checkpoint import save_genotype
from utils.latency import build_table
from models.tree.space import TREE

ROOT = Path(__file__).resolve().parents[1]

# entry point -> (bad flags, a substring the error line must hold); "{tmp}" is the test's tmp_path
BAD_INPUT = {
    "search_cifar.py": (["--B", "0", "--output", "{tmp}/out"], "B (blocks per stage)"),
    "train_cifar.py": (["--epochs", "0", "--output", "{tmp}/out"], "--epochs"),
    "test_run.py": (["--arch-split", "5000", "--train-images", "100", "--output", "{tmp}/out"], "--arch-split"),
    "visualize_cifar.py": (["{tmp}/out/arch", "--checkpoint", "{tmp}/missing/search.pth"], "--checkpoint"),
    "export_onnx.py": (["--genotype", "/nonexistent.json", "--output", "{tmp}/out/model.onnx"], "nonexistent"),
    "-m utils.latency build": (["--threads", "0", "--B", "1", "--F", "64", "--out", "{tmp}/out/t.json"], "--threads"),
    "-m utils.latency predict": (["--table", "/nonexistent.json", "--genotype", "proxyless_cifar"], "/nonexistent.json"),
    "bench/memory.py": (["--B", "0"], "--B"),
    "bench/step_cost.py": (["--batch", "0"], "--batch"),
    "bench/latency_predictor.py": (["--B", "0"], "B (blocks per stage)"),
    "bench/train_throughput.py": (["--batch-size", "0"], "--batch-size"),
    "bench/ddp_search.py": (["--batch-size", "3"], "--batch-size"),
    "bench/export_time.py": (["--busy", "-1"], "--busy"),
    "bench/bf16_stress.py": (["--seeds", "0"], "--seeds"),
    "bench/search_quality.py": (["--random", "1", "--output", "{tmp}/out"], "--random"),
    "bench/nb201_search.py": (["--seeds", "0", "0", "--output", "{tmp}/out"], "--seeds"),
    "bench/group_interactions.py": (["--context", "99"], "--context"),
}


@pytest.mark.parametrize("entry", list(BAD_INPUT))
def test_bad_input_is_one_error_line(entry, tmp_path):
    flags, needle = BAD_INPUT[entry]
    cmd = [sys.executable, *entry.split(), *(f.replace("{tmp}", str(tmp_path)) for f in flags)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # bench/ scripts import the repository's packages
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_a_good_command_line_is_not_an_error(tmp_path):
    """The other side: a valid `utils.latency predict` call succeeds (so the check above is meaningful)."""
    build_table(TREE, {"B": 1, "F": 64}, batch_size=1, device="cpu", threads=1, warmup=0, repeats=1, progress=False).save(
        tmp_path / "t.json")
    g = tmp_path / "g.json"
    save_genotype(genotypes.uniform(1, 64, "sep_3x3"), g)
    proc = subprocess.run([sys.executable, "-m", "utils.latency", "predict", "--table", str(tmp_path / "t.json"),
                           "--genotype", str(g)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "predicted latency" in proc.stdout, proc.stderr[-2000:]
    assert "error:" not in proc.stderr
