"""SIGTERM (a cluster scheduler's notice before it kills a job) and Ctrl-C during a search or a training:
the run stops at the next step boundary, writes nothing of the stopped epoch, prints one line with the
epoch, the step, the last checkpoint and the --resume command, exits 128 + the signal's number, and the
resume ends like an uninterrupted run.  In this process (a signal sent at an exact step), in a
subprocess (the acceptance case: a real SIGTERM in mid-epoch), and under torchrun (one rank signalled,
every rank stops, rank 0 prints)."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import genotypes
from utils import train as train_utils
from utils.checkpoint import load_checkpoint
from utils.errors import run_cli
from utils.faults import StopFlag
from utils.run import Stopped
from utils.synthetic import write_synthetic_cifar
from tiny_runs import records, tiny_search, tiny_search_argv, tiny_train, write_tiny_data

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")
# a subprocess computes as this process does (conftest: one thread), and says nothing of the md5 sums
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
LINE = re.compile(r"interrupted \((SIGTERM|SIGINT)\) in epoch (\d+) after (\d+) of (\d+) steps; (\S+) holds "
                  r"epoch (\d+): continue with: (.*) --resume")


def signal_at_call(monkeypatch, k: int, signum: int) -> list:
    """The k-th weight step from now sends ``signum`` to this process (a signal in mid-step)."""
    real, calls = train_utils.weight_step, [0]

    def weight_step(*args, **settings):
        calls[0] += 1
        if calls[0] == k:
            signal.raise_signal(signum)  # to this thread: the handler has run when it returns
        return real(*args, **settings)

    monkeypatch.setattr(train_utils, "weight_step", weight_step)
    return calls


def same_state(a: Path, b: Path) -> bool:
    """Two checkpoints' model tensors (weights and alphas) are bitwise equal."""
    ma, mb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.fixture(autouse=True)
def default_handlers():
    """Python's own handlers for the test, whatever the test process inherited: a pytest started in the
    background of a script (``pytest &``, no job control) begins with SIGINT ignored, which StopFlag
    keeps ignored (test_an_ignored_signal_stays_ignored)."""
    before = {s: signal.getsignal(s) for s in StopFlag.SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


# ------------------------------------------------------------------ the flag
def test_an_ignored_signal_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    flag = StopFlag()
    flag.install()
    try:
        signal.raise_signal(signal.SIGINT)  # ignored: no handler runs, the flag stays down
        assert not flag(0) and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGTERM)  # the other signal is still the flag's
        assert flag(0) and flag.name == "SIGTERM"
    finally:
        flag.restore()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_stop_flag_sets_on_a_signal_and_restores_the_handlers():
    before = {s: signal.getsignal(s) for s in StopFlag.SIGNALS}
    flag = StopFlag()
    flag.install()
    try:
        assert not flag(0)
        signal.raise_signal(signal.SIGTERM)
        assert flag(1) and flag.name == "SIGTERM" and flag.signum == signal.SIGTERM
    finally:
        flag.restore()
    assert {s: signal.getsignal(s) for s in StopFlag.SIGNALS} == before


def test_a_second_ctrl_c_stops_at_once():
    flag = StopFlag()
    flag.install()
    try:
        signal.raise_signal(signal.SIGINT)
        assert flag(0)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        flag.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_outside_a_run_is_one_line(monkeypatch, capsys):
    class Parser:
        def parse_args(self):
            return None

    def main(args):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        run_cli(main, Parser())
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted\n"


# ------------------------------------------------------------------ in this process, at an exact step
def test_search_sigterm_mid_epoch_stops_at_the_step_and_resumes(tmp_path, monkeypatch):
    """(That the resume is bitwise an uninterrupted search: the subprocess test below.)"""
    data = write_tiny_data(tmp_path)
    out = tmp_path / "run"
    handlers = {s: signal.getsignal(s) for s in StopFlag.SIGNALS}
    signal_at_call(monkeypatch, 6, signal.SIGTERM)  # epoch 1: 4 weight steps; epoch 2's second step
    with pytest.raises(Stopped) as e:
        tiny_search(data, out, "--no-tensorboard")
    msg = str(e.value)
    m = LINE.fullmatch(msg)
    assert m, msg
    assert m.group(1, 2, 3, 4, 6) == ("SIGTERM", "2", "2", "4", "1") and m.group(5) == str(out / "checkpoint.pth")
    assert m.group(7).startswith("python search_cifar.py ") and f"--output {out}" in m.group(7)
    assert e.value.exit_code == 143 and e.value.prefix == ""
    assert {s: signal.getsignal(s) for s in StopFlag.SIGNALS} == handlers  # restored
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 1 and len(records(out)) == 1
    assert not (out / "genotype_final.json").exists()
    monkeypatch.undo()
    tiny_search(data, out, "--no-tensorboard", "--resume")
    assert [r["epoch"] for r in records(out)] == [1, 2, 3] and (out / "genotype_final.json").exists()


def test_training_ctrl_c_stops_and_resumes_exactly(tmp_path, monkeypatch):
    data = write_tiny_data(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = tiny_train(data, tmp_path / "a" / "full", "--no-tensorboard")
    out = tmp_path / "b" / "run"
    signal_at_call(monkeypatch, 3, signal.SIGINT)  # 2 steps per epoch: epoch 2's first step
    with pytest.raises(Stopped) as e:
        tiny_train(data, out, "--no-tensorboard")
    m = LINE.fullmatch(str(e.value))
    assert m and m.group(1, 2, 3, 4, 6) == ("SIGINT", "2", "1", "2", "1"), str(e.value)
    assert m.group(5) == str(out / "last.pth") and m.group(7).startswith("python train_cifar.py ")
    assert e.value.exit_code == 130 and load_checkpoint(out / "last.pth")["epoch"] == 1
    monkeypatch.undo()
    res = tiny_train(data, out, "--no-tensorboard", "--resume")
    assert res["finished"] and res["final_test_acc"] == full["final_test_acc"]
    assert same_state(out / "last.pth", tmp_path / "a" / "full" / "last.pth")


# ------------------------------------------------------------------ a real SIGTERM, in a subprocess
def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {path} appeared"
        assert time.monotonic() < end, f"no {path} after {timeout} s"
        time.sleep(0.02)


@pytest.mark.long
def test_search_subprocess_sigterm_prints_the_resume_command_that_then_finishes(tmp_path):
    """The acceptance case: SIGTERM once the first checkpoint is there (in epoch 2, 6 steps of a few
    tenths of a second each), then the printed command, run as printed, ends like an uninterrupted search."""
    data = tmp_path / "data"
    write_synthetic_cifar(data, per_batch=24, n_test=16, seed=0)  # 96 weight images: 6 steps of 16
    flags = ("--arch-split", "24", "--no-tensorboard")
    tiny_search(data, tmp_path / "full", *flags)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "search_cifar.py", *tiny_search_argv(data, out, *flags)], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out / "checkpoint.pth", proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stdout + stderr, stderr[-3000:]
    m = LINE.fullmatch(lines[0])
    assert m and m.group(1) == "SIGTERM" and int(m.group(4)) == 6, lines[0]
    epoch, saved = int(m.group(2)), int(m.group(6))
    assert saved == epoch - 1 == load_checkpoint(out / "checkpoint.pth")["epoch"] >= 1
    assert [r["epoch"] for r in records(out)] == list(range(1, saved + 1))
    command = shlex.split(m.group(7)) + ["--resume"]
    assert command[:2] == ["python", "search_cifar.py"]
    proc = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert same_state(out / "checkpoint.pth", tmp_path / "full" / "checkpoint.pth")
    assert genotypes.get(str(out / "genotype_final.json")) == genotypes.get(str(tmp_path / "full" / "genotype_final.json"))
    assert [r["epoch"] for r in records(out)] == [1, 2, 3]


# ------------------------------------------------------------------ torchrun: one rank signalled
def worker_pid(out: Path, rank: int) -> int | None:
    """The torchrun worker of this run (its --output is ``out``) whose RANK is ``rank``."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or str(out) not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                continue
            if f"RANK={rank}" in (proc / "environ").read_bytes().decode(errors="replace").split("\0"):
                return int(proc.name)
        except OSError:  # a process that ended while we looked
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
@pytest.mark.long
def test_torchrun_sigterm_to_one_rank_stops_every_rank(tmp_path):
    data = write_tiny_data(tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "search_cifar.py",
           *tiny_search_argv(data, out, "--no-tensorboard")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out / "checkpoint.pth", proc)
        pid = worker_pid(out, 1)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode != 0, (pid, stdout[-3000:] + stderr[-3000:])
    found = [ln for ln in (stdout + stderr).splitlines() if "interrupted (SIGTERM)" in ln]
    assert len(found) == 1, stdout[-3000:] + stderr[-3000:]  # rank 0 only
    m = LINE.search(found[0])
    assert m and m.group(7).startswith("torchrun --nproc_per_node=2 search_cifar.py "), found[0]
    assert int(m.group(6)) == load_checkpoint(out / "checkpoint.pth")["epoch"] == int(m.group(2)) - 1
    assert "exitcode  : 143" in stderr or "exitcode: 143" in stderr.replace(" ", ""), stderr[-3000:]
