"""Pictures of a NAS-Bench-201 network (visualize_cifar.py): the 4-node cell as a DAG with labelled edges,
the network overview (stem, three stages of N cells, the residual blocks, head), and the 6 x N heat map
of a search checkpoint's alpha.  Drawn from the space description (models/nb201/arch.py) and the genotype."""
from __future__ import annotations

import graphviz

from .arch import EDGE_NAMES, EDGES, NODES, OP_FAMILY, PRIMITIVES, CellGenotype
from .net import stage_plan
from ..common import IMAGE_SIZE, NUM_CLASSES
from ..pictures import digraph, esc, heat_cell, prob_legend, prob_range, table_figure

OP_LABEL = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "conv 1×1", "nor_conv_3x3": "conv 3×3",
            "avg_pool_3x3": "avg pool 3×3"}
# Okabe-Ito hues per family (colour-blind safe); `none` is drawn faint and dotted: the edge is absent.
FAMILY_COLOR = {"conv": "#0072B2", "pool": "#009E73", "skip": "#7F7F7F", "none": "#C8C8C8"}
FAMILY_LEGEND = {"conv": "ReLU-conv-BN 1×1, 3×3", "pool": "avg pool 3×3", "skip": "skip (dashed)",
                 "none": "none: no edge (dotted)"}
STYLE = {"skip": "dashed", "none": "dotted"}
assert set(OP_LABEL) == set(PRIMITIVES) and set(FAMILY_COLOR) == set(OP_FAMILY.values()) == set(FAMILY_LEGEND)


def _legend() -> str:
    return "".join(f'<TD><FONT COLOR="{color}" POINT-SIZE="16"><B>━━</B></FONT></TD><TD ALIGN="LEFT">'
                   f'<FONT POINT-SIZE="11">{esc(FAMILY_LEGEND[fam])}   </FONT></TD>' for fam, color in FAMILY_COLOR.items())


def cell_graph(cell: CellGenotype, title: str = "", channels: int | None = None) -> graphviz.Digraph:
    """Nodes 0 (input) .. 3 (output); edge j->k labelled with its op and carrying ``id`` = "j->k"."""
    g = digraph("cell")
    g.attr("node", shape="circle", style="filled", fillcolor="#F2F2F2", color="#555555", width="0.45",
           fixedsize="true")
    for k in range(NODES):
        label = {0: "in\n0", NODES - 1: f"out\n{k}"}.get(k, str(k))
        g.node(f"n{k}", label, fillcolor="#DCE9F5" if k in (0, NODES - 1) else "#F2F2F2")
    for (k, j), name, op in zip(EDGES, EDGE_NAMES, cell.ops):
        fam = OP_FAMILY[op]
        g.edge(f"n{j}", f"n{k}", label=f'<<FONT COLOR="{FAMILY_COLOR[fam]}">{esc(OP_LABEL[op])}</FONT>>',
               color=FAMILY_COLOR[fam], penwidth="2.2" if fam != "none" else "1.2", style=STYLE.get(fam, "solid"),
               id=name, tooltip=f"{name}: {op}")
    width = f", {channels} channels per node" if channels else ""
    head = (f"{esc(title)}: " if title else "") + f"NAS-Bench-201 cell (node k = sum of its incoming edges{width})"
    g.attr(labelloc="b", label=f'<<TABLE BORDER="0" CELLSPACING="2"><TR><TD COLSPAN="8"><B>{head}</B></TD></TR>'
                               f'<TR>{_legend()}</TR></TABLE>>')
    return g


def network_graph(cell: CellGenotype, macro: dict, title: str = "", image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES) -> graphviz.Digraph:
    """stem -> stage 1 (N cells) -> residual block -> stage 2 -> residual block -> stage 3 -> head."""
    C, N, size = macro["C"], macro["N"], image_size
    g = digraph("network")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#F2F2F2", color="#555555", margin="0.12,0.06")
    g.node("input", f"image\n3 × {size} × {size}", fillcolor="white")
    g.node("stem", f"stem\nconv 3×3, 3 → {C}\nBN")
    g.edge("input", "stem")
    prev, stage, shape = "stem", 0, f"{C} × {size} × {size}"
    plan = stage_plan(C, N, size)
    for i, (kind, width, s) in enumerate(plan):
        if kind == "reduce":
            name = f"reduce{stage}"
            g.node(name, f"residual block\nReLU-conv 3×3 (stride 2)-BN\nReLU-conv 3×3-BN\n{plan[i - 1][1]} → {width}, "
                         f"{s}×{s} → {s // 2}×{s // 2}\nshortcut: avg pool 2×2, conv 1×1")
        elif i == 0 or plan[i - 1][0] == "reduce":
            stage += 1
            name = f"stage{stage}"
            g.node(name, f"<<B>stage {stage}</B><BR/>{N} cell{'s' if N > 1 else ''}<BR/>{width} channels, {s}×{s}>",
                   fillcolor="#DCE9F5")
        else:
            continue
        g.edge(prev, name, label=shape, fontsize="10", fontcolor="#555555")
        prev, shape = name, f"{width} × {s if kind == 'cell' else s // 2} × {s if kind == 'cell' else s // 2}"
    g.node("head", f"head\nBN-ReLU\nglobal avg pool\nFC {4 * C} → {num_classes}")
    g.edge(prev, "head", label=shape, fontsize="10", fontcolor="#555555")
    g.node("logits", f"{num_classes} logits", fillcolor="white")
    g.edge("head", "logits")
    head = (f"{esc(title)}: " if title else "") + f"NAS-Bench-201 network, C = {C}, N = {N}: {3 * N} cells, one " \
                                                  f"cell architecture {esc(cell.to_string())}"
    g.attr(labelloc="t", label=f"<<B>{head}</B>>")
    return g


def alpha_graph(probs: list[list[float]], candidates: list[str], title: str = "") -> graphviz.Digraph:
    """probs[edge][i] (6 x N): a row per edge, a column per candidate; ● marks each edge's argmax."""
    vmin, vmax = prob_range([p for row in probs for p in row])
    rows = ['<TR><TD></TD>' + "".join(f'<TD><FONT POINT-SIZE="9">{esc(OP_LABEL[c])} </FONT></TD>' for c in candidates)
            + '</TR>']
    for name, row in zip(EDGE_NAMES, probs):
        best = max(range(len(row)), key=row.__getitem__)
        cells = "".join(heat_cell(p, i == best, vmin, vmax, f"edge {name}: {c} p={p:.3f}{' (argmax)' if i == best else ''}",
                                  width=60, height=20) for i, (c, p) in enumerate(zip(candidates, row)))
        rows.append(f'<TR><TD ALIGN="RIGHT"><FONT FACE="Courier" POINT-SIZE="10">edge {esc(name)} </FONT></TD>{cells}</TR>')
    head = (f"{esc(title)}: " if title else "") + "architecture probabilities softmax(α), one row per cell edge " \
                                                  "(shared by every cell)"
    return table_figure("alpha", head, rows, prob_legend(vmin, vmax))
