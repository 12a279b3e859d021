"""One test per fault a new user hit: a split smaller than one batch, an unknown device, an unwritable
export path, and a diverged loss (search weights, search architecture, training), each of which must
end in one clear error and leave the run folder resumable."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import genotypes
from models import build_supernet
from utils import data as cifar
from utils import train as train_utils
from utils.checkpoint import load_checkpoint, save_genotype
from utils.device import DeviceError, resolve_device
from utils.errors import USER_ERRORS
from tiny_runs import records, tiny_search, tiny_train, write_tiny_data

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")


@pytest.fixture
def data(tmp_path):
    return write_tiny_data(tmp_path)


def run(data, out, *flags):
    return tiny_search(data, out, "--no-tensorboard", *flags)


def train(data, out, *flags):
    return tiny_train(data, out, "--no-tensorboard", *flags)


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


# ------------------------------------------------------------------ 1. a split smaller than one batch
def test_arch_split_smaller_than_one_batch_fails_before_training(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(USER_ERRORS) as e:
        run(data, out, "--arch-split", "16", "--arch-batch-size", "64")
    msg = str(e.value)
    assert "architecture split" in msg and "16" in msg and "64" in msg and "\n" not in msg, msg
    assert not (out / "log.jsonl").exists() and not (out / "checkpoint.pth").exists()
    assert not (out / "config.json").exists()  # nothing of a run was started


def test_weights_split_smaller_than_one_batch_is_one_clear_error(data, tmp_path):
    with pytest.raises(USER_ERRORS, match=r"weights split holds 64 images, fewer than one batch of 128") as e:
        run(data, tmp_path / "run", "--batch-size", "128")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_batch_loader_and_endless_refuse_a_loader_without_a_batch():
    split = cifar.Split(torch.zeros(40, 3, 32, 32, dtype=torch.uint8), torch.zeros(40, dtype=torch.long))
    with pytest.raises(cifar.DataError) as e:
        cifar.BatchLoader(split, 64, train=True, name="architecture split")
    assert "40" in str(e.value) and "64" in str(e.value) and "architecture split" in str(e.value)
    assert len(cifar.BatchLoader(split, 40, train=True)) == 1  # exactly one batch is fine

    class Empty:
        def __len__(self):
            return 0

        def __iter__(self):
            return iter(())

    with pytest.raises(cifar.DataError):
        next(cifar.endless(Empty()))  # not an endless loop of empty passes


# ------------------------------------------------------------------ 2. --device tpu
def test_resolve_device_refuses_tpu():
    with pytest.raises(DeviceError, match="tpu"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("script", ["search_cifar.py", "train_cifar.py"])
def test_device_tpu_is_one_error_line(script, tmp_path):
    proc = subprocess.run([sys.executable, script, "--device", "tpu", "--output", str(tmp_path / "x")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "tpu" in one_error_line(proc)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ 3. unwritable export path
def test_export_to_an_unwritable_path_fails_fast(tmp_path):
    save_genotype(genotypes.uniform(1, 64, "sep_3x3"), tmp_path / "g.json")
    (tmp_path / "afile").write_text("a file, not a folder")  # unwritable even for root
    target = tmp_path / "afile" / "dir" / "model.onnx"
    proc = subprocess.run([sys.executable, "export_onnx.py", "--genotype", str(tmp_path / "g.json"),
                           "--output", str(target), "--latency-runs", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "--output" in one_error_line(proc)
    assert not target.exists() and (tmp_path / "afile").read_text() == "a file, not a folder"
    assert "wrote" not in proc.stdout  # failed before the export


# ------------------------------------------------------------------ 4. divergence
def nan_loss_on_call(monkeypatch, k: int):
    """Every nn.CrossEntropyLoss call from the k-th (counted from now) returns nan."""
    real, calls = nn.CrossEntropyLoss.forward, [0]

    def forward(self, logits, y):
        calls[0] += 1
        loss = real(self, logits, y)
        return loss * float("nan") if calls[0] >= k else loss

    monkeypatch.setattr(nn.CrossEntropyLoss, "forward", forward)
    return calls


def test_search_divergence_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(data, out, "--stop-after", 1)  # the warm-up epoch: checkpoint.pth holds epoch 1
    # epoch 2: weight step 1 (call 1), 2 (call 2), architecture step (call 3), weight step 3 (call 4)
    calls = nan_loss_on_call(monkeypatch, 4)
    with pytest.raises(USER_ERRORS) as e:
        run(data, out, "--resume")
    msg = str(e.value)
    assert calls[0] == 4  # stopped at the first nan, not an epoch later
    for part in ("epoch 2", "training loss", "nan", "step 3", "still holds epoch 1", "--resume", "--lr"):
        assert part in msg, (part, msg)
    assert "\n" not in msg
    ckpt = load_checkpoint(out / "checkpoint.pth", kind="search")
    assert ckpt["epoch"] == 1
    build_supernet(1, 64).load_state_dict(ckpt["model"])
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(records(out)) == 1
    monkeypatch.undo()
    run(data, out, "--resume", "--lr", "0.05")
    assert [r["epoch"] for r in records(out)] == [1, 2, 3] and (out / "genotype_final.json").exists()
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 3


def test_search_patching_weight_step_also_diverges(data, tmp_path, monkeypatch):
    """train_one_epoch looks weight_step up as a module global: a nan there stops the search too."""
    out = tmp_path / "run"
    run(data, out, "--stop-after", 1)
    real = train_utils.weight_step
    monkeypatch.setattr(train_utils, "weight_step",
                        lambda *a, **k: (lambda l, o: (l * float("nan"), o))(*real(*a, **k)))
    with pytest.raises(USER_ERRORS, match=r"epoch 2.*training loss is nan at step 1.*still holds epoch 1.*--resume"):
        run(data, out, "--resume")
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 1 and len(records(out)) == 1


def _nan_loss(self, loss):
    return loss * float("nan")


def _nan_alpha(self, loss):  # the loss stays finite: only the alpha check can stop this one
    with torch.no_grad():
        self.supernet.arch_parameters()[0][1] = float("nan")
    return loss


@pytest.mark.parametrize("break_step, what", [(_nan_loss, "architecture loss"),
                                              (_nan_alpha, "architecture parameter alpha")])
def test_architecture_divergence_names_what_diverged_and_arch_lr(data, tmp_path, monkeypatch, break_step, what):
    from utils.architect import Architect
    real = Architect.step

    def step(self, x, y):
        loss, logits = real(self, x, y)
        return break_step(self, loss), logits

    monkeypatch.setattr(Architect, "step", step)
    out = tmp_path / "run"
    with pytest.raises(USER_ERRORS) as e:
        run(data, out)  # epoch 1 is the warm-up (no architecture step) and is saved
    msg = str(e.value)
    for part in ("epoch 2", what, "nan", "still holds epoch 1", "--resume", "--arch-lr"):
        assert part in msg, (part, msg)
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 1 and len(records(out)) == 1


def test_training_divergence_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = train(data, out, "--stop-after", 1)
    assert first["finished"] is False
    nan_loss_on_call(monkeypatch, 2)  # weight step 2 of epoch 2 (2 steps of 16 per epoch)
    with pytest.raises(USER_ERRORS) as e:
        train(data, out, "--resume")
    msg = str(e.value)
    for part in ("epoch 2", "training loss", "nan", "step 2", "last.pth still holds epoch 1", "--resume", "--lr"):
        assert part in msg, (part, msg)
    ckpt = load_checkpoint(out / "last.pth", kind="train")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(records(out)) == 1 and not (out / "results.json").exists()
    monkeypatch.undo()
    res = train(data, out, "--resume", "--lr", "0.05")
    assert res["finished"] and [r["epoch"] for r in records(out)] == [1, 2]
    assert (out / "results.json").exists() and load_checkpoint(out / "last.pth")["epoch"] == 2


def test_meter_records_the_first_non_finite_update():
    m = train_utils.Meter("cpu")
    y, logits = torch.zeros(2, dtype=torch.long), torch.zeros(2, 3)
    m.update(torch.tensor(1.0), logits, y)
    m.check()  # finite so far
    m.update(torch.tensor(float("inf")), logits, y)
    m.update(torch.tensor(float("nan")), logits, y)
    with pytest.raises(train_utils.DivergenceError) as e:
        m.check()
    assert e.value.step == 1 and e.value.value == float("inf") and e.value.what == "training loss"
    assert "training loss is inf at step 2" in str(e.value)
