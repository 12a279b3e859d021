"""One resume policy for search and training (utils/run.py RESUMABLE): a resume may change where and
how fast a run goes and the step sizes (--lr, --arch-lr, --grad-clip); every other flag, --amp
included, must be as the checkpoint's run had it."""
import pytest

import train_cifar
from utils import run as scaffold
from utils.checkpoint import load_checkpoint
from utils.errors import USER_ERRORS
from tiny_runs import records, tiny_search, tiny_train, write_tiny_data

pytestmark = pytest.mark.filterwarnings("ignore:.*official CIFAR-10 md5 sums")


@pytest.fixture
def data(tmp_path):
    return write_tiny_data(tmp_path)


def train(data, out, *flags):
    return tiny_train(data, out, *flags, epochs=3)


SCRIPTS = {  # runner, checkpoint name, the script's --channels-last default, another value
    "search": (tiny_search, "checkpoint.pth", "off", "on"),
    "train": (train, "last.pth", "auto", "off"),
}


@pytest.mark.parametrize("which", list(SCRIPTS))
def test_changed_amp_is_refused(data, tmp_path, which):
    go, ckpt, _, _ = SCRIPTS[which]
    out = tmp_path / "run"
    go(data, out, "--amp", "off", "--no-tensorboard", "--stop-after", 1)
    before = (out / ckpt).read_bytes()
    with pytest.raises(USER_ERRORS) as e:
        go(data, out, "--amp", "bf16", "--no-tensorboard", "--resume")
    msg = str(e.value)
    assert "--amp off (now bf16)" in msg and "other settings" in msg, msg
    assert "--lr" not in msg.split(";")[0]  # only the flags that changed are named
    assert (out / ckpt).read_bytes() == before and len(records(out)) == 1  # nothing touched


@pytest.mark.parametrize("which", list(SCRIPTS))
def test_changed_lr_tensorboard_and_channels_last_are_accepted(data, tmp_path, which, capsys):
    go, ckpt, default, channels_last = SCRIPTS[which]
    out = tmp_path / "run"
    go(data, out, "--amp", "off", "--stop-after", 1)  # TensorBoard on
    assert (out / "tb").is_dir()
    capsys.readouterr()
    go(data, out, "--amp", "off", "--resume", "--lr", "0.05", "--stop-after", 1)
    said = capsys.readouterr().out
    assert "resuming" in said and "--lr 0.1 (now 0.05)" in said, said
    saved = load_checkpoint(out / ckpt)
    assert saved["epoch"] == 2 and saved["args"]["lr"] == 0.05
    go(data, out, "--amp", "off", "--resume", "--lr", "0.05", "--no-tensorboard", "--channels-last", channels_last)
    said = capsys.readouterr().out
    assert "--tensorboard True (now False)" in said and f"--channels-last {default} (now {channels_last})" in said, said
    assert [r["epoch"] for r in records(out)] == [1, 2, 3]
    saved = load_checkpoint(out / ckpt)
    assert saved["epoch"] == 3 and saved["args"]["tensorboard"] is False
    assert saved["args"]["channels_last"] == channels_last
    assert (out / ("genotype_final.json" if which == "search" else "results.json")).exists()


@pytest.mark.parametrize("which", list(SCRIPTS))
def test_changed_seed_is_refused(data, tmp_path, which):
    """Any flag outside the policy, not just --amp: the seed decides the batches a resumed run draws."""
    go = SCRIPTS[which][0]
    out = tmp_path / "run"
    go(data, out, "--amp", "off", "--no-tensorboard", "--stop-after", 1)
    with pytest.raises(USER_ERRORS, match=r"--seed \S+ \(now 7\)"):
        go(data, out, "--amp", "off", "--no-tensorboard", "--resume", "--seed", "7")


def test_resumable_set_and_changed_flags():
    assert "amp" not in scaffold.RESUMABLE
    assert {"lr", "arch_lr", "grad_clip", "tensorboard", "channels_last", "device", "output"} <= scaffold.RESUMABLE
    for fixed in ("seed", "batch_size", "epochs", "B", "F", "candidates", "float64", "weight_decay"):
        assert fixed not in scaffold.RESUMABLE, fixed
    old = {"amp": "off", "lr": 0.1, "seed": 0, "tensorboard": True}
    now = {"amp": "bf16", "lr": 0.05, "seed": 0, "tensorboard": False}
    assert scaffold.changed_flags(old, now, scaffold.RESUMABLE) == ["--amp off (now bf16)"]
    assert scaffold.changed_flags(old, dict(old), scaffold.RESUMABLE) == []
    assert scaffold.changed_flags({"x_y": 1}, {}, frozenset()) == ["--x-y 1 (now None)"]  # a flag one side lacks
    # the scripts' own additions: training may also change evaluation / speed flags, not the recipe
    assert {"eval_batch_size", "compile"} <= train_cifar.MAY_CHANGE and "label_smoothing" not in train_cifar.MAY_CHANGE


def test_a_checkpoint_older_than_a_flag_resumes_as_it_ran(data, tmp_path):
    """A search checkpointed before --derive and --latency-stat existed resumes (it ran as argmax /
    median_ms, search_cifar.ADDED_FLAGS); one that asks for something else is still refused."""
    import search_cifar
    from utils.checkpoint import save_checkpoint

    def strip():
        saved = load_checkpoint(out / "checkpoint.pth")
        for flag in search_cifar.ADDED_FLAGS:
            del saved["args"][flag]
        save_checkpoint(saved, out / "checkpoint.pth")

    out = tmp_path / "run"
    tiny_search(data, out, "--no-tensorboard", "--stop-after", 1)
    strip()
    tiny_search(data, out, "--no-tensorboard", "--resume")
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 3 and (out / "genotype_final.json").is_file()
    strip()
    with pytest.raises(USER_ERRORS, match=r"--latency-stat median_ms \(now min_ms\)"):
        tiny_search(data, out, "--no-tensorboard", "--resume", "--latency-stat", "min_ms")
