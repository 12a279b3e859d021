"""Pictures of a tree-space network (visualize_cifar.py): the cell of one block, the network overview, the
op chosen at every (block, edge), and the alpha probabilities of every edge of a search checkpoint.

Every picture is drawn from the space description (models/tree/arch.py: CELL_TREES, EDGE_NAMES, block_plan) and
the genotype's data; no torch model is built.
"""
from __future__ import annotations

import re

import graphviz

from .genotype import Genotype
from .arch import (CELL_TREES, EDGE_NAMES, EDGES_PER_CELL, NUM_STAGES, OP_CODES, OP_FAMILY, PRIMITIVES, STEM_CHANNELS,
                   block_plan)
from ..common import IMAGE_SIZE, NUM_CLASSES, SpaceError
from ..pictures import digraph, esc, heat_cell, prob_legend, prob_range, table_figure

OP_LABEL = {op: re.sub(r"(\d)x(\d)", r"\1×\2", op.replace("_", " ")) for op in PRIMITIVES}  # "sep 3×3"
# Colour-blind-safe hues (Okabe-Ito) per family; the op heat map uses shades of the family hue.
FAMILY_COLOR = {"sep_conv": "#0072B2", "dil_conv": "#D55E00", "pool": "#009E73", "skip": "#7F7F7F"}
OP_COLOR = {"sep_3x3": "#C6DBEF", "sep_5x5": "#6BAED6", "sep_7x7": "#08519C", "dil_sep_3x3": "#E6803C",
            "avg_pool_3x3": "#A1D99B", "max_pool_3x3": "#238B45", "identity": "#E3E3E3"}
DARK_OPS = {"sep_7x7", "max_pool_3x3"}  # white text on these
assert set(OP_LABEL) == set(OP_CODES) == set(OP_COLOR) == set(PRIMITIVES) == set(OP_FAMILY)


FAMILY_LEGEND = {"sep_conv": "separable conv 3×3, 5×5, 7×7", "dil_conv": "dilated separable conv 3×3",
                 "pool": "avg / max pool 3×3", "skip": "identity (dashed)"}
assert set(FAMILY_LEGEND) == set(FAMILY_COLOR) == set(OP_FAMILY.values())


def _family_legend() -> str:
    return "".join(f'<TD><FONT COLOR="{color}" POINT-SIZE="16"><B>{"╍╍" if fam == "skip" else "━━"}</B>'
                   f'</FONT></TD><TD ALIGN="LEFT"><FONT POINT-SIZE="11">{esc(FAMILY_LEGEND[fam])}   </FONT></TD>'
                   for fam, color in FAMILY_COLOR.items())


def _stage_blocks(B: int) -> list[range]:
    return [range(s * B, (s + 1) * B) for s in range(NUM_STAGES)]



# ------------------------------------------------------------------ (a) the cell
def _point(g: graphviz.Digraph, name: str) -> None:
    """A copy point: one tensor feeding several edges."""
    g.node(name, "", shape="circle", style="filled", fillcolor="#333333", width="0.1", height="0.1", fixedsize="true")


def _add(g: graphviz.Digraph, name: str) -> None:
    g.node(name, "+", shape="circle", style="", width="0.26", fixedsize="true", fontsize="14")


def cell_graph(genotype: Genotype, block: int = 0, title: str = "", image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES
               ) -> graphviz.Digraph:
    """The tree cell of ``block``: split/copy/add points as nodes, each searchable edge an arrow
    labelled with its op (coloured by family) and carrying ``id`` = its edge name (EDGE_NAMES)."""
    if not 0 <= block < genotype.num_blocks:
        raise SpaceError(f"block {block} is out of range: the network has blocks 0..{genotype.num_blocks - 1}")
    spec = block_plan(genotype.B, genotype.F, image_size)[block]
    ops, w = genotype.ops[block], spec.width
    g = digraph("cell")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#F2F2F2", color="#555555", height="0.3")

    def op_edge(src: str, dst: str, edge: int) -> None:
        op = ops[edge]
        color = FAMILY_COLOR[OP_FAMILY[op]]
        label = (f'<<FONT COLOR="{color}">{esc(OP_LABEL[op])}</FONT>'
                 f'<FONT POINT-SIZE="8" COLOR="#8C8C8C"> {esc(EDGE_NAMES[edge])}</FONT>>')
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
    head = (f"{esc(title)}: " if title else "") + (
        f"tree cell of block {block} (stage {spec.stage + 1}, w = {w}, stride {spec.stride})")
    g.attr(labelloc="b", label=f'<<TABLE BORDER="0" CELLSPACING="2"><TR><TD COLSPAN="8"><B>{head}</B></TD></TR>'
                               f'<TR>{_family_legend()}</TR></TABLE>>')
    return g


# ------------------------------------------------------------------ (b) the network
def network_graph(genotype: Genotype, title: str = "", image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES) -> graphviz.Digraph:
    """stem -> 3 stages (block counts, widths, strides, map sizes) -> head, and one block's layout,
    for the images and classes of ``data`` (a search checkpoint's)."""
    plan, size = block_plan(genotype.B, genotype.F, image_size), image_size
    g = digraph("network")
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
    g.node("head", f"head\nBN-ReLU\nglobal avg pool\nFC {genotype.F} → {num_classes}")
    g.edge(prev, "head", label=shape, fontsize="10", fontcolor="#555555")
    g.node("logits", f"{num_classes} logits", fillcolor="white")
    g.edge("head", "logits")
    with g.subgraph() as r:
        r.attr(rank="same")
        r.node("input")
        r.node("bx")
    n_params = f"B = {genotype.B}, F = {genotype.F}, {genotype.num_blocks} blocks, " \
               f"{genotype.num_blocks * EDGES_PER_CELL} searchable edges"
    head = (f"{esc(title)}: " if title else "") + n_params
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


def _swatch(op: str, title: str = "") -> str:
    ink = "white" if op in DARK_OPS else "black"
    tip = f' TITLE="{esc(title)}"' if title else ""
    return (f'<TD BGCOLOR="{OP_COLOR[op]}" WIDTH="15" HEIGHT="15" FIXEDSIZE="TRUE"{tip}>'
            f'<FONT POINT-SIZE="7" COLOR="{ink}">{OP_CODES[op]}</FONT></TD>')


def ops_graph(genotype: Genotype, title: str = "") -> graphviz.Digraph:
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
    legend = "".join(f'{_swatch(op)}<TD ALIGN="LEFT"><FONT POINT-SIZE="10">{esc(OP_LABEL[op])} '
                     f'({counts[op]})  </FONT></TD>' for op in PRIMITIVES)
    head = (f"{esc(title)}: " if title else "") + (
        f"op on every searchable edge ({genotype.num_blocks} blocks × {EDGES_PER_CELL} edges)")
    return table_figure("ops", head, rows, f'<TABLE BORDER="0" CELLSPACING="2"><TR>{legend}</TR></TABLE>')


def alpha_graph(probs: list[list[list[float]]], candidates: list[str], B: int, title: str = "") -> graphviz.Digraph:
    """probs[block][edge][i]: a row per (edge, candidate), a column per block, the colour is the
    probability and ● marks the argmax per (block, edge) (cell TITLE "... (argmax)")."""
    # colour scale vmin..vmax (the smallest / largest probability, rounded out to 0.1): early in a
    # search, when every p is near 1/N, a fixed 0..1 scale would paint the whole map one colour
    vmin, vmax = prob_range([p for blk in probs for e in blk for p in e])
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
                    tds.append(heat_cell(p, top, vmin, vmax, f'block {k} edge {name}: {cand} p={p:.3f}'
                                                             f'{" (argmax)" if top else ""}'))
                cells.append("".join(tds))
            first = (f'<TD ROWSPAN="{len(candidates)}" ALIGN="LEFT"><FONT FACE="Courier" POINT-SIZE="9">{name}'
                     f'</FONT></TD>' if i == 0 else "")
            rows.append(_row(f'{first}<TD ALIGN="RIGHT"><FONT POINT-SIZE="7">{esc(OP_LABEL[cand])} </FONT></TD>',
                             cells))
    legend = prob_legend(vmin, vmax)
    head = (f"{esc(title)}: " if title else "") + "architecture probabilities softmax(α) of every edge"
    return table_figure("alpha", head, rows, legend)

