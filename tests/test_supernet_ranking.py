"""bench/supernet_ranking.py: each op's figure is that of the single-op network built from the supernet's
weights and recalibrated the same way; the preference figure's sign."""
import itertools

import pytest
import torch
import torch.nn as nn

from bench import supernet_ranking as sr
from models import build_net, build_supernet
from models.tree.genotype import uniform
from models.tree.space import TREE
from utils.data import BatchLoader, Split
from utils.errors import UserError
from utils.train import evaluate, make_amp, recalibrate_bn


def split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g))


def test_each_op_is_scored_as_its_own_recalibrated_network():
    torch.manual_seed(0)
    net = build_supernet(1, 64, ["sep_3x3", "max_pool_3x3", "identity"])
    calib, test = BatchLoader(split(64, 1), 16, train=True), BatchLoader(split(48, 2), 16, train=False)
    ranks = sr.rank_ops(net, calib, test, batches=2)
    assert list(ranks) == ["sep_3x3", "max_pool_3x3", "identity"]
    amp = make_amp(torch.device("cpu"), "off")
    for op in ranks:
        g = uniform(1, 64, op)
        derived = build_net(g)
        derived.load_state_dict(net.derived_state_dict(g))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same calibration batches as rank_ops draws
            recalibrate_bn(derived, (x for x, _ in itertools.islice(iter(calib), 2)))
        ref = evaluate(derived, test, criterion=nn.CrossEntropyLoss(), amp=amp, progress=False)
        assert ranks[op]["loss"] == pytest.approx(ref["loss"], rel=1e-5) and ranks[op]["acc"] == ref["acc"]
    assert len({round(r["loss"], 6) for r in ranks.values()}) == 3  # the ops really differ


def test_preference_is_parameter_free_minus_weighted_loss():
    ranks = {"sep_3x3": {"loss": 2.0}, "sep_5x5": {"loss": 1.0}, "max_pool_3x3": {"loss": 1.2}, "identity": {"loss": 1.4}}
    assert sr.preference(ranks, TREE.parameter_free) == pytest.approx(1.3 - 1.5)
    with pytest.raises(UserError):
        sr.preference({"sep_3x3": {"loss": 1.0}}, TREE.parameter_free)
