"""Genotypes: JSON round trip, the released network against the authors' JSON, clear errors."""
import argparse
import json
import sys

import pytest

import genotypes
from genotypes import Genotype, GenotypeError
from models.tree.arch import EDGES_PER_CELL, PRIMITIVES, block_plan
from utils.checkpoint import save_genotype
from utils.errors import USER_ERRORS, run_cli


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------ round trip
def test_json_round_trip(tmp_path):
    g = genotypes.PROXYLESS_CIFAR
    text = g.to_json()
    assert Genotype.from_json(text) == g
    assert Genotype.from_dict(json.loads(text)) == g == Genotype.from_dict(g.to_dict())
    path = tmp_path / "g.json"
    save_genotype(g, path)
    assert g.to_json() == path.read_text()
    assert Genotype.load(path) == g
    assert genotypes.get(str(path)) == g
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_get_by_name():
    assert genotypes.get("proxyless_cifar") is genotypes.PROXYLESS_CIFAR
    assert genotypes.get("PROXYLESS_CIFAR") is genotypes.PROXYLESS_CIFAR


def test_uniform_and_hashable():
    g = genotypes.uniform(1, 64, "sep_5x5")
    assert g.op_counts()["sep_5x5"] == 3 * EDGES_PER_CELL
    assert {g: 1}[genotypes.uniform(1, 64, "sep_5x5")] == 1  # frozen: usable as a key


# ------------------------------------------------------------------ the released network
def test_proxyless_cifar_op_counts():
    # Counts of the authors' released proxyless_cifar (648 searchable edges), from their config.
    assert genotypes.PROXYLESS_CIFAR.op_counts() == {
        "sep_7x7": 116, "identity": 96, "dil_sep_3x3": 90, "max_pool_3x3": 89, "avg_pool_3x3": 89,
        "sep_5x5": 85, "sep_3x3": 83}
    assert genotypes.PROXYLESS_CIFAR.num_blocks == 54


def test_proxyless_cifar_matches_reference(reference_dir):
    ref = json.loads((reference_dir / "proxyless_cifar_edges.json").read_text())
    g = genotypes.PROXYLESS_CIFAR
    plan = block_plan(g.B, g.F)
    assert len(ref) == len(plan) == g.num_blocks
    for spec, ops, r in zip(plan, g.ops, ref):
        assert r["block"] == spec.index
        assert list(ops) == r["edges"], f"block {spec.index}"
        assert (spec.in_channels, spec.width, spec.out_channels, spec.stride) == \
            (r["in_channels"], r["width"], r["out_channels"], r["stride"]), f"block {spec.index}"
        assert (r["shortcut"] == "PoolingLayer") == (spec.stride == 2)
    counts = {name: sum(r["edges"].count(name) for r in ref) for name in PRIMITIVES}
    assert g.op_counts() == counts


# ------------------------------------------------------------------ errors
def _dict(**change):
    d = genotypes.uniform(1, 64, "identity").to_dict()
    d.update(change)
    return d


def test_unknown_op():
    d = _dict()
    d["ops"][1][4] = "conv_9x9"
    with pytest.raises(GenotypeError, match=r"block 1 edge 4 .*unknown op 'conv_9x9'.*valid ops: sep_3x3") as e:
        Genotype.from_dict(d)
    _one_line(e)


def test_wrong_number_of_edges():
    d = _dict()
    d["ops"][2] = d["ops"][2][:-1]
    with pytest.raises(GenotypeError, match=r"block 2 has 11 edges; every cell has 12") as e:
        Genotype.from_dict(d)
    _one_line(e)


def test_wrong_number_of_blocks():
    d = _dict(B=2)
    with pytest.raises(GenotypeError, match=r"has 3 blocks but B=2 needs 6") as e:
        Genotype.from_dict(d)
    _one_line(e)


def test_invalid_json(tmp_path):
    with pytest.raises(GenotypeError, match=r"not valid JSON") as e:
        Genotype.from_json('{"B": 1, "F": 64, "ops": [')
    _one_line(e)
    path = tmp_path / "broken.json"
    path.write_text("not json at all")
    with pytest.raises(GenotypeError, match=r"broken\.json: genotype is not valid JSON") as e:
        genotypes.get(str(path))
    _one_line(e)


@pytest.mark.parametrize("d,match", [
    ([1, 2], "must be a JSON object"),
    ({"B": 1, "F": 64}, "lacks the key.*ops"),
    ({"B": 1, "F": 64, "ops": [], "extra": 1}, "unknown key.*extra"),
    ({"B": 1, "F": 64, "ops": "identity"}, "list of lists"),
    ({"B": 1, "F": 100, "ops": [["identity"] * 12] * 3}, "multiple of 8"),
    ({"B": 1, "F": 64, "ops": [["identity"] * 12] * 3, "space": "darts"}, "space 'darts'"),
])
def test_malformed_dicts(d, match):
    with pytest.raises(GenotypeError, match=match) as e:
        Genotype.from_dict(d)
    _one_line(e)


def test_get_missing(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(GenotypeError, match=r"unknown genotype .*nope\.json.*proxyless_cifar.*no such JSON file") as e:
        genotypes.get(str(missing))
    _one_line(e)


def test_error_is_user_error_and_cli_prints_one_line(tmp_path, monkeypatch, capsys):
    # What a script shows for a bad --genotype: run_cli turns the UserError into "error: ..." + exit 2.
    assert issubclass(GenotypeError, USER_ERRORS)
    parser = argparse.ArgumentParser()
    parser.add_argument("--genotype")

    def main(args):
        genotypes.get(args.genotype)

    monkeypatch.setattr(sys, "argv", ["prog", "--genotype", str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit) as e:
        run_cli(main, parser)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown genotype") and err.count("\n") == 1 and "Traceback" not in err
