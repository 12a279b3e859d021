import os
from pathlib import Path

import pytest
import torch

# one thread: tiny test networks gain nothing from two, and two spin-waiting threads are slow on a busy machine
torch.set_num_threads(1)


@pytest.fixture
def synthetic_data(tmp_path):
    """A tiny CIFAR-format folder (5 x 40 train images, 40 test images), made by the test."""
    from utils.synthetic import write_synthetic_cifar
    write_synthetic_cifar(tmp_path / "data", per_batch=40, n_test=40, seed=0)
    return tmp_path / "data"


@pytest.fixture
def real_data_dir():
    """The folder named by PNAS_DATA (holding cifar-10-batches-py); the test skips when unset."""
    d = os.environ.get("PNAS_DATA")
    if not d or not (Path(d) / "cifar-10-batches-py").is_dir():
        pytest.skip("PNAS_DATA does not point at a folder holding cifar-10-batches-py")
    return Path(d)


@pytest.fixture
def reference_dir():
    """The authors' released configs (PNAS_REFERENCE); the test skips when unset."""
    d = os.environ.get("PNAS_REFERENCE")
    if not d or not Path(d).is_dir():
        pytest.skip("PNAS_REFERENCE does not point at the reference folder")
    return Path(d)
