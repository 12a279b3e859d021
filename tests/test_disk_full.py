"""A full disk for real: a small tmpfs, mounted for the test (root can mount one; elsewhere these tests
skip).  A search whose disk fills before its second checkpoint ends with one `error:` line and no
traceback, its first checkpoint byte for byte as it was, and after space is freed `--resume` ends like a
search that never stopped; a read-only filesystem is refused before any data is loaded; TensorBoard on
a full disk warns once, without its writer thread's traceback.  tests/test_write_faults.py injects the
same faults where no filesystem can be mounted."""
import errno
import hashlib
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from utils.checkpoint import load_checkpoint
from utils.errors import USER_ERRORS
from utils.runlog import EpochLog
from tiny_runs import records, tiny_search, tiny_search_argv, tiny_train, write_tiny_data

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")


class SmallDisk:
    """A tmpfs at ``path``: ``mount(kib)`` (again: remounted at the new size), ``read_only()``."""

    def __init__(self, path: Path):
        self.path, self.mounted = path, False

    def _mount(self, options: str) -> None:
        cmd = ["mount", "-o", f"remount,{options}", str(self.path)] if self.mounted else \
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            if self.mounted:
                raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        self.mounted = True

    def mount(self, kib: int) -> Path:
        self._mount(f"size={kib}k")
        return self.path

    def read_only(self) -> None:
        self._mount("ro")

    def fill(self) -> None:
        """Write a filler file until not one more byte fits."""
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            for chunk in (1 << 20, 4096, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * chunk)
                    except OSError as e:
                        assert e.errno == errno.ENOSPC
                        break
        finally:
            os.close(fd)


@pytest.fixture
def disk(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    d = SmallDisk(tmp_path / "disk")
    d.path.mkdir()
    yield d
    if d.mounted:
        subprocess.run(["umount", str(d.path)], check=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.long
def test_search_whose_disk_fills_before_its_second_checkpoint(tmp_path, disk):
    data = write_tiny_data(tmp_path)
    ref = tmp_path / "ref"  # an uninterrupted search (TensorBoard on, as by default), to size the disk
    tiny_search(data, ref, "--stop-after", 1)
    first = (ref / "checkpoint.pth").stat().st_size
    full = tiny_search(data, ref, "--resume")
    last = (ref / "checkpoint.pth").stat().st_size
    rest = sum(p.stat().st_size for p in ref.rglob("*") if p.is_file() and p.name != "checkpoint.pth")
    # room for the first checkpoint and every other file, and half of the second checkpoint's temporary file
    out = disk.mount(4 * math.ceil((first + rest + last // 2 + 65536) / 4096)) / "run"

    proc = subprocess.Popen([sys.executable, "search_cifar.py", *tiny_search_argv(data, out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "checkpoint.pth").exists() and proc.poll() is None:
            time.sleep(0.02)
        seen = sha(out / "checkpoint.pth")  # as it was written after epoch 1 (renamed into place whole)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    lines = stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    assert lines[0].startswith(f"error: cannot write {out / 'checkpoint.pth'}: No space left on device (ENOSPC); "
                               "free some space on that disk, then continue from epoch 1"), lines[0]
    assert lines[0].endswith(" --resume") and "python search_cifar.py" in lines[0]
    assert sha(out / "checkpoint.pth") == seen and load_checkpoint(out / "checkpoint.pth")["epoch"] == 1
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # the half-written temporary file is gone
    assert [r["epoch"] for r in records(out)] == [1, 2]  # whole records (epoch 2's is dropped on resume)

    disk.mount(64 * 1024)  # space freed
    resumed = tiny_search(data, out, "--resume")
    assert torch.equal(resumed["alphas"], full["alphas"]) and resumed["genotype"] == full["genotype"]
    assert [r["epoch"] for r in records(out)] == [1, 2, 3]


def test_resume_onto_a_full_disk_is_refused_at_once(tmp_path, disk):
    data = write_tiny_data(tmp_path)
    out = disk.mount(8 * 1024) / "run"
    tiny_search(data, out, "--no-tensorboard", "--stop-after", 1)
    before = sha(out / "checkpoint.pth")
    disk.fill()
    with pytest.raises(USER_ERRORS, match=rf"cannot write {out}: No space left on device \(ENOSPC\); free some "
                                          r"space on that disk, or choose another --output"):
        tiny_search(data, out, "--no-tensorboard", "--resume")
    assert sha(out / "checkpoint.pth") == before


@pytest.mark.parametrize("run", [tiny_search, tiny_train])
def test_read_only_filesystem_is_refused_before_any_data_is_loaded(tmp_path, disk, run):
    disk.mount(1024)
    disk.read_only()
    with pytest.raises(USER_ERRORS, match=r"Read-only file system \(EROFS\); remount that filesystem read-write, "
                                          r"or choose another --output") as e:
        run(tmp_path / "no-data-here", disk.path)  # (the data would be an error of its own)
    assert str(disk.path) in str(e.value)


def test_tensorboard_on_a_full_disk_warns_once_without_a_thread_traceback(tmp_path, disk, capfd):
    log = EpochLog(disk.mount(1024) / "run")  # TensorBoard on
    disk.fill()
    for step in (1, 2):
        log.tensorboard(lambda w: w.add_histogram("h", torch.randn(100_000), step))
    time.sleep(0.2)  # TensorBoard's writer thread has ended with the failure
    log.close()
    err = capfd.readouterr().err
    assert err.count("warning: TensorBoard is off") == 1 and "No space left on device (ENOSPC)" in err, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
