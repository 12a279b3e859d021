"""--dataset folder-stream: an image folder decoded batch by batch (utils/stream.py) with ImageNet's random-resized
crops; reproducible order and crops, shards, evaluation crops, and a search and a retraining on it."""
import pytest
import torch

import search_cifar
import train_cifar
from tests.test_own_data import make_folder
from utils.data import DataError
from utils.datasets import load_dataset
from utils.stream import EVAL_RESIZE, FileSplit, StreamLoader, crop_box


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("stream") / "images", per_class=(8, 3))


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_scan_keeps_file_names_and_classes(folder):
    train, test, info = load_dataset("folder-stream", folder, image_size=40)
    assert isinstance(train, FileSplit) and len(train) == 24 and len(test) == 9
    assert info.name == "folder-stream" and info.num_classes == 3 and info.image_size == 40
    assert train.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    sub = train.subset(torch.tensor([0, 9, 23]))
    assert sub.labels.tolist() == [0, 1, 2] and sub.paths[1] == train.paths[9]


def test_order_and_crops_are_reproducible_and_new_each_pass(folder):
    train, _, _ = load_dataset("folder-stream", folder, image_size=32)
    loader = StreamLoader(train, 5, train=True, image_size=32, workers=0)
    assert len(loader) == 4  # 24 images, whole batches of 5
    torch.manual_seed(0)
    first, second = batches(loader), batches(loader)
    torch.manual_seed(0)
    again = batches(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second))  # a new permutation and new crops
    x, y = first[0]
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert -3 < float(x.mean()) < 3 and float(x.std()) > 0.1  # normalized, not raw 0..255
    # the same order with 2 decoding processes (crops are seeded per image, not per worker)
    torch.manual_seed(0)
    with_workers = batches(StreamLoader(train, 5, train=True, image_size=32, workers=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, with_workers))


def test_evaluation_is_a_fixed_centre_crop_and_shards_cover_the_split(folder):
    _, test, _ = load_dataset("folder-stream", folder, image_size=24)
    one = batches(StreamLoader(test, 4, train=False, image_size=24, workers=0))
    assert sum(len(y) for _, y in one) == 9 and torch.equal(one[0][0], batches(StreamLoader(
        test, 4, train=False, image_size=24, workers=0))[0][0])
    seen = []
    for rank in range(2):
        shard = StreamLoader(test, 2, train=False, image_size=24, workers=0, rank=rank, world_size=2)
        seen += [int(v) for _, y in shard for v in y]
    assert len(seen) == 10 and sorted(seen[:9]) == sorted(test.labels.tolist())  # 5 + 5: padded to equal shards
    assert round(24 * EVAL_RESIZE) == 27


def test_crop_box_stays_inside_and_covers_8_to_100_percent():
    g = torch.Generator().manual_seed(0)
    for h, w in ((30, 90), (64, 64), (200, 50)):
        for _ in range(50):
            top, left, ch, cw = crop_box(h, w, g)
            assert 0 <= top and 0 <= left and top + ch <= h and left + cw <= w and ch > 0 and cw > 0


def test_a_file_that_does_not_decode_is_one_error_naming_it(tmp_path):
    root = make_folder(tmp_path / "images", per_class=(2, 1))
    bad = root / "train" / "cat" / "broken.png"
    bad.write_bytes(b"not a png")
    train, _, _ = load_dataset("folder-stream", root, image_size=16)
    with pytest.raises(DataError, match="broken.png"):
        batches(StreamLoader(train, 7, train=False, image_size=16, workers=0))
    with pytest.raises(DataError, match="cutout"):
        StreamLoader(train, 2, train=True, image_size=16, cutout=8)


def test_search_and_retraining_on_a_streamed_folder(folder, tmp_path):
    """An MBConv search at 64 px (the ImageNet strides) and a retraining of its genotype, both streaming."""
    common = ["--data", str(folder), "--dataset", "folder-stream", "--image-size", "64", "--no-progress",
              "--no-tensorboard", "--seed", "1"]
    res = search_cifar.main(search_cifar.get_args_parser().parse_args([
        *common, "--space", "mbconv", "--stem", "8", "--first", "8", "--widths", "12,16,20,24,28,32",
        "--depths", "1,1,1,1,1,1", "--head", "32", "--warmup-epochs", "1", "--epochs", "1", "--batch-size", "6",
        "--arch-batch-size", "6", "--arch-split", "6", "--arch-every", "1", "--output", str(tmp_path / "s")]))
    assert torch.isfinite(res["alphas"]).all() and res["genotype"].widths == (12, 16, 20, 24, 28, 32)
    out = train_cifar.main(train_cifar.get_args_parser().parse_args([
        *common, "--genotype", str(tmp_path / "s" / "genotype_final.json"), "--epochs", "1", "--batch-size", "6",
        "--output", str(tmp_path / "t")]))
    assert out["finished"] and out["dataset"]["name"] == "folder-stream" and out["dataset"]["image_size"] == 64
