"""Pictures of a CIFAR-10 tree network: the cell of one block, the network overview, the op chosen
at every (block, edge), and (from a search checkpoint) the alpha probabilities of every edge.

Every picture is drawn from the space description (models.space: CELL_TREES, EDGE_NAMES,
block_plan) and the genotype's data; no torch model is built.  The Graphviz source (.gv) is always
written; it is rendered with ``dot`` when Graphviz is installed.

    python visualize_cifar.py proxylessnas_architecture            # the released network
    python visualize_cifar.py run1 --checkpoint runs/search/checkpoint.pth --format pdf
"""
from __future__ import annotations

import argparse
import math
import html
import re
import shutil
from pathlib import Path

import graphviz

import genotypes
from models.space import (CELL_TREES, EDGE_NAMES, EDGES_PER_CELL, NUM_STAGES, OP_CODES,
                          OP_FAMILY, PRIMITIVES, STEM_CHANNELS, block_plan)
from utils.errors import UserError, run_cli
from utils.checkpoint import CheckpointError, atomic_write, atomic_write_text, load_search_alphas
from utils.data import CIFAR10, DatasetInfo
from utils.faults import WriteError, check_writable

INSTALL_HINT = ("install Graphviz to render the pictures: apt-get install graphviz (Debian/Ubuntu), "
                "brew install graphviz (macOS), conda install -c conda-forge graphviz (conda); "
                "the .gv sources were written and can be rendered later with dot -Tpng FILE.gv -o FILE.png")
FONT = "Helvetica"

OP_LABEL = {op: re.sub(r"(\d)x(\d)", r"\1×\2", op.replace("_", " ")) for op in PRIMITIVES}  # "sep 3×3"
# Colour-blind-safe hues (Okabe-Ito) per family; the op heat map uses shades of the family hue.
FAMILY_COLOR = {"sep_conv": "#0072B2", "dil_conv": "#D55E00", "pool": "#009E73", "skip": "#7F7F7F"}
OP_COLOR = {"sep_3x3": "#C6DBEF", "sep_5x5": "#6BAED6", "sep_7x7": "#08519C", "dil_sep_3x3": "#E6803C",
            "avg_pool_3x3": "#A1D99B", "max_pool_3x3": "#238B45", "identity": "#E3E3E3"}
DARK_OPS = {"sep_7x7", "max_pool_3x3"}  # white text on these
# ColorBrewer "Blues" (9 classes): probability 0 -> white, 1 -> dark blue.
PROB_SCALE = ["#F7FBFF", "#DEEBF7", "#C6DBEF", "#9ECAE1", "#6BAED6", "#4292C6", "#2171B5", "#08519C", "#08306B"]
assert set(OP_LABEL) == set(OP_CODES) == set(OP_COLOR) == set(PRIMITIVES) == set(OP_FAMILY)


# ------------------------------------------------------------------ helpers
def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _digraph(name: str, rankdir: str = "LR") -> graphviz.Digraph:
    g = graphviz.Digraph(name)
    g.attr(rankdir=rankdir, fontname=FONT, fontsize="14", nodesep="0.25", ranksep="0.35", pad="0.2")
    g.attr("node", fontname=FONT, fontsize="12")
    g.attr("edge", fontname=FONT, fontsize="11", arrowsize="0.6")
    return g


def _prob_color(p: float) -> str:
    """Linear interpolation of PROB_SCALE at p in [0, 1]."""
    x = min(max(p, 0.0), 1.0) * (len(PROB_SCALE) - 1)
    i = min(int(x), len(PROB_SCALE) - 2)
    t = x - i
    a, b = PROB_SCALE[i], PROB_SCALE[i + 1]
    rgb = [round(int(a[k:k + 2], 16) * (1 - t) + int(b[k:k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02X}" for c in rgb)


FAMILY_LEGEND = {"sep_conv": "separable conv 3×3, 5×5, 7×7", "dil_conv": "dilated separable conv 3×3",
                 "pool": "avg / max pool 3×3", "skip": "identity (dashed)"}
assert set(FAMILY_LEGEND) == set(FAMILY_COLOR) == set(OP_FAMILY.values())


def _family_legend() -> str:
    return "".join(f'<TD><FONT COLOR="{color}" POINT-SIZE="16"><B>{"╍╍" if fam == "skip" else "━━"}</B>'
                   f'</FONT></TD><TD ALIGN="LEFT"><FONT POINT-SIZE="11">{_esc(FAMILY_LEGEND[fam])}   </FONT></TD>'
                   for fam, color in FAMILY_COLOR.items())


def _stage_blocks(B: int) -> list[range]:
    return [range(s * B, (s + 1) * B) for s in range(NUM_STAGES)]


# ------------------------------------------------------------------ (a) the cell
def _point(g: graphviz.Digraph, name: str) -> None:
    """A copy point: one tensor feeding several edges."""
    g.node(name, "", shape="circle", style="filled", fillcolor="#333333", width="0.1", height="0.1", fixedsize="true")


def _add(g: graphviz.Digraph, name: str) -> None:
    g.node(name, "+", shape="circle", style="", width="0.26", fixedsize="true", fontsize="14")


def cell_graph(genotype: genotypes.Genotype, block: int = 0, title: str = "", data: DatasetInfo = CIFAR10
               ) -> graphviz.Digraph:
    """The tree cell of ``block``: split/copy/add points as nodes, each searchable edge an arrow
    labelled with its op (coloured by family) and carrying ``id`` = its edge name (EDGE_NAMES)."""
    if not 0 <= block < genotype.num_blocks:
        raise UserError(f"--block {block} is out of range: the network has blocks 0..{genotype.num_blocks - 1}")
    spec = block_plan(genotype.B, genotype.F, data.image_size)[block]
    ops, w = genotype.ops[block], spec.width
    g = _digraph("cell")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#F2F2F2", color="#555555", height="0.3")

    def op_edge(src: str, dst: str, edge: int) -> None:
        op = ops[edge]
        color = FAMILY_COLOR[OP_FAMILY[op]]
        label = (f'<<FONT COLOR="{color}">{_esc(OP_LABEL[op])}</FONT>'
                 f'<FONT POINT-SIZE="8" COLOR="#8C8C8C"> {_esc(EDGE_NAMES[edge])}</FONT>>')
        g.edge(src, dst, label=label, color=color, penwidth="2.2", id=EDGE_NAMES[edge],
               tooltip=f"{EDGE_NAMES[edge]}: {op}", style="dashed" if op == "identity" else "solid")

    def subtree(src: str, tree: tuple, sink: str) -> None:
        """Edges of ``tree`` from ``src``; a child tree hangs under a copy point and sums into an add."""
        for edge, child in tree:
            if child is None:
                op_edge(src, sink, edge)
                continue
            _point(g, f"copy{edge}")
            _add(g, f"add{edge}")
            op_edge(src, f"copy{edge}", edge)
            subtree(f"copy{edge}", child, f"add{edge}")
            g.edge(f"add{edge}", sink)

    size_in, size_out = spec.in_size, spec.out_size
    g.node("input", f"cell input\n{w} ch, {size_in}×{size_in}")
    g.node("split", f"split\n{len(CELL_TREES) * w} → {' | '.join([str(w)] * len(CELL_TREES))}")
    stride = f", stride {spec.stride}" if spec.stride > 1 else ""
    g.edge("input", "split", label=f"BN-ReLU-GConv 3×3 (g=2)\n{w} → {2 * w}{stride} + shuffle", penwidth="1.4")
    _add(g, "sum")
    for h, tree in enumerate(CELL_TREES):
        _point(g, f"half{h}")
        g.edge("split", f"half{h}", label=f"half {h}", fontcolor="#555555")
        _add(g, f"tree{h}")
        subtree(f"half{h}", tree, f"tree{h}")
        g.node(f"bn{h}", "BN")
        _add(g, f"res{h}")
        g.edge(f"tree{h}", f"bn{h}")
        g.edge(f"bn{h}", f"res{h}")
        g.edge(f"half{h}", f"res{h}", style="dotted", color="#555555", label="residual", fontcolor="#555555",
               fontsize="9")
        g.edge(f"res{h}", "sum")
    g.node("output", f"cell output\n{w} ch, {size_out}×{size_out}")
    g.edge("sum", "output")
    head = (f"{_esc(title)}: " if title else "") + (
        f"tree cell of block {block} (stage {spec.stage + 1}, w = {w}, stride {spec.stride})")
    g.attr(labelloc="b", label=f'<<TABLE BORDER="0" CELLSPACING="2"><TR><TD COLSPAN="8"><B>{head}</B></TD></TR>'
                               f'<TR>{_family_legend()}</TR></TABLE>>')
    return g


# ------------------------------------------------------------------ (b) the network
def network_graph(genotype: genotypes.Genotype, title: str = "", data: DatasetInfo = CIFAR10) -> graphviz.Digraph:
    """stem -> 3 stages (block counts, widths, strides, map sizes) -> head, and one block's layout,
    for the images and classes of ``data`` (a search checkpoint's)."""
    plan, size = block_plan(genotype.B, genotype.F, data.image_size), data.image_size
    g = _digraph("network")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#F2F2F2", color="#555555", margin="0.12,0.06")
    # The layout of one residual tree block, drawn under the chain; declared first so that dot puts it
    # below (LR layouts stack a rank's nodes in declaration order), newrank lets it share the chain's ranks.
    g.attr(newrank="true")
    with g.subgraph(name="cluster_block") as c:
        c.attr(label="<<B>residual tree block</B> (bottleneck width w)>", fontsize="12", style="rounded,dashed",
               color="#888888", labeljust="l", labelloc="b", margin="10")
        c.node("bx", "<block input<BR/>C<SUB>in</SUB> ch>", fillcolor="white")
        c.node("b_in", "<BN<BR/>conv 1×1<BR/>C<SUB>in</SUB> → w>")
        c.node("b_cell", f"tree cell\n{EDGES_PER_CELL} searchable edges\n(its root conv has\nthe block's stride)",
               fillcolor="#DCE9F5")
        c.node("b_out", "BN-ReLU\nconv 1×1\nw → 4w, BN")
        c.node("b_add", "+", shape="circle", width="0.3", fixedsize="true", fillcolor="white")
        c.node("b_y", "block output\n4w ch", fillcolor="white")
        for a, b in (("bx", "b_in"), ("b_in", "b_cell"), ("b_cell", "b_out"), ("b_out", "b_add"), ("b_add", "b_y")):
            c.edge(a, b)
        c.edge("bx", "b_add", style="dashed", fontsize="10",
               label="<shortcut: identity<BR/>(avg pool 2×2 if stride 2)<BR/>zero-padded C<SUB>in</SUB> → 4w>")

    g.node("input", f"image\n3 × {size} × {size}", fillcolor="white")
    g.node("stem", f"stem\nconv 3×3, 3 → {STEM_CHANNELS}\nBN")
    prev, shape = "stem", f"{STEM_CHANNELS} × {size} × {size}"
    g.edge("input", "stem")
    for s, blocks in enumerate(_stage_blocks(genotype.B)):
        first, last = plan[blocks[0]], plan[blocks[-1]]
        stride = (f"first block stride 2<BR/>{first.in_size}×{first.in_size} → {first.out_size}×{first.out_size}"
                  if first.stride == 2 else f"stride 1<BR/>{first.in_size}×{first.in_size}")
        g.node(f"stage{s}", f'<<B>stage {s + 1}</B><BR/>{len(blocks)} blocks ({blocks[0]}–{blocks[-1]})<BR/>'
                            f'w {first.width} → {last.width}<BR/>4w {first.out_channels} → {last.out_channels}'
                            f'<BR/>{stride}>', fillcolor="#DCE9F5")
        g.edge(prev, f"stage{s}", label=shape, fontsize="10", fontcolor="#555555")
        prev, shape = f"stage{s}", f"{last.out_channels} × {last.out_size} × {last.out_size}"
    g.node("head", f"head\nBN-ReLU\nglobal avg pool\nFC {genotype.F} → {data.num_classes}")
    g.edge(prev, "head", label=shape, fontsize="10", fontcolor="#555555")
    g.node("logits", f"{data.num_classes} logits", fillcolor="white")
    g.edge("head", "logits")
    with g.subgraph() as r:
        r.attr(rank="same")
        r.node("input")
        r.node("bx")
    n_params = f"B = {genotype.B}, F = {genotype.F}, {genotype.num_blocks} blocks, " \
               f"{genotype.num_blocks * EDGES_PER_CELL} searchable edges"
    head = (f"{_esc(title)}: " if title else "") + n_params
    g.attr(labelloc="t", label=f"<<B>{head}</B>>")
    return g


# ------------------------------------------------------------------ (c), (d): heat maps
def _header_rows(B: int, label_cols: int) -> str:
    """A stage row and a block-number row over the block columns (an empty column between stages)."""
    stages = [f'<TD COLSPAN="{len(blocks)}" BGCOLOR="#EEEEEE"><FONT POINT-SIZE="10"><B>stage {s + 1}</B></FONT></TD>'
              for s, blocks in enumerate(_stage_blocks(B))]
    nums = ["".join(f'<TD><FONT POINT-SIZE="7">{k}</FONT></TD>' for k in blocks) for blocks in _stage_blocks(B)]
    return (f'<TR><TD COLSPAN="{label_cols}"></TD>' + '<TD WIDTH="3"></TD>'.join(stages) + "</TR>"
            f'<TR><TD COLSPAN="{label_cols}" ALIGN="RIGHT"><FONT POINT-SIZE="8">block </FONT></TD>'
            + '<TD WIDTH="3"></TD>'.join(nums) + "</TR>")


def _row(labels: str, cells_per_stage: list[str]) -> str:
    return f"<TR>{labels}" + '<TD WIDTH="3"></TD>'.join(cells_per_stage) + "</TR>"


def _table_figure(name: str, head: str, grid_rows: list[str], legend: str) -> graphviz.Digraph:
    """Title (graph label), the grid node and the legend node right under it.  Three separate pieces:
    dot stretches a table's columns to the widest row, so a shared table would spread a narrow grid."""
    g = _digraph(name, rankdir="TB")
    g.attr(ranksep="0.05", labelloc="t", label=f'<<FONT POINT-SIZE="13"><B>{head}</B></FONT>>')
    g.node("grid", f'<<TABLE BORDER="0" CELLSPACING="1" CELLPADDING="0">{"".join(grid_rows)}</TABLE>>',
           shape="plaintext", margin="0")
    g.node("legend", f"<{legend}>", shape="plaintext", margin="0")
    g.edge("grid", "legend", style="invis")
    return g


def _swatch(op: str, title: str = "") -> str:
    ink = "white" if op in DARK_OPS else "black"
    tip = f' TITLE="{_esc(title)}"' if title else ""
    return (f'<TD BGCOLOR="{OP_COLOR[op]}" WIDTH="15" HEIGHT="15" FIXEDSIZE="TRUE"{tip}>'
            f'<FONT POINT-SIZE="7" COLOR="{ink}">{OP_CODES[op]}</FONT></TD>')


def ops_graph(genotype: genotypes.Genotype, title: str = "") -> graphviz.Digraph:
    """Blocks as columns (grouped by stage), the 12 edges as rows (grouped by half), one colour and
    code per op; every cell has TITLE "block b edge NAME: op" (a tooltip in SVG)."""
    rows = [_header_rows(genotype.B, 1)]
    for e, name in enumerate(EDGE_NAMES):
        if e and name.split(".")[0] != EDGE_NAMES[e - 1].split(".")[0]:
            rows.append('<TR><TD HEIGHT="4"></TD></TR>')  # gap between the halves
        cells = ["".join(_swatch(genotype.ops[k][e], f"block {k} edge {name}: {genotype.ops[k][e]}") for k in blocks)
                 for blocks in _stage_blocks(genotype.B)]
        rows.append(_row(f'<TD ALIGN="LEFT"><FONT FACE="Courier" POINT-SIZE="9">{name} </FONT></TD>', cells))
    counts = genotype.op_counts()
    legend = "".join(f'{_swatch(op)}<TD ALIGN="LEFT"><FONT POINT-SIZE="10">{_esc(OP_LABEL[op])} '
                     f'({counts[op]})  </FONT></TD>' for op in PRIMITIVES)
    head = (f"{_esc(title)}: " if title else "") + (
        f"op on every searchable edge ({genotype.num_blocks} blocks × {EDGES_PER_CELL} edges)")
    return _table_figure("ops", head, rows, f'<TABLE BORDER="0" CELLSPACING="2"><TR>{legend}</TR></TABLE>')


def alpha_graph(probs: list[list[list[float]]], candidates: list[str], B: int, title: str = "") -> graphviz.Digraph:
    """probs[block][edge][i]: a row per (edge, candidate), a column per block, the colour is the
    probability and ● marks the argmax per (block, edge) (cell TITLE "... (argmax)")."""
    # colour scale vmin..vmax (the smallest / largest probability, rounded out to 0.1): early in a
    # search, when every p is near 1/N, a fixed 0..1 scale would paint the whole map one colour
    flat = [p for blk in probs for e in blk for p in e]
    vmin = max(0.0, math.floor(min(flat) * 10 + 1e-9) / 10)
    vmax = min(1.0, max(vmin + 0.1, math.ceil(max(flat) * 10 - 1e-9) / 10))
    rows = [_header_rows(B, 2)]
    for e, name in enumerate(EDGE_NAMES):
        if e:
            rows.append('<TR><TD HEIGHT="3"></TD></TR>')
        best = [max(range(len(candidates)), key=probs[k][e].__getitem__) for k in range(len(probs))]
        for i, cand in enumerate(candidates):
            cells = []
            for blocks in _stage_blocks(B):
                tds = []
                for k in blocks:
                    p, top = probs[k][e][i], i == best[k]
                    mark = f'<FONT POINT-SIZE="7" COLOR="{"white" if p > (vmin + vmax) / 2 else "black"}">●</FONT>' if top else ""
                    tip = f'block {k} edge {name}: {cand} p={p:.3f}{" (argmax)" if top else ""}'
                    tds.append(f'<TD BGCOLOR="{_prob_color((p - vmin) / (vmax - vmin))}" WIDTH="11" HEIGHT="9" FIXEDSIZE="TRUE" '
                               f'TITLE="{tip}">{mark}</TD>')
                cells.append("".join(tds))
            first = (f'<TD ROWSPAN="{len(candidates)}" ALIGN="LEFT"><FONT FACE="Courier" POINT-SIZE="9">{name}'
                     f'</FONT></TD>' if i == 0 else "")
            rows.append(_row(f'{first}<TD ALIGN="RIGHT"><FONT POINT-SIZE="7">{_esc(OP_LABEL[cand])} </FONT></TD>',
                             cells))
    ticks = [k / 10 for k in range(11)]
    bar = "".join(f'<TD BGCOLOR="{_prob_color(t)}" WIDTH="22" HEIGHT="12" FIXEDSIZE="TRUE"></TD>' for t in ticks)
    labels = "".join(f'<TD><FONT POINT-SIZE="8">{vmin + t * (vmax - vmin):.2g}</FONT></TD>' for t in ticks)
    legend = (f'<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD ROWSPAN="2"><FONT POINT-SIZE="10">'
              f'p(op)  </FONT></TD>{bar}<TD ROWSPAN="2"><FONT POINT-SIZE="10">     ● = argmax (the derived op)'
              f'</FONT></TD></TR><TR>{labels}</TR></TABLE>')
    head = (f"{_esc(title)}: " if title else "") + "architecture probabilities softmax(α) of every edge"
    return _table_figure("alpha", head, rows, legend)


def argmax_genotype(probs: list[list[list[float]]], candidates: list[str], B: int, F: int) -> genotypes.Genotype:
    ops = [[candidates[max(range(len(p)), key=p.__getitem__)] for p in block] for block in probs]
    return genotypes.Genotype(B, F, ops)


# ------------------------------------------------------------------ writing
def write(graph: graphviz.Digraph, stem: Path, fmt: str, dpi: int, render: bool) -> list[Path]:
    """Save ``stem``.gv, and render ``stem``.fmt with dot when ``render``.  dot renders into memory
    (``pipe``) and we write the bytes, atomically: dot itself reports a full disk only as "gvwrite_no_z
    problem" and leaves half a picture behind."""
    if fmt == "png":
        graph.attr(dpi=str(dpi))
    gv = atomic_write_text(stem.with_name(stem.name + ".gv"), graph.source)
    if not render:
        return [gv]
    picture = graph.pipe(format=fmt, quiet=True)
    return [gv, atomic_write(stem.with_name(f"{stem.name}.{fmt}"), lambda f: f.write(picture))]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("output_name", nargs="?", default="proxylessnas_architecture",
                   help="path prefix of the outputs: NAME_cell, NAME_network, NAME_ops (and NAME_alpha), each a .gv "
                        "source and a picture")
    p.add_argument("--genotype", default=None,
                   help="a named genotype (proxyless_cifar) or a genotype JSON file; default: the checkpoint's "
                        "argmax with --checkpoint, else proxyless_cifar")
    p.add_argument("--checkpoint", default=None,
                   help="a search checkpoint (search_cifar.py RUN_DIR/checkpoint.pth): also draws its alpha "
                        "probabilities")
    p.add_argument("--block", type=int, default=0, help="which block's cell to draw (0-based)")
    p.add_argument("--format", choices=("png", "svg", "pdf"), default="png", help="picture format rendered by dot")
    p.add_argument("--dpi", type=int, default=150, help="resolution of PNG pictures")
    return p


def main(args: argparse.Namespace) -> list[Path]:
    stem = Path(args.output_name)
    if stem.suffix in (".gv", ".png", ".svg", ".pdf"):
        stem = stem.with_suffix("")
    graphs: dict[str, graphviz.Digraph] = {}
    genotype, title, data = None, "", CIFAR10
    if args.genotype is not None:
        genotype = genotypes.get(args.genotype)
        title = Path(args.genotype).stem if Path(args.genotype).suffix == ".json" else args.genotype
    if args.checkpoint is not None:
        try:
            probs, candidates, B, F, data = load_search_alphas(args.checkpoint)
        except CheckpointError as e:
            raise UserError(f"--checkpoint: {e}") from None
        graphs["alpha"] = alpha_graph(probs, candidates, B, title=f"search B={B}, F={F}")
        if genotype is None:
            genotype, title = argmax_genotype(probs, candidates, B, F), "argmax of the search"
    if genotype is None:
        genotype, title = genotypes.PROXYLESS_CIFAR, "proxyless_cifar"
    graphs = {"cell": cell_graph(genotype, args.block, title, data), "network": network_graph(genotype, title, data),
              "ops": ops_graph(genotype, title), **graphs}

    render = shutil.which("dot") is not None
    written = []
    try:
        check_writable(stem.parent)
        for kind, graph in graphs.items():
            written += write(graph, stem.with_name(f"{stem.name}_{kind}"), args.format, args.dpi, render)
    except WriteError as e:
        raise UserError(e.line("or choose another output_name")) from None
    for path in written:
        print(f"wrote {path}")
    if not render:
        print(INSTALL_HINT)
    return written


if __name__ == "__main__":
    run_cli(main, get_args_parser())
