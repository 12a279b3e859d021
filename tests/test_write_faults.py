"""Failed writes, injected (no root needed): every path the project writes, with an OSError of a full
disk, a quota, a read-only filesystem or a forbidden folder.  Each ends in one line that names the file,
the OS's reason and what to do (for a search or a training: the --resume command), leaves no half-written
or temporary file, and keeps the last checkpoint byte for byte.  tests/test_disk_full.py does the same on
a real, full filesystem where the machine allows mounting one."""
import builtins
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import export_onnx
import genotypes
import visualize_cifar
from utils import checkpoint as checkpoint_mod
from utils import faults
from utils import latency as latency_mod
from utils.checkpoint import atomic_write, load_checkpoint, save_checkpoint, save_genotype
from utils.errors import USER_ERRORS, UserError
from utils.faults import WriteError, append_line, check_writable
from utils.latency_table import LatencyTable
from tiny_runs import records, tiny_search, tiny_train, write_tiny_data

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
REASON = {errno.ENOSPC: "No space left on device (ENOSPC)", errno.EDQUOT: "Disk quota exceeded (EDQUOT)",
          errno.EROFS: "Read-only file system (EROFS)", errno.EACCES: "Permission denied (EACCES)"}


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def raising(code: int):
    """A stand-in for open, os.replace, os.fsync, tempfile.TemporaryFile ... that fails with ``code``."""
    def fail(*args):
        raise oserror(code)
    return fail


class _Limited:
    """A file that takes ``room`` more bytes, then raises (after writing what fits, as a disk does)."""

    def __init__(self, f, disk: "FullDisk"):
        self.f, self.disk = f, disk

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        fits = data[:max(self.disk.room, 0)]
        if len(fits):
            self.f.write(fits)
            self.f.flush()
        self.disk.room -= len(fits)
        if len(fits) < len(data):
            raise oserror(self.disk.code)
        return len(data)

    def __getattr__(self, name):  # flush, fileno, seek, truncate, close: the real file's
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class FullDisk:
    """An ``open`` for the project's writers (patched into utils.faults and utils.checkpoint): files
    opened for writing whose name matches ``match`` and that come after the first ``skip`` of them get
    ``room`` bytes in all, then an OSError ``code``."""

    def __init__(self, match: str = "", room: int = 0, code: int = errno.ENOSPC, skip: int = 0):
        self.match, self.room, self.code, self.skip = match, room, code, skip

    def __call__(self, file, mode="r", buffering=-1):
        f = builtins.open(file, mode, buffering)
        if not any(c in mode for c in "wa") or self.match not in Path(file).name:
            return f
        if self.skip:
            self.skip -= 1
            return f
        return _Limited(f, self)

    def install(self, monkeypatch) -> "FullDisk":
        for mod in (faults, checkpoint_mod):
            monkeypatch.setattr(mod, "open", self, raising=False)
        return self


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def data(tmp_path):
    return write_tiny_data(tmp_path)


def search(data, out, *flags):
    return tiny_search(data, out, "--no-tensorboard", *flags)


# ------------------------------------------------------------------ the writers
def test_atomic_write_keeps_the_old_file_whatever_fails(tmp_path, monkeypatch):
    """A failure at each stage of the atomic write: the previous file as it was, no temporary file,
    one WriteError naming the file, the OS's reason and a remedy.  torch.save's own report of a full
    disk (RuntimeError "unexpected pos") becomes the OSError it hides."""
    path = tmp_path / "run" / "checkpoint.pth"
    save_checkpoint({"w": torch.arange(10.0)}, path)
    before = sha(path)
    big = {"w": torch.randn(100_000)}
    stages = {
        "open": (errno.EACCES, (checkpoint_mod, "open"), "give yourself write permission"),
        "torch.save mid-file": (errno.ENOSPC, None, "free some space"),
        "fsync": (errno.EDQUOT, (checkpoint_mod.os, "fsync"), "quota"),
        "rename": (errno.EROFS, (faults.os, "replace"), "read-write"),
    }
    for stage, (code, target, remedy) in stages.items():
        if target is None:
            FullDisk(room=5000).install(monkeypatch)
        else:
            monkeypatch.setattr(*target, raising(code), raising=False)
        with pytest.raises(WriteError) as e:
            save_checkpoint(big, path)
        msg = str(e.value)
        assert str(path) in msg and REASON[code] in msg and remedy in msg and "\n" not in msg, (stage, msg)
        assert sha(path) == before and no_temporary_files(tmp_path), stage
        monkeypatch.undo()
    save_checkpoint(big, path)  # and with the disk back, it writes
    assert torch.equal(load_checkpoint(path)["w"], big["w"])


def test_append_line_leaves_no_half_record(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    FullDisk(match="log.jsonl", room=7).install(monkeypatch)  # a part of the record fits
    with pytest.raises(WriteError, match=r"log.jsonl: No space left on device \(ENOSPC\)"):
        append_line(log, json.dumps({"epoch": 3, "loss": 1.5}))
    assert log.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    monkeypatch.undo()
    append_line(log, '{"epoch": 3}')
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1, 2, 3]


def test_check_writable_refuses_without_creating_anything(tmp_path, monkeypatch):
    check_writable(tmp_path / "new" / "deeper")  # a folder that would be made: its parent is tested
    assert not (tmp_path / "new").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(WriteError, match=r"Not a directory \(ENOTDIR\)"):
        check_writable(tmp_path / "afile" / "run")
    monkeypatch.setattr(faults.tempfile, "TemporaryFile", lambda dir: raising(errno.EACCES)())
    with pytest.raises(WriteError, match=r"Permission denied \(EACCES\); give yourself write permission there"):
        check_writable(tmp_path)


# ------------------------------------------------------------------ an unwritable run folder
@pytest.mark.parametrize("script", ["search_cifar.py", "train_cifar.py"])
def test_unwritable_run_folder_is_refused_before_any_data_is_loaded(script, tmp_path):
    """--data names a folder that does not exist: had the data been loaded first, its error would come."""
    (tmp_path / "afile").write_text("a file, not a folder")  # unwritable even for root
    proc = subprocess.run([sys.executable, script, "--output", str(tmp_path / "afile" / "run"), "--data",
                           str(tmp_path / "nodata"), "--no-download"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: cannot write") and "ENOTDIR" in lines[0] and "--output" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr and not (tmp_path / "nodata").exists()


def test_forbidden_run_folder_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.setattr(faults.tempfile, "TemporaryFile", lambda dir: raising(errno.EACCES)())
    with pytest.raises(USER_ERRORS, match=r"Permission denied \(EACCES\).*or choose another --output"):
        search(data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ a search's files
def test_search_checkpoint_on_a_full_disk_keeps_the_last_one_and_resumes_exactly(data, tmp_path, monkeypatch):
    full = search(data, tmp_path / "full")
    out = tmp_path / "run"
    search(data, out, "--stop-after", 1)
    before = sha(out / "checkpoint.pth")
    FullDisk(match="checkpoint.pth", room=20_000).install(monkeypatch)  # epoch 2's checkpoint stops part-way
    with pytest.raises(USER_ERRORS) as e:
        search(data, out, "--resume")
    msg = str(e.value)
    for part in (f"cannot write {out / 'checkpoint.pth'}: {REASON[errno.ENOSPC]}", "free some space on that disk",
                 "then continue from epoch 1", "python search_cifar.py", f"--output {out}", "--resume"):
        assert part in msg, (part, msg)
    assert "\n" not in msg and sha(out / "checkpoint.pth") == before and no_temporary_files(out)
    assert [r["epoch"] for r in records(out)] == [1, 2]  # epoch 2's record came first; a resume drops it
    monkeypatch.undo()
    resumed = search(data, out, "--resume")
    assert torch.equal(resumed["alphas"], full["alphas"]) and resumed["genotype"] == full["genotype"]
    assert [r["epoch"] for r in records(out)] == [1, 2, 3]


@pytest.mark.long
def test_search_log_and_genotype_write_failures_each_resume(data, tmp_path, monkeypatch):
    """One run, three failures: epoch 2's log record (part of it fits), epoch 2's genotype.json (its
    record is in the log: the resume drops it), and genotype_final.json after the last checkpoint."""
    out = tmp_path / "run"
    search(data, out, "--stop-after", 1)
    before, log_before = sha(out / "checkpoint.pth"), (out / "log.jsonl").read_bytes()
    for name, code, saved in (("log.jsonl", errno.ENOSPC, 1), ("genotype.json", errno.EROFS, 1),
                              ("genotype_final.json", errno.EDQUOT, 3)):
        FullDisk(match=name, room=10, code=code).install(monkeypatch)
        with pytest.raises(USER_ERRORS) as e:
            search(data, out, "--resume")
        msg = str(e.value)
        assert f"cannot write {out / name}: {REASON[code]}" in msg and "\n" not in msg, msg
        assert f"then continue from epoch {saved}" in msg and msg.endswith("--resume"), msg
        assert load_checkpoint(out / "checkpoint.pth")["epoch"] == saved and no_temporary_files(out)
        if name == "log.jsonl":
            assert (out / "log.jsonl").read_bytes() == log_before and sha(out / "checkpoint.pth") == before
        monkeypatch.undo()
    done = search(data, out, "--resume")
    assert [r["epoch"] for r in records(out)] == [1, 2, 3]
    assert genotypes.get(str(out / "genotype_final.json")) == done["genotype"]


def test_write_failure_before_the_first_checkpoint_says_start_again(data, tmp_path, monkeypatch):
    FullDisk(match="config.json", code=errno.ENOSPC).install(monkeypatch)
    with pytest.raises(USER_ERRORS) as e:
        search(data, tmp_path / "run")
    msg = str(e.value)
    assert "config.json" in msg and "then start again with: python search_cifar.py" in msg
    assert "--resume" not in msg


def test_tensorboard_failure_warns_once_and_the_search_goes_on(data, tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter
    monkeypatch.setattr(SummaryWriter, "flush", raising(errno.ENOSPC))
    out = tmp_path / "run"
    tiny_search(data, out, "--stop-after", 2)  # TensorBoard on
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "TensorBoard" in ln]
    assert len(warnings) == 1 and "No space left on device (ENOSPC)" in warnings[0], err
    assert [r["epoch"] for r in records(out)] == [1, 2] and load_checkpoint(out / "checkpoint.pth")["epoch"] == 2


# ------------------------------------------------------------------ a training's files
@pytest.mark.parametrize("name, code, saved", [("last.pth", errno.ENOSPC, 1), ("results.json", errno.EDQUOT, 2)])
def test_training_write_failures_resume(data, tmp_path, monkeypatch, name, code, saved):
    out = tmp_path / "run"
    tiny_train(data, out, "--no-tensorboard", "--stop-after", 1)
    FullDisk(match=name, room=100, code=code).install(monkeypatch)
    with pytest.raises(USER_ERRORS) as e:
        tiny_train(data, out, "--no-tensorboard", "--resume")
    msg = str(e.value)
    for part in (f"cannot write {out / name}: {REASON[code]}", f"then continue from epoch {saved}",
                 "python train_cifar.py", "--resume"):
        assert part in msg, (part, msg)
    assert load_checkpoint(out / "last.pth")["epoch"] == saved and no_temporary_files(out)
    monkeypatch.undo()
    res = tiny_train(data, out, "--no-tensorboard", "--resume")
    results = json.loads((out / "results.json").read_text())
    assert res["finished"] and results["final_test_acc"] == load_checkpoint(out / "last.pth")["test_acc"]
    assert [r["epoch"] for r in records(out)] == [1, 2]


# ------------------------------------------------------------------ the other writers
def test_export_on_a_full_disk_leaves_no_half_model(tmp_path, monkeypatch):
    def export(model, path, opset, exporter):
        path.write_bytes(b"half a model")
        raise oserror(errno.ENOSPC)

    monkeypatch.setattr(export_onnx, "export", export)
    target = tmp_path / "out" / "model.onnx"
    args = export_onnx.get_args_parser().parse_args(["--genotype", "proxyless_cifar", "--output", str(target)])
    monkeypatch.setattr(export_onnx, "load_network", lambda g, c, flags=None, stages=None: genotypes_net())
    with pytest.raises(UserError) as e:
        export_onnx.main(args)
    assert f"--output: cannot write {target}: {REASON[errno.ENOSPC]}" in str(e.value)
    assert "choose another --output" in str(e.value)
    assert not target.exists() and no_temporary_files(tmp_path)


def genotypes_net():
    from models import build_net
    return build_net(genotypes.uniform(1, 64, "sep_3x3"), 10).eval()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed: no pictures are rendered")
def test_pictures_on_a_full_disk(tmp_path, monkeypatch):
    FullDisk(match=".png", room=100).install(monkeypatch)
    stem = tmp_path / "pics" / "arch"
    args = visualize_cifar.get_args_parser().parse_args([str(stem), "--genotype", "proxyless_cifar"])
    with pytest.raises(UserError, match=rf"cannot write {stem}_cell.png: No space left on device \(ENOSPC\)"
                                        r".*or choose another output_name"):
        visualize_cifar.main(args)
    assert not list((tmp_path / "pics").glob("*.png")) and no_temporary_files(tmp_path)


def test_latency_table_write_failures(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    parser = latency_mod.get_args_parser()
    measured = []
    monkeypatch.setattr(latency_mod, "build_table", lambda *args, **settings: measured.append(1) or LatencyTable())
    with pytest.raises(UserError, match=r"ENOTDIR.*--out"):  # refused before measuring
        latency_mod.main(parser.parse_args(["build", "--out", str(tmp_path / "afile" / "t.json")]))
    assert measured == []
    FullDisk(match="t.json", code=errno.EDQUOT).install(monkeypatch)
    with pytest.raises(UserError, match=r"t.json: Disk quota exceeded \(EDQUOT\); free some of your disk quota"):
        latency_mod.main(parser.parse_args(["build", "--out", str(tmp_path / "t.json")]))
    assert not (tmp_path / "t.json").exists() and no_temporary_files(tmp_path)


def test_image_folder_cache_on_a_full_disk_warns_and_loads(tmp_path, monkeypatch):
    from PIL import Image
    from utils.data import DataWarning
    from utils.datasets import load_dataset
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "img" / split / c).mkdir(parents=True)
            Image.new("RGB", (12, 12), (40, 200 if c == "a" else 40, 40)).save(tmp_path / "img" / split / c / "0.png")
    FullDisk(match=".pnas_cache", room=100).install(monkeypatch)
    with pytest.warns(DataWarning, match=r"no cache: cannot write .*No space left on device \(ENOSPC\)"):
        train, _, info = load_dataset("folder", tmp_path / "img", image_size=8)
    assert len(train) == 2 and info.num_classes == 2
    assert not list((tmp_path / "img").glob(".pnas_cache*"))


def test_atomic_write_of_text_names_the_file(tmp_path, monkeypatch):
    """genotype files, config.json, results.json, latency tables: the same writer."""
    FullDisk(code=errno.EROFS).install(monkeypatch)
    with pytest.raises(WriteError, match=r"g.json: Read-only file system \(EROFS\); remount that filesystem"):
        save_genotype(genotypes.uniform(1, 64, "sep_3x3"), tmp_path / "g.json")
    with pytest.raises(WriteError):
        atomic_write(tmp_path / "x.bin", lambda f: f.write(b"abc"))
    assert not list(tmp_path.iterdir())
