"""CIFAR-10 loading, the weights/architecture split, and the batched loader (data made by the tests)."""
import warnings

import pytest
import torch

from utils.data import (BATCHES_DIR, BatchLoader, DataError, DataWarning, Split, augment, load_cifar10, normalize,
                        split_train, take)


def _indexed_split(n: int) -> Split:
    """Labels are the image indices, so splits and shards can be checked by their labels."""
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 32, 32).clone()
    return Split(images, torch.arange(n))


def _load(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # synthetic files never match the official md5
        return load_cifar10(root, download=False, **kw)


# ------------------------------------------------------------------ loading
def test_synthetic_folder_loads(synthetic_data):
    train, test = _load(synthetic_data)
    assert len(train) == 5 * 40 and len(test) == 40
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and 0 <= int(train.labels.min()) and int(train.labels.max()) <= 9
    # the folder itself (.../cifar-10-batches-py) is accepted too
    train2, _ = _load(synthetic_data / BATCHES_DIR)
    assert torch.equal(train2.images, train.images)


def test_md5_mismatch_warns_once(synthetic_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_cifar10(synthetic_data, download=False)
    ours = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(ours) == 1
    assert "data_batch_1" in str(ours[0].message) and "md5" in str(ours[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load_cifar10(synthetic_data, download=False, check_md5=False)  # no warning when not checking


def test_corrupt_batch_names_the_file(synthetic_data):
    (synthetic_data / BATCHES_DIR / "data_batch_3").write_bytes(b"\x80\x04garbage, not a pickle")
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR-10 python batch") as e:
        _load(synthetic_data)
    assert "\n" not in str(e.value)


def test_missing_folder_says_where_and_how(tmp_path):
    root = tmp_path / "no_data_here"
    with pytest.raises(DataError) as e:
        load_cifar10(root, download=False)
    msg = str(e.value)
    assert str(root / BATCHES_DIR) in msg  # where it looked
    assert "cifar-10-python.tar.gz" in msg  # how to get it (the scripts add which flag names the folder)
    assert "\n" not in msg


# ------------------------------------------------------------------ splits
def test_split_sizes_deterministic_disjoint():
    data = _indexed_split(100)
    w1, a1 = split_train(data, arch_size=12)
    w2, a2 = split_train(data, arch_size=12)
    assert (len(w1), len(a1)) == (88, 12)
    assert torch.equal(w1.labels, w2.labels) and torch.equal(a1.labels, a2.labels)
    wi, ai = set(w1.labels.tolist()), set(a1.labels.tolist())
    assert wi.isdisjoint(ai) and wi | ai == set(range(100))
    assert a1.labels.tolist() != list(range(12))  # a random draw, not the first images
    assert torch.equal(w1.images[:, 0, 0, 0].long(), w1.labels)  # images travel with their labels


def test_split_on_synthetic_set(synthetic_data):
    train, _ = _load(synthetic_data)
    w, a = split_train(train, arch_size=30)
    assert (len(w), len(a)) == (170, 30)


@pytest.mark.parametrize("arch_size", [0, 100, 150])
def test_split_bounds(arch_size):
    with pytest.raises(DataError, match="architecture split"):
        split_train(_indexed_split(100), arch_size=arch_size)


def test_take_is_fixed_subset():
    data = _indexed_split(50)
    t1, t2 = take(data, 10), take(data, 10)
    assert len(t1) == 10 and torch.equal(t1.labels, t2.labels)
    assert take(data, None) is data and take(data, 500) is data


def test_real_data_split_sizes(real_data_dir):
    train, test = _load(real_data_dir)
    weights, arch = split_train(train)
    assert (len(weights), len(arch), len(test)) == (45_000, 5_000, 10_000)


# ------------------------------------------------------------------ BatchLoader
def test_loader_shapes_and_normalization(synthetic_data):
    train, test = _load(synthetic_data)
    loader = BatchLoader(train, 32, train=True, cutout=16)
    batches = list(loader)
    assert len(batches) == len(loader) == 200 // 32  # train drops the last partial batch
    for x, y in batches:
        assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (32,)
    ev = list(BatchLoader(test, 32, train=False))
    assert [len(y) for _, y in ev] == [32, 8]
    torch.testing.assert_close(ev[0][0], normalize(test.images[:32]))  # eval: fixed order, no augmentation
    assert torch.equal(ev[0][1], test.labels[:32])


def test_loader_deterministic_under_seed(synthetic_data):
    train, _ = _load(synthetic_data)

    def first_pass(seed):
        torch.manual_seed(seed)
        return list(BatchLoader(train, 16, train=True, cutout=8))

    a, b, c = first_pass(3), first_pass(3), first_pass(4)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])


def _zero_box(img: torch.Tensor) -> tuple[int, int] | None:
    """Size (rows, cols) of the all-channel zero region, asserting that it is one rectangle."""
    zero = (img == 0).all(0)
    if not zero.any():
        return None
    rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    assert zero[r0:r1, c0:c1].all() and int(zero.sum()) == (r1 - r0) * (c1 - c0), "not a rectangle"
    return r1 - r0, c1 - c0


def test_cutout_zeroes_one_square_at_most_16():
    torch.manual_seed(0)
    x = torch.randint(1, 255, (64, 3, 32, 32), dtype=torch.uint8)
    x[:, 0] = 200  # channel 0 never normalizes to exactly 0, so zeros come only from cutout
    out = augment(x, pad=0, flip=False, cutout=16)
    boxes = [_zero_box(img) for img in out]
    assert all(b is not None and 8 <= b[0] <= 16 and 8 <= b[1] <= 16 for b in boxes)
    assert any(b == (16, 16) for b in boxes)  # interior centres cut the full square
    torch.testing.assert_close(out[(out != 0)], normalize(x)[(out != 0)])  # the rest is untouched


def test_cutout_in_loader(synthetic_data):
    train, _ = _load(synthetic_data)
    torch.manual_seed(0)
    for x, _ in BatchLoader(train, 50, train=True, cutout=16):
        for img in x:
            box = _zero_box(img)
            assert box is not None and box[0] <= 16 and box[1] <= 16


@pytest.mark.parametrize("train", [True, False])
def test_shards_disjoint_and_cover(train):
    data = _indexed_split(24)
    seen = []
    for rank in range(3):
        torch.manual_seed(0)  # every rank seeds alike, so all draw the same permutation
        loader = BatchLoader(data, 4, train=train, rank=rank, world_size=3)
        labels = torch.cat([y for _, y in loader]).tolist()
        assert len(labels) == 8 and len(loader) == 2
        seen.append(set(labels))
    assert all(a.isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1:])
    assert set().union(*seen) == set(range(24))


def test_shards_uneven_cover_everything():
    data = _indexed_split(10)  # not divisible: like DistributedSampler, pad by repeating
    labels = [torch.cat([y for _, y in BatchLoader(data, 2, train=False, rank=r, world_size=3)]).tolist()
              for r in range(3)]
    assert [len(l) for l in labels] == [4, 4, 4]
    assert set().union(*map(set, labels)) == set(range(10))


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    """No network when a download is needed: one message naming the folder and how to get the data."""
    import urllib.error

    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "d", download=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert "downloading it failed (URLError" in msg and str(tmp_path / "d") in msg
    assert "cifar-10-python.tar.gz" in msg
