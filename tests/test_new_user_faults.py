"""The faults a new user hit (issue: 'four faults found by a new user'), one test each, the resume policy
shared by search and training, and one bad input per entry point: one `error:` line, no traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genotypes
import search_cifar
import train_cifar
from utils import data as cifar
from utils import run as scaffold
from utils import train as train_utils
from utils.checkpoint import load_checkpoint, save_genotype
from utils.device import DeviceError, resolve_device
from utils.errors import USER_ERRORS
from utils.synthetic import write_synthetic_cifar

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")


@pytest.fixture
def data(tmp_path):
    write_synthetic_cifar(tmp_path / "data", per_batch=16, n_test=16, seed=0)  # 80 training images
    return tmp_path / "data"


def search(data, out, *extra):
    argv = ["--data", str(data), "--no-download", "--arch-split", "16", "--B", "1", "--F", "64",
            "--warmup-epochs", "1", "--epochs", "2", "--batch-size", "16", "--arch-batch-size", "16",
            "--arch-every", "2", "--output", str(out), "--no-progress", "--no-tensorboard", "--seed", "3",
            *map(str, extra)]
    return search_cifar.main(search_cifar.get_args_parser().parse_args(argv))


def train(data, out, *extra):
    g = out.parent / "g.json"
    save_genotype(genotypes.uniform(1, 64, "sep_3x3"), g)
    argv = ["--data", str(data), "--no-download", "--no-progress", "--no-tensorboard", "--batch-size", "16",
            "--genotype", str(g), "--train-subset", "32", "--epochs", "2", "--output", str(out), *map(str, extra)]
    return train_cifar.main(train_cifar.get_args_parser().parse_args(argv))


def records(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ a loader that yields no batch
def test_arch_split_smaller_than_one_batch_is_one_clear_error(data, tmp_path):
    with pytest.raises(USER_ERRORS, match=r"architecture split holds 16 images, fewer than one batch of 64"):
        search(data, tmp_path / "run", "--arch-batch-size", "64")
    assert not (tmp_path / "run" / "log.jsonl").exists() and not (tmp_path / "run" / "checkpoint.pth").exists()
    with pytest.raises(USER_ERRORS, match=r"weights split holds 64 images, fewer than one batch of 128"):
        search(data, tmp_path / "run2", "--batch-size", "128")


def test_loader_without_a_batch_and_endless_of_it_raise():
    split = cifar.Split(torch.zeros(40, 3, 32, 32, dtype=torch.uint8), torch.zeros(40, dtype=torch.long))
    with pytest.raises(cifar.DataError, match=r"holds 40 images, fewer than one batch of 64"):
        cifar.BatchLoader(split, 64, train=True, name="architecture split")

    class Empty:
        def __len__(self):
            return 0

        def __iter__(self):
            return iter(())

    with pytest.raises(cifar.DataError, match="yields no batch"):
        next(cifar.endless(Empty()))  # before the fix: an endless loop


# ------------------------------------------------------------------ unknown device
def test_unknown_device_is_one_error_line(tmp_path):
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    for script in ("search_cifar.py", "train_cifar.py"):
        p = subprocess.run([sys.executable, script, "--device", "tpu", "--output", str(tmp_path / "x")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: unknown device 'tpu'"), p.stderr


# ------------------------------------------------------------------ unwritable export path
def test_export_to_an_unwritable_path_is_one_error_line(tmp_path):
    save_genotype(genotypes.uniform(1, 64, "sep_3x3"), tmp_path / "g.json")
    (tmp_path / "afile").write_text("not a folder")  # root may write anywhere: a path under a file fails for all
    target = tmp_path / "afile" / "dir" / "model.onnx"
    p = subprocess.run([sys.executable, "export_onnx.py", "--genotype", str(tmp_path / "g.json"), "--output",
                        str(target), "--latency-runs", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --output"), p.stderr
    assert "cannot write" in lines[0] and "Traceback" not in p.stdout + p.stderr


# ------------------------------------------------------------------ divergence
def nan_after(monkeypatch, calls: int):
    """The training loss turns nan from the ``calls``-th weight step on (counted from now)."""
    real, count = train_utils.weight_step, [0]

    def weight_step(*a, **k):
        loss, logits = real(*a, **k)
        count[0] += 1
        return (loss * float("nan"), logits) if count[0] >= calls else (loss, logits)

    monkeypatch.setattr(train_utils, "weight_step", weight_step)


def test_search_divergence_stops_cleanly_and_resumes(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    search(data, out, "--stop-after", "1")
    nan_after(monkeypatch, 3)
    with pytest.raises(USER_ERRORS) as e:
        search(data, out, "--resume")
    msg = str(e.value)
    assert "diverged in epoch 2" in msg and "training loss is nan at step 3" in msg, msg
    assert "still holds epoch 1" in msg and "--resume" in msg and "--lr" in msg and "\n" not in msg
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 1 and len(records(out)) == 1
    monkeypatch.undo()
    search(data, out, "--resume", "--lr", "0.05")  # the remedy: a lower lr is a change a resume may make
    assert len(records(out)) == 3 and (out / "genotype_final.json").exists()


def test_architecture_divergence_names_the_arch_loss(data, tmp_path, monkeypatch):
    from utils.architect import Architect
    real = Architect.step
    monkeypatch.setattr(Architect, "step", lambda self, x, y: (lambda l, o: (l * float("nan"), o))(*real(self, x, y)))
    with pytest.raises(USER_ERRORS, match=r"diverged in epoch 2: the architecture loss is nan at step 2; .*checkpoint"
                                          r"\.pth still holds epoch 1: continue it with --resume and a lower --arch-lr"):
        search(data, tmp_path / "run")  # epoch 1 is the warm-up: no architecture step, saved
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1


def test_training_divergence_stops_cleanly_and_resumes(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(data, out, "--stop-after", "1")
    nan_after(monkeypatch, 1)
    with pytest.raises(USER_ERRORS, match=r"diverged in epoch 2: the training loss is nan at step 1; .*last\.pth "
                                          r"still holds epoch 1: continue it with --resume and a lower --lr"):
        train(data, out, "--resume")
    assert load_checkpoint(out / "last.pth")["epoch"] == 1 and len(records(out)) == 1
    monkeypatch.undo()
    res = train(data, out, "--resume", "--lr", "0.05")
    assert res["finished"] and len(records(out)) == 2


def test_meter_remembers_the_first_non_finite_loss():
    m = train_utils.Meter("cpu")
    y, logits = torch.zeros(2, dtype=torch.long), torch.zeros(2, 3)
    for value in (1.0, float("inf"), float("nan")):
        m.update(torch.tensor(value), logits, y)
    with pytest.raises(train_utils.DivergenceError) as e:
        m.check()
    assert e.value.step == 1 and e.value.value == float("inf")


# ------------------------------------------------------------------ one resume policy
@pytest.mark.parametrize("which", ["search", "train"])
def test_resume_policy_is_one_for_both_scripts(data, tmp_path, which):
    go = search if which == "search" else train
    out = tmp_path / "run"
    go(data, out, "--amp", "off", "--stop-after", "1")
    with pytest.raises(USER_ERRORS, match=r"other settings: --amp off \(now bf16\)"):
        go(data, out, "--amp", "bf16", "--resume")
    go(data, out, "--amp", "off", "--resume", "--lr", "0.05", "--device", "cpu")  # both in the policy
    assert len(records(out)) == (3 if which == "search" else 2)
    assert "amp" not in scaffold.RESUMABLE and {"lr", "device", "channels_last"} <= scaffold.RESUMABLE
    assert scaffold.changed_flags({"amp": "off", "lr": 0.1}, {"amp": "bf16", "lr": 0.05}, scaffold.RESUMABLE) == [
        "--amp off (now bf16)"]


# ------------------------------------------------------------------ every CLI: one error line
BAD_INPUT = {
    "search_cifar.py": ["--B", "0"],
    "train_cifar.py": ["--epochs", "0"],
    "test_run.py": ["--arch-split", "5000", "--train-images", "100"],
    "visualize_cifar.py": ["out", "--checkpoint", "/nonexistent/search.pth"],
    "export_onnx.py": ["--genotype", "/nonexistent.json"],
    "-m utils.latency build": ["--threads", "0", "--B", "1", "--F", "64"],
    "-m utils.latency predict": ["--table", "/nonexistent.json", "--genotype", "proxyless_cifar"],
    "bench/memory.py": ["--B", "0"],
    "bench/step_cost.py": ["--batch", "0"],
    "bench/latency_predictor.py": ["--B", "0"],
    "bench/train_throughput.py": ["--batch", "0"],
    "bench/ddp_search.py": ["--batch-size", "3"],
}


@pytest.mark.parametrize("script", list(BAD_INPUT))
def test_every_cli_reports_bad_input_in_one_line(script, tmp_path):
    cmd = [sys.executable, *script.split(), *BAD_INPUT[script]]
    p = subprocess.run(cmd, cwd=tmp_path if script.startswith("-m") else ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-2000:]
    assert "Traceback" not in p.stdout + p.stderr
