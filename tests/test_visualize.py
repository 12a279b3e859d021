"""visualize_cifar.py: the cell's .gv follows CELL_TREES and the genotype, heat maps carry the right ops
and alpha argmaxes, PNGs when dot exists, the install hint when it does not, clear errors."""
import random
import re
import shutil
import sys

import pytest
import torch

import genotypes
import visualize_cifar as viz
from models.tree import pictures as tree_pictures
from models import build_supernet
from models.tree.arch import CELL_TREES, EDGE_NAMES, EDGES_PER_CELL, NUM_STAGES, PRIMITIVES
from utils.errors import USER_ERRORS, run_cli
from utils.checkpoint import save_checkpoint, save_genotype

EDGE_LINE = re.compile(r'^\s*(\w+) -> (\w+) \[(.*)\]\s*$')
TITLE = re.compile(r'TITLE="block (\d+) edge ([\w.]+): (\w+)[^"]*"')


def _args(tmp_path, *argv):
    return viz.get_args_parser().parse_args([str(tmp_path / "fig"), *argv])


def _random_genotype(seed: int, B: int = 1, F: int = 64) -> genotypes.Genotype:
    rng = random.Random(seed)
    return genotypes.Genotype(B, F, [[rng.choice(PRIMITIVES) for _ in range(EDGES_PER_CELL)]
                                     for _ in range(NUM_STAGES * B)])


def _searchable_edges(source: str) -> dict[str, tuple[str, str, str]]:
    """edge name -> (tail node, head node, attribute text) of every arrow with an id."""
    out = {}
    for line in source.splitlines():
        m = EDGE_LINE.match(line)
        ident = re.search(r'\bid="([^"]+)"', m.group(3)) if m else None
        if ident:
            out[ident.group(1)] = (m.group(1), m.group(2), m.group(3))
    return out


@pytest.fixture
def no_dot(monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)


@pytest.mark.parametrize("block", [0, 18, 53])
def test_released_cell_gv_has_the_ops_and_the_tree(monkeypatch, block):
    # the .gv comes from the genotype's data: building a torch network would be a bug
    from models.tree import net as proxyless_nas
    monkeypatch.setattr(proxyless_nas.TreeNet, "__init__", lambda *a, **k: pytest.fail("built a network"))
    g = genotypes.PROXYLESS_CIFAR
    edges = _searchable_edges(tree_pictures.cell_graph(g, block).source)
    assert sorted(edges) == sorted(EDGE_NAMES)
    for e, name in enumerate(EDGE_NAMES):
        op = g.ops[block][e]
        attrs = edges[name][2]
        assert f">{tree_pictures.OP_LABEL[op]}</FONT>" in attrs, (name, op, attrs)
        assert tree_pictures.FAMILY_COLOR[tree_pictures.OP_FAMILY[op]] in attrs  # coloured by its family
    # topology: a half's top edges leave one point, an edge's children leave its head, siblings share a sink
    tops = set()
    for tree in CELL_TREES:
        tails = {edges[EDGE_NAMES[e]][0] for e, _ in tree}
        assert len(tails) == 1
        tops |= tails
        for e, child in tree:
            heads = {edges[EDGE_NAMES[c]][1] for c, _ in child}
            assert {edges[EDGE_NAMES[c]][0] for c, _ in child} == {edges[EDGE_NAMES[e]][1]}
            assert len(heads) == 1 and heads != {edges[EDGE_NAMES[e]][1]}
    assert len(tops) == len(CELL_TREES)
    stride = 2 if block in (18, 36) else 1
    assert f"stride {stride})" in tree_pictures.cell_graph(g, block).source


def test_ops_heat_map_and_no_dot_hint(tmp_path, no_dot, capsys):
    g = _random_genotype(1)
    path = tmp_path / "g.json"
    save_genotype(g, path)
    written = viz.main(_args(tmp_path, "--genotype", str(path), "--block", "2"))
    assert sorted(p.name for p in written) == ["fig_cell.gv", "fig_network.gv", "fig_ops.gv"]
    out = capsys.readouterr().out
    assert "apt-get install graphviz" in out and "brew install graphviz" in out
    cells = TITLE.findall((tmp_path / "fig_ops.gv").read_text())
    assert len(cells) == g.num_blocks * EDGES_PER_CELL
    assert {(int(b), e, op) for b, e, op in cells} == {
        (b, EDGE_NAMES[e], g.ops[b][e]) for b in range(g.num_blocks) for e in range(EDGES_PER_CELL)}
    assert "block 2" in (tmp_path / "fig_cell.gv").read_text()


def test_alpha_heat_map_from_search_checkpoint(tmp_path, no_dot):
    torch.manual_seed(0)
    net = build_supernet(1, 64, ["sep_3x3", "max_pool_3x3", "identity"])
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 2)
    save_checkpoint({"kind": "search", "model": net.state_dict(), "epoch": 1,
                     "args": {"B": 1, "F": 64, "candidates": list(net.candidates)}}, tmp_path / "search.pth")
    viz.main(_args(tmp_path, "--checkpoint", str(tmp_path / "search.pth")))
    derived = net.derive()
    marked = TITLE.findall("\n".join(m.group(0) for m in re.finditer(
        r'TITLE="[^"]*\(argmax\)"', (tmp_path / "fig_alpha.gv").read_text())))
    assert {(int(b), e, op) for b, e, op in marked} == {
        (b, EDGE_NAMES[e], derived.ops[b][e]) for b in range(3) for e in range(EDGES_PER_CELL)}
    assert len(marked) == 3 * EDGES_PER_CELL
    # with no --genotype the other pictures show the checkpoint's argmax genotype
    ops = {(int(b), e): op for b, e, op in TITLE.findall((tmp_path / "fig_ops.gv").read_text())}
    assert ops == {(b, EDGE_NAMES[e]): derived.ops[b][e] for b in range(3) for e in range(EDGES_PER_CELL)}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_png_written_when_dot_exists(tmp_path):
    g = _random_genotype(2)
    save_genotype(g, tmp_path / "g.json")
    written = viz.main(_args(tmp_path, "--genotype", str(tmp_path / "g.json"), "--dpi", "72"))
    pngs = [p for p in written if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == ["fig_cell.png", "fig_network.png", "fig_ops.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000


def test_clear_errors(tmp_path, no_dot, monkeypatch, capsys):
    with pytest.raises(USER_ERRORS, match="no_such.json"):
        viz.main(_args(tmp_path, "--genotype", str(tmp_path / "no_such.json")))
    with pytest.raises(USER_ERRORS, match="out of range"):
        viz.main(_args(tmp_path, "--genotype", "proxyless_cifar", "--block", "54"))
    save_checkpoint({"kind": "train", "model": {}, "args": {}}, tmp_path / "train.pth")
    with pytest.raises(USER_ERRORS, match="search checkpoint"):
        viz.main(_args(tmp_path, "--checkpoint", str(tmp_path / "train.pth")))
    save_checkpoint({"kind": "search", "model": {}, "args": {"B": 1, "F": 64, "candidates": ["identity"]}},
                    tmp_path / "empty.pth")
    with pytest.raises(USER_ERRORS, match="expected an alpha of shape \\(36, 1\\)"):
        viz.main(_args(tmp_path, "--checkpoint", str(tmp_path / "empty.pth")))
    # on the command line: one line on stderr, exit status 2
    monkeypatch.setattr(sys, "argv", ["visualize_cifar.py", str(tmp_path / "x"), "--genotype", "nope.json"])
    with pytest.raises(SystemExit) as e:
        run_cli(viz.main, viz.get_args_parser())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
