"""Tiny searches and trainings on 80 synthetic images, shared by the tests that stop, break and resume
runs (test_faults.py, test_resume_policy.py, test_write_faults.py, test_signals.py, test_disk_full.py).
A plain module beside the tests: pytest puts tests/ on sys.path (rootdir conftest, default import
mode), so ``from tiny_runs import ...`` works there.  Also ``randomize``: weights that make a wrong
supernet -> derived-network mapping visible (test_mixed_op.py, test_nb201.py)."""
import json
from pathlib import Path

import torch
import torch.nn as nn

import genotypes
import search_cifar
import train_cifar
from utils.checkpoint import save_genotype
from utils.synthetic import write_synthetic_cifar


def write_tiny_data(root: Path) -> Path:
    """5 x 16 training and 16 test images: two weight batches and one architecture batch of 16."""
    write_synthetic_cifar(root / "data", per_batch=16, n_test=16, seed=0)
    return root / "data"


def tiny_search_argv(data, out, *flags) -> list[str]:
    """B=1 F=64, one warm-up + two search epochs, an architecture step every second weight step
    (flags given later win, as argparse has it)."""
    return ["--data", str(data), "--no-download", "--arch-split", "16", "--B", "1", "--F", "64",
            "--warmup-epochs", "1", "--epochs", "2", "--batch-size", "16", "--arch-batch-size", "16",
            "--arch-every", "2", "--output", str(out), "--no-progress", "--seed", "3", *map(str, flags)]


def tiny_search(data, out, *flags):
    """search_cifar.main on tiny_search_argv, in this process."""
    return search_cifar.main(search_cifar.get_args_parser().parse_args(tiny_search_argv(data, out, *flags)))


def tiny_train(data, out, *flags, epochs: int = 2):
    """An all-sep_3x3 B=1 F=64 network on 32 images (two steps of 16 per epoch)."""
    g = out.parent / "g.json"
    save_genotype(genotypes.uniform(1, 64, "sep_3x3"), g)
    argv = ["--data", str(data), "--no-download", "--no-progress", "--batch-size", "16", "--genotype", str(g),
            "--train-subset", "32", "--epochs", str(epochs), "--output", str(out), *map(str, flags)]
    return train_cifar.main(train_cifar.get_args_parser().parse_args(argv))


def records(out):
    """The run's log.jsonl as a list of dicts."""
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


@torch.no_grad()
def randomize(net: nn.Module) -> None:
    """Random BN statistics and affine weights, linear biases and alpha, so that a wrong weight mapping
    (supernet -> derived network) shows in the output."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.3)
        elif isinstance(m, nn.Linear):
            m.bias.normal_(0, 0.3)
    if hasattr(net, "alpha"):
        net.alpha.normal_(0, 1)
